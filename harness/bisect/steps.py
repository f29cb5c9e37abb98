"""The real step functions: fetch or build a kernel, then boot it and run.

``PrebuiltStep`` (Debian images: fetched, never built) and ``GitBuildStep``
(a commit built through the build cache with the reproducer's kconfig
fragments; the cache's git clone and ``O=`` dir are shared by every step, so
a step recompiles only what changed since the last one, with ccache) both
return a ``KernelTarget``: one ``Trial`` (one run session) for the step, one ``run`` a run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from harness import kernels
from harness.bisect.driver import Progress, StepSkip
from harness.bisect.judge import FAIL, RunObs
from harness.errors import GuestError, KernelError
from harness.guest.accel import accel_for
from harness.kernels.build import Variant, build
from harness.options import Accel, RunOptions
from harness.repro.trial import Trial
from harness.results import slug

# Everything a step uses is imported above, when the bisection starts: a module
# imported lazily hours later could come from a newer checkout than the ones
# already loaded (seen here: run.py expecting a Spec field that the spec.py
# loaded at the start did not have).


@dataclass
class KernelTarget:
    """One candidate's kernel, run as one ``Trial`` for the whole step (entered by the driver): one boot (or
    one saved guest on the snapshot backend) a step, not a run.  ``options.results`` is the bisection's runs
    root: each kernel's runs go to ``<results>/<kernel slug>/``."""

    spec: object
    kernel_record: kernels.Kernel
    options: RunOptions
    progress: Progress | None = None
    info: dict = field(default_factory=dict)
    _accel: Accel | None = None
    _trial: Trial | None = None
    _unrunnable: str | None = None  # why the step's session could not open: every run of it says so

    @property
    def kernel(self) -> str:
        return self.kernel_record.name

    def _choose_accel(self) -> Accel:
        if self._accel is None:
            self._accel = accel_for(self.options, self.kernel_record)
            self.info["accel"], self.info["accel_reason"] = self._accel.name, self._accel.reason
        return self._accel

    def __enter__(self) -> KernelTarget:
        return self

    def __exit__(self, *exc) -> None:
        if self._trial is not None:
            trial, self._trial = self._trial, None
            trial.__exit__(*exc)

    def _open(self) -> Trial | None:
        if self._trial is None and self._unrunnable is None:
            try:
                accel = self._choose_accel()
                root = self.options.results / slug(self.kernel) if self.options.results else None
                trial = Trial(self.spec, self.kernel_record, self.options.with_(results=root), accel=accel,
                              progress=self.progress)
                self._trial = trial.__enter__()
            except GuestError as e:  # the guest could not even start: says nothing about the bug
                self._unrunnable = e.one_line()
        return self._trial

    def run(self, index: int) -> RunObs:
        trial = self._open()
        if trial is None:
            return RunObs(FAIL, "INFRA_ERROR", None, 0.0, None, self._unrunnable or "")
        try:
            return trial.run()
        except GuestError as e:  # one run's guest failed to start: that run says nothing about the bug
            return RunObs(FAIL, "INFRA_ERROR", None, 0.0, None, e.one_line())


class PrebuiltStep:
    """Candidates are kernel names (``debian:6.1.0-47``): fetched, never built."""

    def __init__(self, spec, options: RunOptions, *, progress: Progress | None = None):
        self.spec, self.options, self.progress = spec, options, progress

    def __call__(self, candidate: str) -> KernelTarget:
        try:
            kernel = kernels.resolve(candidate, progress=self.progress)
        except KernelError as e:
            raise StepSkip(e.one_line(), "INFRA_ERROR") from None
        return KernelTarget(self.spec, kernel, self.options, self.progress, {"kernel_version": kernel.version})


class GitBuildStep:
    """Candidates are commit ids of ``repo``, built with ``fragments`` (+ ``patches``)."""

    def __init__(self, spec, repo: Path, options: RunOptions, *, fragments: tuple[str, ...],
                 patches: tuple = (), name: str = "default", progress: Progress | None = None):
        self.spec, self.repo, self.options, self.progress = spec, repo, options, progress
        self.fragments, self.patches, self.name = fragments, patches, name

    def variant(self, sha: str) -> Variant:
        return Variant(source=f"git:{self.repo}@{sha}", name=self.name, patches=self.patches, fragments=self.fragments)

    def __call__(self, candidate: str) -> KernelTarget:
        try:
            kernel = build(self.variant(candidate), progress=self.progress)
        except KernelError as e:  # BuildFailed, PatchFailed, a checkout that failed
            info = {"log": str(getattr(e, "log_path", "") or "")} if getattr(e, "log_path", None) else {}
            raise StepSkip(e.one_line(), "BUILD_ERROR", info) from None
        extra = kernel.extra
        info = {
            "key": extra.get("key"),
            "build_seconds": None if extra.get("cached") else extra.get("build_seconds"),
            "cached": extra.get("cached"),
            "objects": None if extra.get("cached") else extra.get("objects"),
            "entry": extra.get("entry"),
        }
        return KernelTarget(self.spec, kernel, self.options, self.progress, info)


def setup_for(spec, *, kind: str, fragments: tuple[str, ...] = (), patches: tuple = (), cmdline: tuple = (),
              timeout: int | None = None) -> dict:
    """What a candidate's result depends on besides the candidate itself (the log's reuse key).

    ``timeout`` (the reproducer's limit, when the command line changed it) is
    in the key only when given, so logs written before it was there still match.
    """
    setup = {
        "repro": spec.name,
        "source_sha": hashlib.sha256(spec.source_text).hexdigest()[:16],
        "args": list(spec.trial_args()),  # as run: {seconds} at the full race, so older logs still match
        "titles": list(spec.expect.titles),
        "kind": kind,
        "fragments": list(fragments),
        "patches": [f"{'R' if getattr(p, 'revert', False) else 'A'}:{hashlib.sha256(Path(p.path).read_bytes()).hexdigest()[:16]}"
                    for p in patches],
        "cmdline": list(cmdline),
    }
    if timeout is not None:
        setup["timeout"] = timeout
    return setup
