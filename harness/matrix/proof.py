"""Proofs on real kernels: the base and patched recipes, the two run sessions, a proof's record.

``harness prove`` (harness.cli.prove), ``harness repro --patch`` and a
matrix entry's ``prove:`` cell share this module:

- ``Target``: one kernel to build (a ``harness.kernels.build.Variant``) and
  the boot options its guests need (a variant's ``cmdline:``);
- ``base_target(spec, variant=V | base=SOURCE)``: a spec's variant (its
  patch stack, kconfig fragments and boot options), or a kernel source with
  the default fragments;
- ``patched_target(base, ops)``: the same recipe with ``ops`` applied after
  its stack, under a name of its own (``ext2-iomap+1a2b3c4d``, or
  ``patched-1a2b3c4d`` on a plain source, as ``harness kernel build -p``
  names it), so the patched build never answers for the base's name in the
  kernel cache.  The build is incremental: same source slot and fragments,
  only the files the patches touch recompile;
- ``run_proof``: both kernels' run sessions open at once (a backend stays up
  across its runs), ``harness.prove`` runs them and decides; with no
  ``info`` it resumes the proof logged in the folder;
- ``proof_record``: the proof folder's ``result.json``: ``harness.prove.to_json``
  plus the fields a matrix cell's record has (``repro``, ``kernel``,
  ``verdict``, ``hits``/``runs`` of the patched kernel, ``results``), so the
  matrix index, the HTML/JUnit reports and the history DB read a proof like
  any cell;
- ``run_proof_cell``: a matrix cell that is a proof (one row, both kernels).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness import kernels, prove
from harness.errors import HarnessError, KernelError, SpecError, UnknownName
from harness.kernels import Kernel
from harness.kernels import patches as patchlib
from harness.kernels.build import Variant, build
from harness.kernels.patches import PatchOp, load_patches
from harness.matrix.spec import ProveEntry
from harness.options import Accel, RunOptions
from harness.prove import BASE, PATCHED, KernelInfo, PatchInfo, Policy, ProofInfo, ProofResult, SessionSide, Side
from harness.repro.run import ReproSession, variant_build
from harness.repro.spec import Spec, VariantSpec
from harness.results import new_run_folder, write_json

Progress = Callable[[str], None]
RESULT = "result.json"


# --- recipes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One kernel to build, and the boot options its guests need."""

    variant: Variant
    cmdline: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.variant.kernel_name

    def describe(self) -> str:
        v = self.variant
        stack = ", ".join(op.describe() for op in v.patches) or "no patches"
        kconfig = "+".join(Path(f).stem if "/" in f else f for f in v.fragments)
        boot = f" · boot {' '.join(self.cmdline)}" if self.cmdline else ""
        return f"{v.source} · {stack} · kconfig {kconfig}{boot}"

    def build(self, *, progress: Progress | None = None) -> Kernel:
        return build(self.variant, progress=progress)


def load_ops(args: Sequence[str]) -> list[PatchOp]:
    """Every ``--patch`` argument's stack, in order (a file, a series, an mbox, ``revert:P``)."""
    return [op for arg in args for op in load_patches(arg)]


def absolute(arg: str) -> str:
    """A ``--patch`` argument with its path made absolute (``revert:`` kept): what a resume reloads."""
    prefix = "revert:" if arg.startswith("revert:") else ""
    return prefix + str(Path(arg.removeprefix("revert:")).expanduser().resolve())


def buildable(source: str) -> None:
    """Raise SpecError unless ``source`` is a kernel the harness builds from source."""
    kind, _ = kernels.split_name(source)
    if not hasattr(kernels.SOURCES.select(kind), "checkout"):
        raise SpecError(f"{source} is a prebuilt kernel: patches need a source to build "
                        "(--base debian-src:VERSION, git:PATH@REV or dir:PATH)")


def variant_target(variant: VariantSpec) -> Target:
    return Target(variant_build(variant), variant.cmdline)


def base_target(spec: Spec, *, variant: str | None = None, base: str | None = None) -> Target:
    """The kernel a fix goes on: ``variant`` of the spec, or the ``base`` source with the default
    fragments; neither: the spec's only variant, or its kernel when that is a source."""
    if variant and base:
        raise SpecError("--variant and --base both name the kernel to patch: give one")
    if variant:
        return variant_target(spec.variant(variant))
    if base:
        buildable(base)
        return Target(Variant(source=base))
    if len(spec.variants) == 1:
        return variant_target(spec.variants[0])
    if spec.variants:
        names = ", ".join(v.name for v in spec.variants)
        raise UnknownName(f"{spec.name} has the variants {names}: say which one the patches go on "
                          "(--variant V), or give --base SOURCE")
    try:
        buildable(spec.kernel)
    except SpecError:
        raise SpecError(f"{spec.name} runs on {spec.kernel}, a prebuilt kernel: give --base SOURCE "
                        "(e.g. debian-src:6.1.192) to build one the patches can go on") from None
    return Target(Variant(source=spec.kernel))


