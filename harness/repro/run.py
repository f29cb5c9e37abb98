"""The run driver: one reproducer on one kernel, prepared once, run N times, every run recorded.

``ReproSession`` (a context manager) prepares once: the results folder and
its result.json, the image, the backend (``auto`` chosen per kernel, with its
reason), the compiled reproducer (harness.repro.binaries).  ``run()`` executes
one more run: a run folder whose result.json is written before the guest
starts (status "running") and again as soon as the verdict is known, so a
crash, a hang, Ctrl-C or kill -9 never loses what was done; then it takes the
one decision about the guest (``unfit_reason`` -> ``backend.replace``).
``run_repro`` is N runs of a session; prove keeps two sessions open at once.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from harness import images, report
from harness.errors import GuestError, KernelError
from harness.fstests import guest as fguest
from harness.guest.backends import backend as make_backend
from harness.guest.backends import choose as choose_backend
from harness.guest.machine import Backend, Disk, GuestRequest, GuestRun, unfit_reason
from harness.guest.protocol import GuestOutput, GuestPlan, StepResult
from harness.images import FILESYSTEMS
from harness.kernels import Kernel
from harness.kernels.build import Variant, build
from harness.kernels.patches import PatchOp
from harness.options import Accel, RunOptions
from harness.repro import faults, syzkaller
from harness.repro.binaries import (
    BINARY_NAME,
    BinaryCache,
    Cached,
    CompileFailed,
    adopt_compiled,
    binary_key,
    compile_in_guest,
    compile_on_host,
)
from harness.repro.spec import ExpectKind, Spec, VariantSpec
from harness.results import new_run_folder, write_json
from harness.verdict import Evidence, Outcome, Verdict, judge

DISK_SERIAL = "harness-img0"
STEP_GRACE = 45.0  # host seconds past a guest step's own timeout before we call it hung
STEP_BUDGETS = {"faults": 30, "environment": 60, "syz-cleanup": 120, "setup": 30, "device": 30, "mount": 60,
                "compile": 300, "sync": 120, "umount": 120, "check": 300}
STILLBORN_SECONDS = 15.0

Progress = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    index: int
    folder: Path
    verdict: Verdict
    steps: tuple[StepResult, ...]
    wall_seconds: float
    guest_up_at: float | None  # guest uptime when the steps began (boot cost)
    guest: dict = field(default_factory=dict, compare=False)  # the backend's record of the run
    binary: dict = field(default_factory=dict, compare=False)  # where the reproducer was compiled
    fstests: dict = field(default_factory=dict, compare=False)  # an fstests run: every test's own result

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
            "steps": [{"name": s.name, "rc": s.rc, "seconds": s.seconds} for s in self.steps],
            **({"guest": self.guest} if self.guest else {}),
            **({"binary": self.binary} if self.binary else {}),
            **({"fstests": self.fstests} if self.fstests else {}),
        }


@dataclass(frozen=True)
class Summary:
    repro: str
    kernel: Kernel
    accel: str
    accel_reason: str
    folder: Path
    runs: tuple[RunResult, ...]
    expectation: ExpectKind | None
    min_hits: int = 1
    hits: int = 0
    interrupted: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def verdict(self) -> Outcome:
        """The headline: the first hit's outcome, else the most telling one."""
        outcomes = [r.outcome for r in self.runs]
        for o in (Outcome.REPRODUCED, Outcome.DATA_LOSS, Outcome.FS_CORRUPT, Outcome.TEST_FAILED, Outcome.OTHER_CRASH,
                  Outcome.HANG,
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
        if self.expectation == ExpectKind.REPRODUCE:
            return self.hits >= self.min_hits
        if self.expectation == ExpectKind.OTHER_CRASH:  # the bug gone, another report in its place
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
        return GuestOutput.parse(text).state

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


def guest_plan(spec: Spec, run_dir: Path, source: Path, prebuilt: Path | None, timeout: int,
               seconds: float | None = None) -> GuestPlan:
    """The guest steps of one run (host paths: a backend maps them to where its guest sees them).

    ``seconds`` is the trial's length (``Spec.trial_args``): the race's own
    argument where the spec has a ``{seconds}`` placeholder, else the run
    step's time limit; None runs the spec as written."""
    recipe = spec.image
    fs = FILESYSTEMS.select(recipe.fs) if recipe is not None else None
    env = spec.environment
    return GuestPlan(
        title=spec.name,
        fs_type=fs.mount_type if fs else "none",
        mount_options=recipe.mount_options if recipe else "",
        source=str(source),
        cflags=spec.cflags,
        args=spec.trial_args(seconds),
        run_timeout=spec.trial_timeout(seconds, timeout),
        check_argv=tuple(fs.check_argv("{dev}")) if fs and recipe.check else None,
        sysctls=spec.guest.sysctls,
        compiler=spec.compiler,
        prebuilt=str(prebuilt) if prebuilt else None,
        binary_out=str(run_dir / BINARY_NAME),
        pre_run=(*(env.setup_lines() if env else ()), *faults.setup_lines(spec.faults)),
        post_run=(*faults.teardown_lines(spec.faults), *(env.teardown_lines() if env else ())),
        workdir=env.workdir if env else None,
        image=recipe is not None,
    )


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


@contextlib.contextmanager
def _waiting(lock, say: Callable[[], None]):
    """Hold ``lock``; say so once if another process holds it first."""
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        say()
        lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


class ReproSession:
    """One reproducer on one kernel: prepared once, then ``run()`` as often as needed (see the module doc)."""

    def __init__(self, spec: Spec, kernel: Kernel, options: RunOptions, *, accel: Accel,
                 progress: Progress | None = None, backend: Backend | None = None):
        self.spec, self.kernel, self.options, self.accel = spec, kernel, options, accel
        self.progress = progress or (lambda msg: None)
        self.requested = options.runs or spec.runs
        self.timeout = options.timeout or spec.timeout
        self.done: list[RunResult] = []
        self.folder: Path | None = None
        self.backend = backend
        self.backend_reason = "given by the caller" if backend is not None else ""
        self.image: Path | None = None
        self.cache = BinaryCache()
        self.key = ""
        self.binary: Cached | None = None
        self.fstests: fguest.Prepared | None = None
        self.unrunnable: Verdict | None = None  # why no run can start (the compile boot left no binary)
        self.compiling = None  # the binary's lock, held from prepare until run 1 compiled it (compiling backends)
        self.interrupted = False

    # --- prepare once ------------------------------------------------------------------------

    def __enter__(self) -> ReproSession:
        spec = self.spec
        faults.check_kernel(spec.faults, self.kernel)  # a kernel without the fault knobs: one clear line
        if self.backend is None:
            name, self.backend_reason = choose_backend(self.options.backend, self.kernel,
                                                       boot_per_run=spec.guest.fresh_boot,
                                                       fresh_compile=self.options.fresh_compile,
                                                       needs_root_share=spec.fstests is not None)
            self.backend = make_backend(name)
        if spec.fstests is not None:
            if not (self.backend.shares_root and self.backend.attaches_disks):
                raise GuestError(f"fstests runs check from the host's build on two virtio disks: {self.backend.name} "
                                 "guests cannot have both (use --backend vng)")
            self.fstests = fguest.prepare(spec.fstests, source=self.options.fstests, progress=self.progress)
        self.folder = new_run_folder(spec.name, self.kernel.name, self.options.results)
        self._write("running")
        self.progress(f"backend {self.backend.name}: {self.backend_reason}")
        self.image = images.build(spec.image, progress=self.progress) if spec.image is not None else None
        if self.fstests is not None:
            self.progress(self.fstests.describe())
        self.backend.open(self.folder, progress=self.progress)
        self.backend.plan(self.requested)
        try:
            self._prepare_binary()
        except BaseException:
            self.backend.close()
            raise
        return self

    def _prepare_binary(self) -> None:
        """A binary compiled earlier for this kernel, or one compiled now where the backend cannot."""
        spec, opts = self.spec, self.options
        if spec.fstests is not None:  # fstests' own programs were built on the host (harness.fstests.build)
            return
        self.key = binary_key(spec, self.kernel)
        if self.backend.own_toolchain:  # a user's machine compiles every run with its own compiler
            return
        if opts.fresh_compile:
            if not self.backend.compiles:
                raise GuestError(f"--fresh-compile compiles in every guest; {self.backend.name} guests have no "
                                 "compiler (use --backend vng or vng-ssh)")
            return
        lock = self.cache.lock(spec.name, self.key)
        with _waiting(lock, lambda: self.progress(f"another harness is compiling {spec.source.name} for "
                                                  f"{self.kernel.name}: waiting for its binary")):
            self.binary = self.cache.get(spec.name, self.key)
            if self.binary is not None:
                return
            if self.backend.compiles and not opts.host_compile:  # run 1 compiles: another harness waits for it
                lock.acquire()
                self.compiling = lock
                return
            if opts.host_compile:
                self.progress(f"compiling {spec.source.name} on the host (--host-compile)")
                self.binary = compile_on_host(spec, self.cache, self.key, self.folder / "host-compile.log")
            elif not self.backend.compiles:
                self.progress(f"compiling {spec.source.name} in a vng guest of {self.kernel.name} "
                              f"({self.backend.name} guests have no compiler)")
                plan = guest_plan(spec, self.folder, spec.source, None, self.timeout)
                compile_dir = self.folder / "compile"
                watchdog = StepWatchdog(compile_dir / "guest.log", spec.guest.boot_timeout, self.timeout)
                try:
                    self.binary = compile_in_guest(spec, self.kernel, self.accel.name, plan, compile_dir, self.cache,
                                                   self.key, watchdog=watchdog)
                except CompileFailed as exc:  # an outcome to record (every run would meet it), not a crash
                    self.unrunnable = exc.verdict
                    self.progress(exc.one_line())

    def _compiled(self) -> None:
        """Run 1 is over: the binary is in the cache (or it failed to compile): a waiting harness goes on."""
        if self.compiling is not None:
            self.compiling.release()
            self.compiling = None

    def __exit__(self, exc_type, exc, tb) -> None:
        self.interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self._compiled()
        try:
            if self.backend is not None:
                self.backend.close()
        finally:
            self._write("interrupted" if self.interrupted else "done" if exc_type is None else "error")

    # --- one run ---------------------------------------------------------------------------------

    def run(self, seconds: float | None = None) -> RunResult:
        """One more run (a stillborn guest, dead at once without a byte of console, is run again once).

        ``seconds``: a trial of that length (the proof's D) instead of the spec's full race."""
        index = len(self.done) + 1
        if self.unrunnable is not None:
            return self._record_unrunnable(index)
        result = self._run_once(index, seconds)
        if stillborn(result):  # QEMU/vng died at once: infrastructure, not the kernel; once more
            kept = result.folder.with_name(result.folder.name + ".stillborn")
            result.folder.rename(kept)
            self.progress(f"run {index}: the guest died in {result.wall_seconds:.0f} s without a byte of console "
                          f"({result.verdict.detail}); kept in {kept.name}, running it again")
            result = self._run_once(index, seconds)
        self.done.append(result)
        self._write("running")
        return result

    def _record_unrunnable(self, index: int) -> RunResult:
        """A run that could not start (no binary): recorded like any run, with the reason and no guest."""
        run_dir = self.folder / f"run-{index:02d}"
        run_dir.mkdir(parents=True)
        result = RunResult(index, run_dir, self.unrunnable, (), 0.0, None,
                           {"backend_reason": self.backend_reason, "not_started": True})
        write_json(run_dir / "result.json", {**result.to_dict(), "status": "done"})
        self.done.append(result)
        self._write("running")
        return result

    def _stage(self, run_dir: Path, seconds: float | None = None) -> tuple[GuestRequest, dict]:
        """The run folder's inputs and the request for the backend; the binary's record."""
        if self.fstests is not None:
            return self._stage_fstests(run_dir), {}
        spec = self.spec
        source = run_dir / spec.source.name
        source.write_bytes(spec.source_text)  # the source as loaded, even if the file changes meanwhile
        prebuilt, record = None, {}
        if self.binary is not None and self.cache.get(spec.name, self.key) is not None:
            prebuilt = run_dir / BINARY_NAME
            shutil.copyfile(self.binary.path, prebuilt)
            prebuilt.chmod(0o755)
            record = {**{k: v for k, v in self.binary.meta.items() if k != "at"}, "reused": True, "key": self.key}
        if self.image is not None:
            disk = images.fresh_copy(self.image, run_dir / "disk.img")
        else:  # no harness image: a small blank disk keeps every backend's devices the same
            disk = run_dir / "disk.img"
            with open(disk, "wb") as fh:
                fh.truncate(1 << 20)
        plan = guest_plan(spec, run_dir, source, prebuilt, self.timeout, seconds)
        env = spec.environment
        preload = ((f"fs-{plan.fs_type}",) if plan.image else ()) + (
            (*env.modules, *(f"fs-{fs}" for fs in env.filesystems)) if env else ())
        req = GuestRequest(kernel=self.kernel, plan=plan, run_dir=run_dir, accel=self.accel.name,
                           cpus=spec.guest.cpus, memory=spec.guest.memory, disks=(Disk(disk, DISK_SERIAL),),
                           cmdline=self._cmdline(), preload=tuple(dict.fromkeys(preload)),
                           inputs=(source, *((prebuilt,) if prebuilt else ())))
        return req, record

    def _cmdline(self) -> tuple[str, ...]:
        env = self.spec.environment
        return tuple(dict.fromkeys((*self.spec.guest.cmdline, *(env.cmdline if env else ()), *self.options.cmdline)))

    def _stage_fstests(self, run_dir: Path) -> GuestRequest:
        """An fstests run: its two disks, local.config and check command in the run folder (harness.fstests.guest)."""
        spec, prep = self.spec, self.fstests
        run_argv, (test, scratch) = fguest.stage(prep, run_dir, progress=self.progress)
        plan = GuestPlan(
            title=f"{spec.name}: fstests {prep.selection.describe()}", fs_type=prep.profile.fs, mount_options="",
            source="", cflags=(), args=(), run_timeout=self.timeout, check_argv=None, sysctls=spec.guest.sysctls,
            pre_run=faults.setup_lines(spec.faults), post_run=faults.teardown_lines(spec.faults), image=False,
            run_argv=run_argv,
        )
        return GuestRequest(kernel=self.kernel, plan=plan, run_dir=run_dir, accel=self.accel.name,
                            cpus=spec.guest.cpus, memory=spec.guest.memory,
                            disks=(Disk(test.path, test.serial), Disk(scratch.path, scratch.serial)),
                            cmdline=self._cmdline(), preload=(f"fs-{prep.profile.fs}",))

    def _run_once(self, index: int, seconds: float | None = None) -> RunResult:
        assert self.folder is not None and self.backend is not None
        run_dir = self.folder / f"run-{index:02d}"
        run_dir.mkdir(parents=True)
        record = run_dir / "result.json"
        write_json(record, {"run": index, "status": "running", "kernel": self.kernel.name, "accel": self.accel.name,
                            "backend": self.backend.name})
        started = time.monotonic()
        req, binary = self._stage(run_dir, seconds)
        staged = time.monotonic() - started
        watchdog = StepWatchdog(run_dir / "guest.log", self.spec.guest.boot_timeout,
                                self.spec.trial_timeout(seconds, self.timeout))
        try:
            guest = self.backend.run(req, watchdog=watchdog, timeout=None)
        except KeyboardInterrupt:
            result = RunResult(index, run_dir, Verdict(Outcome.INFRA_ERROR, detail="interrupted (Ctrl-C)"), (),
                               time.monotonic() - started, None)
            write_json(record, {**result.to_dict(), "status": "interrupted"})
            raise
        return self._record(index, run_dir, req, guest, watchdog, binary, started, staged)

    def _record(self, index: int, run_dir: Path, req: GuestRequest, guest: GuestRun, watchdog: StepWatchdog,
                binary: dict, started: float, staged: float) -> RunResult:
        recording = time.monotonic()
        text = guest.output_log.read_text(errors="replace") if guest.output_log.exists() else ""
        console = guest.console_log.read_text(errors="replace") if guest.console_log.exists() else ""
        output = GuestOutput.parse(text)
        tests = fguest.read(self.fstests, run_dir, text, console) if self.fstests is not None else None
        verdict = judge(Evidence(
            console=console, output=text, expected_titles=self.spec.expect.titles,
            killed=guest.detail or watchdog.reason or ("host timeout" if guest.timed_out else None),
            guest_rc=guest.returncode, any_crash=self.spec.expect.any_crash, timeout_is=self.spec.timeout_is,
            exit_status=self.spec.exit_status,
            explain=self._explain, fstests=tests,
        ))
        if not binary:
            binary = self._adopt(run_dir, output)
        self._compiled()
        info = dict(guest.info)
        info["phases"] = {"host_stage": round(staged, 3), **info.get("phases", {})}
        if self.backend.persistent and guest.signals is not None:
            why = unfit_reason(guest.signals)
            info["replace"] = why
            if why:
                self.backend.replace(why)
        if verdict.report_text:
            (run_dir / "report.txt").write_text(report.symbolize(
                verdict.report_text, self.kernel.vmlinux, self.kernel.system_map, self.kernel.extra.get("source_dir")))
        info["phases"]["host_record"] = round(time.monotonic() - recording, 3)
        result = RunResult(index, run_dir, verdict, output.steps, time.monotonic() - started, output.up_at,
                           {**info, "backend_reason": self.backend_reason}, binary,
                           tests.to_json() if tests is not None else {})
        write_json(run_dir / "result.json", {**result.to_dict(), "status": "done"})
        if verdict.outcome is Outcome.CLEAN or verdict.outcome.is_bug and verdict.outcome not in (
            Outcome.DATA_LOSS, Outcome.FS_CORRUPT, Outcome.TEST_FAILED
        ):
            for disk in req.disks:  # keep the images only where their content is the evidence
                disk.path.unlink(missing_ok=True)
        (run_dir / BINARY_NAME).unlink(missing_ok=True)  # in the cache (or not worth keeping)
        return result

    def _explain(self, rc: int | None, output: str) -> str | None:
        """Why the reproducer exited by itself, from what it is (a syzkaller reproducer's needs)."""
        return syzkaller.explain_exit(self.spec.syzkaller, rc, guest_log=output) if self.spec.syzkaller else None

    def _adopt(self, run_dir: Path, output: GuestOutput) -> dict:
        """Cache what this run's guest compiled (when the options allow), and say where it came from."""
        if output.binary != "compiled":
            return {}
        record = {"compiled_in": "guest", "kernel": self.kernel.name, "folder": str(run_dir), "reused": False}
        if self.backend.own_toolchain:
            record.update(compiled_in="target", kernel=self.backend.name)
        elif not self.options.fresh_compile:
            cached = adopt_compiled(self.cache, self.spec.name, self.key, run_dir, output, self.kernel)
            if cached is not None:
                self.binary = cached
                record["key"] = self.key
        return record

    # --- records --------------------------------------------------------------------------------------

    def summary(self) -> Summary:
        spec = self.spec
        return Summary(
            repro=spec.name, kernel=self.kernel, accel=self.accel.name, accel_reason=self.accel.reason,
            folder=self.folder, runs=tuple(self.done), expectation=spec.expect.for_kernel(self.kernel.name),
            min_hits=spec.expect.min_hits, hits=sum(spec.expect.is_hit(r.outcome) for r in self.done),
            interrupted=self.interrupted,
            extra={"runs_requested": self.requested,
                   "backend": self.backend.name if self.backend else None, "backend_reason": self.backend_reason,
                   **({"mode": spec.mode, "syzkaller": spec.syzkaller.to_dict()} if spec.syzkaller else {}),
                   **({"environment": spec.environment.to_dict()} if spec.environment else {})},
        )

    def _write(self, status: str) -> None:
        if self.folder is not None:
            write_json(self.folder / "result.json", {**self.summary().to_dict(), "status": status})


def run_repro(spec: Spec, kernel: Kernel, options: RunOptions, *, accel: Accel, progress: Progress | None = None,
              on_run: Callable[[RunResult], None] | None = None) -> Summary:
    """``options.runs`` (else the spec's) runs of ``spec`` on ``kernel``; the summary, also in result.json."""
    with ReproSession(spec, kernel, options, accel=accel, progress=progress) as session:
        for i in range(1, session.requested + 1):
            if progress:
                progress(f"run {i}/{session.requested}: {kernel.name} ({accel.name}, backend {session.backend.name})")
            result = session.run()
            if on_run:
                on_run(result)
            if session.unrunnable is not None:  # the next runs would meet the same reason
                break
    return session.summary()


# --- source-built variants ---------------------------------------------------------------


def variant_build(variant: VariantSpec):
    """The build recipe (``harness.kernels.build.Variant``) of one of a spec's variants."""
    return Variant(
        source=variant.source,
        name=variant.name,
        patches=tuple(PatchOp(p, rev) for p, rev in variant.patches),
        fragments=variant.kconfig,
    )


def build_variant(variant: VariantSpec, *, progress: Progress | None = None) -> Kernel:
    """Build (or find in the cache) the kernel of one of a spec's variants."""
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

