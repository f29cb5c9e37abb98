"""The run driver: one spec on one kernel, prepared once, run N times, every run recorded.

``ReproSession`` (a context manager) prepares once: the backend (``auto``
chosen per kernel, with its reason), the results folder and its result.json,
then whatever its kind of run needs (harness.repro.kind: the C reproducer's
image and binary, a test suite's build and test list).  ``run()`` executes one more run: a run
folder whose result.json is written before the guest starts (status
"running") and again as soon as the verdict is known, so a crash, a hang,
Ctrl-C or kill -9 never loses what was done; the kind stages the run and
reads it back; then the session takes the one decision about the guest
(``unfit_reason`` -> ``backend.replace``).  It never asks which kind it runs.
``run_repro`` is N runs of a session; prove keeps two sessions open at once.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness import report
from harness.errors import GuestError, KernelError
from harness.guest.backends import backend as make_backend
from harness.guest.backends import choose as choose_backend
from harness.guest.machine import Backend, GuestRun, unfit_reason
from harness.guest.protocol import GuestOutput, StepResult
from harness.kernels import Kernel
from harness.kernels import cache as kcache
from harness.options import Accel, RunOptions
from harness.repro import faults, kinds
from harness.repro.kind import Context, RunKind, Staged, wants_vmcore
from harness.repro.spec import ExpectKind, Spec
from harness.repro.watchdog import StepWatchdog
from harness.results import new_run_folder, write_json
from harness.verdict import Evidence, Outcome, Verdict, judge

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
    # what the kind of run adds to result.json, by key: the C reproducer's "binary" (where it was compiled),
    # a test suite's results test by test (under the suite's name)
    kind_record: dict = field(default_factory=dict, compare=False)

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
            **{k: v for k, v in self.kind_record.items() if v},
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
                  Outcome.HANG):
            if o in outcomes:
                return o
        return next((o for o in Outcome if o.is_error and o in outcomes), Outcome.CLEAN)  # a run that never ran

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


class ReproSession:
    """One spec on one kernel: prepared once, then ``run()`` as often as needed (see the module doc)."""

    def __init__(self, spec: Spec, kernel: Kernel, options: RunOptions, *, accel: Accel,
                 progress: Progress | None = None, backend: Backend | None = None):
        self.spec, self.kernel, self.options, self.accel = spec, kernel, options, accel
        self.progress = progress or (lambda msg: None)
        self.requested = options.runs or spec.runs
        self.timeout = options.timeout or spec.timeout
        self.kind: RunKind = kinds.for_spec(spec)
        self.done: list[RunResult] = []
        self.folder: Path | None = None
        self.backend = backend
        self.backend_reason = "given by the caller" if backend is not None else ""
        self.context: Context | None = None
        self.unrunnable: Verdict | None = None  # why no run can start (the compile boot left no binary)
        self.interrupted = False

    # --- prepare once ------------------------------------------------------------------------

    def __enter__(self) -> ReproSession:
        spec, needs = self.spec, self.kind.requirements
        faults.check_kernel(spec.faults, self.kernel)  # a kernel without the fault knobs: one clear line
        if self.backend is None:
            name, self.backend_reason = choose_backend(self.options.backend, self.kernel,
                                                       boot_per_run=spec.guest.fresh_boot,
                                                       fresh_compile=self.options.fresh_compile,
                                                       shares_root=self.kind.name if needs.shares_root else "")
            self.backend = make_backend(name)
        unmet = needs.unmet(self.backend)
        if unmet:
            raise GuestError(unmet)
        if wants_vmcore(spec, self.options) and not self.backend.dumps_memory:
            raise GuestError(f"--vmcore needs a backend that can dump the guest's memory: {self.backend.name} "
                             f"cannot ({self.backend_reason}); use --backend snapshot")
        self.folder = new_run_folder(spec.name, self.kernel.name, self.options.results)
        self._write("running")
        self.progress(f"backend {self.backend.name}: {self.backend_reason}")
        self.context = Context(spec, self.kernel, self.options, self.accel, self.backend, self.folder, self.timeout,
                               self.progress)
        self.backend.open(self.folder, progress=self.progress)
        self.backend.plan(self.requested)
        try:
            self.unrunnable = self.kind.prepare(self.context)
        except BaseException:
            self.kind.close()
            self.backend.close()
            self._write("error")
            raise
        said = self.kind.describe()
        if said:
            self.progress(said)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self.kind.close()
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

    def _run_once(self, index: int, seconds: float | None = None) -> RunResult:
        assert self.context is not None and self.backend is not None
        run_dir = self.folder / f"run-{index:02d}"
        run_dir.mkdir(parents=True)
        record = run_dir / "result.json"
        write_json(record, {"run": index, "status": "running", "kernel": self.kernel.name, "accel": self.accel.name,
                            "backend": self.backend.name})
        started = time.monotonic()
        staged = self.kind.stage(self.context, run_dir, seconds)
        staging = time.monotonic() - started
        watchdog = StepWatchdog(run_dir / "guest.log", self.spec.guest.boot_timeout, staged.request.plan.run_timeout)
        try:
            guest = self.backend.run(staged.request, watchdog=watchdog, timeout=None)
        except KeyboardInterrupt:
            result = RunResult(index, run_dir, Verdict(Outcome.INFRA_ERROR, detail="interrupted (Ctrl-C)"), (),
                               time.monotonic() - started, None)
            write_json(record, {**result.to_dict(), "status": "interrupted"})
            raise
        return self._record(index, run_dir, staged, guest, watchdog, started, staging)

    def _record(self, index: int, run_dir: Path, staged: Staged, guest: GuestRun, watchdog: StepWatchdog,
                started: float, staging: float) -> RunResult:
        recording = time.monotonic()
        text = guest.output_log.read_text(errors="replace") if guest.output_log.exists() else ""
        console = guest.console_log.read_text(errors="replace") if guest.console_log.exists() else ""
        output = GuestOutput.parse(text)
        reading = self.kind.read(self.context, run_dir, staged, output, text, console)
        verdict = judge(Evidence(
            console=console, output=text, expected_titles=self.spec.expect.titles,
            killed=guest.detail or watchdog.reason or ("host timeout" if guest.timed_out else None),
            guest_rc=guest.returncode, any_crash=self.spec.expect.any_crash, timeout_is=self.spec.timeout_is,
            exit_status=self.spec.exit_status,
            explain=self.kind.explain, tests=reading.tests,
            source_dir=kcache.source_roots(self.kernel.extra),
            symbolize=lambda text: report.symbolize_kernel(text, self.kernel).text,  # debug info at hand only
        ))
        info = dict(guest.info)
        info["phases"] = {"host_stage": round(staging, 3), **info.get("phases", {})}
        if self.backend.persistent and guest.signals is not None:
            why = unfit_reason(guest.signals)
            info["replace"] = why
            if why:
                self.backend.replace(why)
        if verdict.report_text:
            (run_dir / "report.txt").write_text(report.symbolize_kernel(verdict.report_text, self.kernel).for_file())
        info["phases"]["host_record"] = round(time.monotonic() - recording, 3)
        result = RunResult(index, run_dir, verdict, output.steps, time.monotonic() - started, output.up_at,
                           {**info, "backend_reason": self.backend_reason}, reading.record)
        write_json(run_dir / "result.json", {**result.to_dict(), "status": "done"})
        if verdict.outcome is Outcome.CLEAN or verdict.outcome.is_bug and verdict.outcome not in (
            Outcome.DATA_LOSS, Outcome.FS_CORRUPT, Outcome.TEST_FAILED
        ):
            for disk in staged.request.disks:  # keep the images only where their content is the evidence
                disk.path.unlink(missing_ok=True)
        return result

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