def patched_target(base: Target, ops: Sequence[PatchOp]) -> Target:
    """``base`` with ``ops`` applied after its own stack (``base`` itself when there are none)."""
    if not ops:
        return base
    v = base.variant
    tag = patchlib.digest(ops)[:8]
    name = f"{v.name}+{tag}" if v.name != "default" else f"patched-{tag}"
    return Target(replace(v, name=name, patches=v.patches + tuple(ops)), base.cmdline)


# --- the proof on two sessions ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofKernel:
    """One side of a proof: its recipe, the kernel built from it, the accelerator it runs with."""

    target: Target
    kernel: Kernel
    accel: Accel


def proof_info(spec: Spec, base: ProofKernel, patched: ProofKernel, ops: Sequence[PatchOp], policy: Policy,
               context: dict) -> ProofInfo:
    """The proof's header; ``context`` also records both kernels' cache keys (a resume checks them)."""
    keys = {side: pk.kernel.extra.get("key") for side, pk in ((BASE, base), (PATCHED, patched))}
    return ProofInfo(spec.name, KernelInfo.of(base.kernel), KernelInfo.of(patched.kernel),
                     tuple(PatchInfo.of(op) for op in ops), policy, context={**context, "keys": keys})


def check_resumed(info: ProofInfo, base: ProofKernel, patched: ProofKernel, ops: Sequence[PatchOp]) -> None:
    """Raise SpecError when the kernels or patches rebuilt for a resume are not the logged ones."""
    logged = [p.sha256 for p in info.patches]
    if [op.sha256 for op in ops] != logged:
        raise SpecError(f"the patches changed since the proof began (sha256 {', '.join(x[:12] for x in logged)} "
                        "logged): start a new proof")
    keys = info.context.get("keys") or {}
    for side, pk in ((BASE, base), (PATCHED, patched)):
        key = pk.kernel.extra.get("key")
        if keys.get(side) and key and keys[side] != key:
            raise SpecError(f"the {side} kernel {pk.kernel.name} is another build than the proof's "
                            f"({key}, logged {keys[side]}): its recipe changed; start a new proof")


def _session(spec: Spec, pk: ProofKernel, options: RunOptions, results: Path, runs: int,
             progress: Progress | None, side: str) -> ReproSession:
    opts = options.with_(results=results, runs=runs, cmdline=tuple(dict.fromkeys(options.cmdline + pk.target.cmdline)))
    say = (lambda msg: progress(f"{side}: {msg}")) if progress else None
    return ReproSession(spec, pk.kernel, opts, accel=pk.accel, progress=say)


def run_proof(spec: Spec, base: ProofKernel, patched: ProofKernel, options: RunOptions, folder: Path, *,
              info: ProofInfo | None = None, max_runs: int | None = None, budget: float | None = None,
              progress: Progress | None = None, on_run: Progress | None = None) -> ProofResult:
    """A new proof (``info``) in ``folder``, or the one logged there resumed (``info`` None).

    Each kernel's runs go to ``folder/base/`` and ``folder/patched/`` (one run
    driver folder per session); ``on_run`` gets the prover's line after each run.
    """
    folder = Path(folder)
    policy = info.policy if info is not None else prove.read_info(folder).policy
    runs = max_runs or policy.max_runs
    with _session(spec, base, options, folder / BASE, runs, progress, BASE) as bs, \
            _session(spec, patched, options, folder / PATCHED, runs, progress, PATCHED) as ps:
        sides = SessionSide(bs, spec.expect.is_hit), SessionSide(ps, spec.expect.is_hit)
        if info is None:
            return prove.resume(folder, *sides, max_runs=max_runs, budget=budget, progress=on_run)
        return prove.prove(*sides, info, folder, progress=on_run)


# --- the proof's record ------------------------------------------------------------------------------


def patch_label(patches: Sequence[PatchInfo] | Sequence[str]) -> str:
    """``0002-ext2-validate-cached-iomap-with-i_blkseq`` (``revert 0001-...``): the patches by file name."""
    names = []
    for p in patches:
        if isinstance(p, PatchInfo):
            names.append(("revert " if p.revert else "") + Path(p.file).stem)
        else:
            names.append(("revert " if p.startswith("revert:") else "") + Path(p.removeprefix("revert:")).stem)
    return " + ".join(names) or "no patch"


