"""One reproducer on one kernel, N runs: boot, steps, judge, record.

Every run folder gets its result.json before the guest boots (status
"running") and again as soon as the verdict is known, so a crash, a hang or
Ctrl-C never loses what was done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import images, proc, report
from harness.errors import KernelError
from harness.guest import Backend, Disk, GuestRequest, GuestRun, select
from harness.guest.steps import MARK, GuestPlan, StepResult, guest_done, parse_steps, script
from harness.images import FILESYSTEMS
from harness.kernels import Kernel
from harness.options import Accel, RunOptions
from harness.paths import cache_dir
from harness.repro import faults
from harness.repro.spec import Spec, VariantSpec
from harness.results import new_run_folder, write_json
from harness.verdict import Evidence, Outcome, Verdict, judge

DISK_SERIAL = "harness-img0"
STEP_GRACE = 45.0  # host seconds past a guest step's own timeout before we call it hung
STEP_BUDGETS = {"faults": 30, "setup": 30, "device": 30, "mount": 60, "compile": 300, "sync": 120, "umount": 120, "check": 300}

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    index: int
    folder: Path
    verdict: Verdict
    steps: tuple[StepResult, ...]
    wall_seconds: float
    guest_up_at: float | None  # guest uptime when the steps began (boot cost)

    @property
    def outcome(self) -> Outcome:
        return self.verdict.outcome

    def to_dict(self) -> dict:
        return {
            "run": self.index,
            "folder": str(self.folder),
            **self.verdict.to_dict(),
            "wall_seconds": round(self.wall_seconds, 2),
            "guest_up_at": self.guest_up_at,
            "steps": [
                {"name": s.name, "rc": s.rc, "seconds": s.seconds} for s in self.steps
            ],
        }


@dataclass(frozen=True)
class Summary:
    repro: str
    kernel: Kernel
    accel: str
    accel_reason: str
    folder: Path
    runs: tuple[RunResult, ...]
    expectation: str | None  # 'reproduce', 'clean', 'other_crash' or None
    min_hits: int = 1
    hits: int = 0
    interrupted: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def verdict(self) -> Outcome:
        """The headline: the first hit's outcome, else the most telling one."""
        outcomes = [r.outcome for r in self.runs]
        for o in (Outcome.REPRODUCED, Outcome.DATA_LOSS, Outcome.FS_CORRUPT, Outcome.OTHER_CRASH, Outcome.HANG,
                  Outcome.BOOT_FAILURE, Outcome.INFRA_ERROR, Outcome.BUILD_ERROR):
            if o in outcomes:
                return o
        return Outcome.CLEAN

    @property
    def title(self) -> str | None:
        return next((r.verdict.title for r in self.runs if r.outcome is self.verdict), None)

    @property
    def met(self) -> bool | None:
        """Whether the runs meet the spec's expectation for this kernel."""
        if self.expectation is None or not self.runs:
            return None
        if self.expectation == "reproduce":
            return self.hits >= self.min_hits
        if self.expectation == "other_crash":  # the bug gone, another report in its place
            return self.hits == 0 and any(r.outcome is Outcome.OTHER_CRASH for r in self.runs)
        return all(r.outcome is Outcome.CLEAN for r in self.runs)

    def to_dict(self) -> dict:
        tth = [r.verdict.time_to_hit for r in self.runs if r.verdict.time_to_hit is not None]
        return {
            "repro": self.repro,
            "kernel": self.kernel.to_dict(),
            "accel": self.accel,
            "accel_reason": self.accel_reason,
            "verdict": self.verdict.value,
            "title": self.title,
            "hits": self.hits,
            "runs": len(self.runs),
            "expectation": self.expectation,
            "expectation_met": self.met,
            "interrupted": self.interrupted,
            "time_to_hit": tth,
            "median_time_to_hit": statistics.median(tth) if tth else None,
            "results": [r.to_dict() for r in self.runs],
            **self.extra,
        }


