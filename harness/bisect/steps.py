"""The real step functions: fetch or build a kernel, then boot it and run.

``PrebuiltStep`` (Debian images: fetched, never built) and ``GitBuildStep``
(a commit built through the build cache with the reproducer's kconfig
fragments; the cache's git clone and ``O=`` dir are shared by every step, so
a step recompiles only what changed since the last one, with ccache) both
return a ``KernelTarget`` whose ``run`` is one ``run_repro`` run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.bisect.driver import Progress, StepSkip
from harness.bisect.judge import FAIL, RunObs, classify
from harness.errors import GuestError, KernelError
from harness.options import Accel
from harness.options import RunOptions as BaseOptions
from harness.results import slug


def _preload() -> None:
    """Import everything a step uses now, at the start of a bisection that may run for hours.

    A module imported lazily hours later can come from a newer checkout than
    the ones already loaded (seen here: run.py expecting a Spec field that the
    spec.py loaded at the start did not have).
    """
    import harness.guest.vng  # noqa: F401
    import harness.kernels.build  # noqa: F401
    import harness.repro.run  # noqa: F401


@dataclass
class RunOptions:
    accel: str = "auto"
    backend: str = "vng"
    compile_cache: bool = True
    cmdline: tuple[str, ...] = ()
    results_root: Path | None = None  # runs go to <root>/<kernel slug>/<run folder>
    progress: Progress | None = None


@dataclass
class KernelTarget:
    spec: object
    kernel_record: object  # harness.kernels.Kernel
    options: RunOptions
    info: dict = field(default_factory=dict)
    _accel: tuple[str, str] | None = None

    @property
    def kernel(self) -> str:
        return self.kernel_record.name

    def _choose_accel(self) -> tuple[str, str]:
        if self._accel is None:
            from harness.guest.accel import choose_accel

            self._accel = choose_accel(self.options.accel, self.kernel_record)
            self.info["accel"], self.info["accel_reason"] = self._accel
        return self._accel

    def run(self, index: int) -> RunObs:
        from harness.repro.run import run_repro

        try:
            accel, why = self._choose_accel()
            root = self.options.results_root / slug(self.kernel) if self.options.results_root else None
            options = BaseOptions(accel=self.options.accel, backend=self.options.backend, runs=1, results=root,
                                  fresh_compile=not self.options.compile_cache, cmdline=self.options.cmdline)
            summary = run_repro(self.spec, self.kernel_record, options, accel=Accel(accel, why),
                                progress=self.options.progress)
        except GuestError as e:  # the guest could not even start: says nothing about the bug
            return RunObs(FAIL, "INFRA_ERROR", None, 0.0, None, e.one_line())
        (r,) = summary.runs
        v = r.verdict
        return RunObs(classify(v.outcome, self.spec.expect.is_hit), v.outcome.value, v.title,
                      round(r.wall_seconds, 1), str(r.folder), v.detail)


class PrebuiltStep:
    """Candidates are kernel names (``debian:6.1.0-47``): fetched, never built."""

    def __init__(self, spec, options: RunOptions):
        self.spec, self.options = spec, options
        _preload()

    def __call__(self, candidate: str) -> KernelTarget:
        from harness import kernels

        try:
            kernel = kernels.resolve(candidate, progress=self.options.progress)
        except KernelError as e:
            raise StepSkip(e.one_line(), "INFRA_ERROR") from None
        return KernelTarget(self.spec, kernel, self.options, {"kernel_version": kernel.version})


class GitBuildStep:
    """Candidates are commit ids of ``repo``, built with ``fragments`` (+ ``patches``)."""

    def __init__(self, spec, repo: Path, options: RunOptions, *, fragments: tuple[str, ...],
                 patches: tuple = (), name: str = "default"):
        self.spec, self.repo, self.options = spec, repo, options
        self.fragments, self.patches, self.name = fragments, patches, name
        _preload()

    def variant(self, sha: str):
        from harness.kernels.build import Variant

        return Variant(source=f"git:{self.repo}@{sha}", name=self.name, patches=self.patches, fragments=self.fragments)

    def __call__(self, candidate: str) -> KernelTarget:
        from harness.kernels.build import build

        try:
            kernel = build(self.variant(candidate), progress=self.options.progress)
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
        return KernelTarget(self.spec, kernel, self.options, info)


def setup_for(spec, *, kind: str, fragments: tuple[str, ...] = (), patches: tuple = (), cmdline: tuple = ()) -> dict:
    """What a candidate's result depends on besides the candidate itself (the log's reuse key)."""
    import hashlib

    return {
        "repro": spec.name,
        "source_sha": hashlib.sha256(spec.source_text).hexdigest()[:16],
        "args": list(spec.args),
        "titles": list(spec.expect.titles),
        "kind": kind,
        "fragments": list(fragments),
        "patches": [f"{'R' if getattr(p, 'revert', False) else 'A'}:{hashlib.sha256(Path(p.path).read_bytes()).hexdigest()[:16]}"
                    for p in patches],
        "cmdline": list(cmdline),
    }