def _runs(folder: Path) -> list[dict]:
    """Every run of the log, in order, as a cell record's ``results`` (``path``: the run folder, relative)."""
    _, records = prove.ProofLog(folder).read()
    out = []
    for rec in (r for r in records if r.get("type") == "run"):
        run_dir = Path(rec["folder"]) if rec.get("folder") else None
        path = str(run_dir.relative_to(folder)) if run_dir and run_dir.is_relative_to(folder) else ""
        out.append({"run": len(out) + 1, "side": rec.get("side"), "verdict": rec.get("outcome"),
                    "title": rec.get("title"), "time_to_hit": rec.get("time_to_hit"),
                    "wall_seconds": rec.get("wall_seconds") or 0.0, "detail": rec.get("detail") or "",
                    "path": path})
    return out


def _title(result: ProofResult) -> str | None:
    """The report that decided the proof: the patched kernel's hit, or what it traded the bug for."""
    if result.verdict is prove.ProofVerdict.TRADED:
        return "; ".join(result.proof.traded()) or None
    last = result.proof.patched.last
    if result.verdict is prove.ProofVerdict.NOT_FIXED and last is not None:
        return last.title or last.outcome
    return None


def proof_record(result: ProofResult, *, label: str, expectation: str | None = None,
                 wall_seconds: float | None = None) -> dict:
    """``result.json`` of a proof folder: ``to_json`` and a matrix cell's fields (see the module doc)."""
    data = prove.to_json(result)
    patched = result.proof.patched
    met = None if expectation is None else result.verdict.value.lower() == expectation
    tth = list(patched.times_to_hit)
    return {
        **data,
        "repro": result.info.reproducer,
        "kernel": {"name": label, "base": data["base"]["kernel"], "patched": data["patched"]["kernel"]},
        "title": _title(result),
        "hits": patched.hits,
        "runs": patched.runs,
        "expectation": expectation,
        "expectation_met": met,
        "interrupted": False,
        "time_to_hit": tth,
        "median_time_to_hit": patched.median_time_to_hit,
        "results": _runs(result.folder) if result.folder else [],
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
        "status": "done",
    }


def write_record(folder: Path, record: dict) -> Path:
    write_json(Path(folder) / RESULT, record)
    return Path(folder) / RESULT


# --- a proof as a matrix cell -------------------------------------------------------------------------


def entry_targets(entry: ProveEntry, spec: Spec) -> tuple[Target, Target, list[PatchOp]]:
    """A matrix ``prove:`` entry's base and patched recipes, and its patches."""
    ops = load_ops(entry.patches)
    base = base_target(spec, variant=entry.variant, base=entry.base)
    return base, patched_target(base, ops), ops


def _error_record(job, verdict: str, message: str, folder: Path) -> dict:
    """A proof cell that could not be judged (a build, or a kernel that would not run the reproducer)."""
    log = folder / prove.LOG_FILE
    return {
        "repro": job.cell.repro, "kernel": {"name": job.cell.kernel_id}, "accel": job.accel.name,
        "accel_reason": job.accel.reason, "verdict": verdict, "title": None, "hits": 0, "runs": 0,
        "expectation": job.cell.expectation, "expectation_met": None, "interrupted": False, "time_to_hit": [],
        "median_time_to_hit": None, "results": _runs(folder) if log.exists() else [], "error": message,
        "status": "done",
    }


def run_proof_cell(job, folder: Path, progress: Progress | None = None, *,
                   sides: tuple[Side, Side] | None = None) -> Path:
    """Run the proof of a matrix cell into a cell folder under ``folder``; return that folder.

    ``job`` is a ``harness.matrix.run.CellJob`` whose ``proof`` holds both
    kernels; ``sides`` replaces the two run sessions (the tests' fake kernels).
    """
    cell = job.cell
    base, patched = job.proof
    out = new_run_folder(cell.repro, cell.kernel_id, folder)
    ops = load_ops(cell.prove.patches)
    info = proof_info(job.spec, base, patched, ops, cell.prove.policy(),
                      {"matrix_cell": cell.id, "patches": list(cell.prove.patches)})
    started = time.monotonic()
    try:
        if sides is None:
            result = run_proof(job.spec, base, patched, job.options, out, info=info, progress=progress,
                               on_run=progress)
        else:
            result = prove.prove(*sides, info, out, progress=progress)
    except KeyboardInterrupt:
        record = _error_record(job, "INFRA_ERROR", "interrupted", out)
        write_record(out, {**record, "verdict": None, "status": "interrupted", "interrupted": True})
        raise
    except HarnessError as exc:  # recorded as the cell's verdict; the proof log stays for a look
        verdict = "BUILD_ERROR" if isinstance(exc, KernelError) else "INFRA_ERROR"
        write_record(out, _error_record(job, verdict, exc.one_line(), out))
        return out
    record = proof_record(result, label=cell.kernel_id, expectation=cell.expectation,
                          wall_seconds=time.monotonic() - started)
    write_record(out, {**record, "accel": base.accel.name, "accel_reason": base.accel.reason})
    return out