class StepWatchdog:
    """Kills the guest when it makes no progress: past boot, or a step past its budget."""

    def __init__(self, output: Path, boot_timeout: float, run_timeout: float):
        self.output = output
        self.budgets = {**STEP_BUDGETS, "run": run_timeout}
        self.boot_timeout = boot_timeout
        self.started = time.monotonic()
        self.current: str | None = None
        self.since = self.started
        self.reason: str | None = None

    def _state(self) -> str:
        try:
            text = self.output.read_text(errors="replace")
        except OSError:
            return "boot"
        if guest_done(text):
            return "done"
        marks = [ln for ln in text.splitlines() if ln.startswith(f"{MARK} step ")]
        if not marks:
            return "boot" if f"{MARK} guest up" not in text else "steps"
        name, what = marks[-1].split()[2:4]
        return f"{name}:{what}"

    def __call__(self) -> str | None:
        state = self._state()
        now = time.monotonic()
        if state != self.current:
            self.current, self.since = state, now
        waited = now - self.since
        if state == "boot":  # booting has its own, longer budget
            if waited > self.boot_timeout:
                self.reason = f"no guest step started within {self.boot_timeout:.0f} s of boot"
        elif state.endswith(":begin"):
            step = state.split(":")[0]
            budget = self.budgets.get(step, 120) + STEP_GRACE
            if waited > budget:
                self.reason = f"step {step} made no progress for {waited:.0f} s (budget {budget:.0f} s)"
        elif waited > 120:
            self.reason = f"the guest went quiet for {waited:.0f} s after {state}"
        return self.reason


def binary_key(spec: Spec) -> str:
    """Cache key of a compiled reproducer: source, flags and the (shared) compiler."""
    compiler = proc.run(["sh", "-c", f"{spec.compiler} --version"], capture=True, check=False).output.splitlines()[:1]
    h = hashlib.sha256(spec.source_text)
    h.update(json.dumps([spec.compiler, spec.cflags, compiler, platform.machine()]).encode())
    return h.hexdigest()[:16]


def guest_plan(spec: Spec, source_in_guest: Path, binary_cache: Path | None = None) -> GuestPlan:
    recipe = spec.image
    fs = FILESYSTEMS.select(recipe.fs)
    return GuestPlan(
        title=f"{spec.name}",
        disk_serial=DISK_SERIAL,
        fs_type=fs.mount_type,
        mount_options=recipe.mount_options,
        source=str(source_in_guest),
        cflags=spec.cflags,
        args=spec.args,
        run_timeout=spec.timeout,
        check_argv=tuple(fs.check_argv("{dev}")) if recipe.check else None,
        sysctls=spec.guest.sysctls,
        compiler=spec.compiler,
        binary_cache=str(binary_cache) if binary_cache else None,
        pre_run=faults.setup_lines(spec.faults),
        post_run=faults.teardown_lines(spec.faults),
    )


def _guest_up_at(output: str) -> float | None:
    for line in output.splitlines():
        if line.startswith(f"{MARK} guest up "):
            try:
                return float(line.split()[3])
            except (IndexError, ValueError):
                return None
    return None


def run_once(
    spec: Spec,
    kernel: Kernel,
    index: int,
    folder: Path,
    image: Path,
    accel: str,
    backend: str | Backend = "vng",
    compile_cache: bool = True,
    cmdline: tuple[str, ...] = (),
) -> RunResult:
    run_dir = folder / f"run-{index:02d}"
    run_dir.mkdir(parents=True)
    record = run_dir / "result.json"
    write_json(record, {"run": index, "status": "running", "kernel": kernel.name, "accel": accel})
    started = time.monotonic()
    source = run_dir / spec.source.name
    source.write_bytes(spec.source_text)  # the source as loaded, even if the file changes meanwhile
    guest_script = run_dir / "guest.sh"
    binaries = cache_dir("binaries") if compile_cache else None
    cached = binaries / f"{spec.name}-{binary_key(spec)}" if binaries else None
    plan = guest_plan(spec, source, cached)
    guest_script.write_text(script(plan))
    disk = images.fresh_copy(image, run_dir / "disk.img")
    req = GuestRequest(
        kernel=kernel,
        command=("bash", str(guest_script)),
        accel=accel,
        cpus=spec.guest.cpus,
        memory=spec.guest.memory,
        disks=(Disk(disk, DISK_SERIAL),),
        rwdirs=(run_dir, *((binaries,) if binaries else ())),
        cmdline=(*spec.guest.cmdline, *cmdline),
        cwd=run_dir,
        preload=(f"fs-{plan.fs_type}",),
        binary=cached,
        compile_argv=(spec.compiler, *spec.cflags, "-o", str(cached), str(source)) if cached else (),
    )
    watchdog = StepWatchdog(run_dir / "guest.log", spec.guest.boot_timeout, spec.timeout)
    verdict: Verdict
    steps: tuple[StepResult, ...] = ()
    try:
        runner = select(backend) if isinstance(backend, str) else backend
        guest: GuestRun = runner.run(req, run_dir, timeout=None, watchdog=watchdog)
        output = guest.output_log.read_text(errors="replace") if guest.output_log.exists() else ""
        console = guest.console_log.read_text(errors="replace") if guest.console_log.exists() else ""
        steps = tuple(parse_steps(output))
        verdict = judge(
            Evidence(
                console=console,
                output=output,
                steps=steps,
                expected_titles=spec.expect.titles,
                killed=guest.detail or watchdog.reason or ("host timeout" if guest.timed_out else None),
                guest_rc=guest.returncode,
            )
        )
    except KeyboardInterrupt:
        result = RunResult(index, run_dir, Verdict(Outcome.INFRA_ERROR, detail="interrupted (Ctrl-C)"), steps,
                           time.monotonic() - started, None)
        write_json(record, {**result.to_dict(), "status": "interrupted"})
        raise
    if verdict.report_text:
        (run_dir / "report.txt").write_text(
            report.symbolize(verdict.report_text, kernel.vmlinux, kernel.system_map, kernel.extra.get("source_dir"))
        )
    output_text = (run_dir / "guest.log").read_text(errors="replace") if (run_dir / "guest.log").exists() else ""
    result = RunResult(index, run_dir, verdict, steps, time.monotonic() - started, _guest_up_at(output_text))
    write_json(record, {**result.to_dict(), **({"guest": guest.info} if guest.info else {}), "status": "done"})
    if verdict.outcome is Outcome.CLEAN or verdict.outcome.is_bug and verdict.outcome not in (
        Outcome.DATA_LOSS, Outcome.FS_CORRUPT
    ):
        disk.unlink(missing_ok=True)  # keep the image only where its content is the evidence
    return result


STILLBORN_SECONDS = 15.0


def stillborn(result: RunResult) -> bool:
    """A guest that died within seconds, unkilled, without one byte of console: nothing to judge.

    (Measured once in ~100 boots here: ``vng`` exited 255 after 2 s with no
    output at all.)  A kernel that fails to boot prints a panic, or hangs into
    the boot timeout; neither is this.
    """
    if result.outcome is not Outcome.BOOT_FAILURE or result.wall_seconds >= STILLBORN_SECONDS:
        return False
    if "no console output" not in (result.verdict.detail or "") or "exited" not in (result.verdict.detail or ""):
        return False
    console = result.folder / "console.log"
    return not console.exists() or console.stat().st_size == 0


def run_repro(
    spec: Spec,
    kernel: Kernel,
    options: RunOptions,
    *,
    accel: Accel,
    progress: Progress | None = None,
    on_run: Callable[[RunResult], None] | None = None,
) -> Summary:
    runs = options.runs or spec.runs
    backend, compile_cache, cmdline, results_root = options.backend, options.compile_cache, options.cmdline, options.results
    accel_reason, accel = accel.reason, accel.name
    faults.check_kernel(spec.faults, kernel)  # a kernel without the fault knobs: one clear line
    folder = new_run_folder(spec.name, kernel.name, results_root)
    expectation = spec.expect.for_kernel(kernel.name)
    image = images.build(spec.image, progress=progress)

    def summary(done: list[RunResult], interrupted: bool = False) -> Summary:
        return Summary(
            repro=spec.name,
            kernel=kernel,
            accel=accel,
            accel_reason=accel_reason,
            folder=folder,
            runs=tuple(done),
            expectation=expectation,
            min_hits=spec.expect.min_hits,
            hits=sum(spec.expect.is_hit(r.outcome) for r in done),
            interrupted=interrupted,
            extra={"runs_requested": runs},
        )

    done: list[RunResult] = []
    write_json(folder / "result.json", {**summary(done).to_dict(), "status": "running"})
    runner = select(backend)
    try:
        with contextlib.ExitStack() as stack:
            if hasattr(runner, "open"):  # a backend that keeps a guest or a connection across runs
                runner.open(folder, progress=progress)
                stack.callback(runner.close)
                if hasattr(runner, "plan"):
                    runner.plan(runs)
            for i in range(1, runs + 1):
                if progress:
                    progress(f"run {i}/{runs}: booting {kernel.name} ({accel})" if backend == "vng"
                             else f"run {i}/{runs}: {kernel.name} ({accel}, backend {backend})")
                result = run_once(spec, kernel, i, folder, image, accel, runner, compile_cache, cmdline)
                if stillborn(result):  # QEMU/vng died at once: infrastructure, not the kernel; once more
                    kept = result.folder.with_name(result.folder.name + ".stillborn")
                    result.folder.rename(kept)
                    if progress:
                        progress(f"run {i}/{runs}: the guest died in {result.wall_seconds:.0f} s without a byte "
                                 f"of console ({result.verdict.detail}); kept in {kept.name}, running it again")
                    result = run_once(spec, kernel, i, folder, image, accel, runner, compile_cache, cmdline)
                done.append(result)
                write_json(folder / "result.json", {**summary(done).to_dict(), "status": "running"})
                if on_run:
                    on_run(result)
    except KeyboardInterrupt:
        final = summary(done, interrupted=True)
        write_json(folder / "result.json", {**final.to_dict(), "status": "interrupted"})
        raise
    final = summary(done)
    write_json(folder / "result.json", {**final.to_dict(), "status": "done"})
    return final


# --- source-built variants ---------------------------------------------------------------


def variant_build(variant: VariantSpec):
    """The build recipe (``harness.kernels.build.Variant``) of one of a spec's variants."""
    from harness.kernels.build import Variant
    from harness.kernels.patches import PatchOp

    return Variant(
        source=variant.source,
        name=variant.name,
        patches=tuple(PatchOp(p, rev) for p, rev in variant.patches),
        fragments=variant.kconfig,
    )


def build_variant(variant: VariantSpec, *, progress: Progress | None = None) -> Kernel:
    """Build (or find in the cache) the kernel of one of a spec's variants."""
    from harness.kernels.build import build

    return build(variant_build(variant), progress=progress)


def build_error(spec: Spec, kernel_name: str, exc: KernelError, results_root: Path | None = None) -> Summary:
    """A BUILD_ERROR result (recorded like any run) for a variant that did not build."""
    folder = new_run_folder(spec.name, kernel_name, results_root)
    run_dir = folder / "run-01"
    run_dir.mkdir()
    evidence = [exc.one_line()]
    for attr in ("hunk", "errors", "output"):
        value = getattr(exc, attr, None)
        if value:
            evidence.append(f"--- {attr} ---\n" + (value if isinstance(value, str) else "\n".join(value)))
    (run_dir / "build-error.txt").write_text("\n\n".join(evidence) + "\n")
    verdict = Verdict(Outcome.BUILD_ERROR, detail=exc.one_line())
    result = RunResult(1, run_dir, verdict, (), 0.0, None)
    write_json(run_dir / "result.json", {**result.to_dict(), "status": "done"})
    kernel = Kernel(name=kernel_name, release="", version="", image=Path(), kind="build")
    summary = Summary(spec.name, kernel, "", "", folder, (result,), spec.expect.for_kernel(kernel_name),
                      spec.expect.min_hits, 0)
    write_json(folder / "result.json", {**summary.to_dict(), "status": "done"})
    return summary
