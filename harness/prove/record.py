"""A proof on real kernels: both kernels' trials, NO_CHANGE before any run, the proof folder's record.

- ``ProofKernel``: one side's recipe (``harness.kernels.recipe.Recipe``), the
  kernel built from it and the accelerator it runs with (probed after the
  NO_CHANGE check: a patch that changes no code costs no probe);
- ``resumed_kernels``: both kernels of a logged proof again, from its recipe;
- ``code_change``: the patched build's code against the base's
  (``harness.kernels.codediff``): the same code is NO_CHANGE, with no runs;
- ``run_proof``: both kernels' trials open at once (``harness.repro.trial.Trial``:
  a backend stays up across its runs), the driver runs them and decides; with
  no ``info`` it resumes the proof logged in the folder;
- ``proof_record``: the proof folder's ``result.json``: ``to_json`` plus the
  fields a matrix cell's record has (``repro``, ``kernel``, ``verdict``,
  ``hits``/``runs`` of the patched kernel, ``results``), so the matrix index,
  the HTML/JUnit reports and the history DB read a proof like any cell.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import harness.prove.driver as driver
import harness.prove.parallel as parallel
import harness.prove.shards as shards
import harness.prove.trials as trials
from harness.errors import KernelError, SpecError, UnknownName
from harness.guest.accel import accel_for
from harness.kernels import Kernel, codediff
from harness.kernels.cache import find_named
from harness.kernels.patches import PatchOp
from harness.kernels.recipe import Recipe, load_ops
from harness.options import Accel, RunOptions
from harness.paths import results_dir
from harness.prove.driver import BASE, PATCHED, KernelInfo, PatchInfo, Policy, ProofInfo, ProofResult, TrialSide
from harness.prove.output import to_json
from harness.repro.spec import Spec
from harness.repro.trial import Trial
from harness.results import slug, write_json
from harness.sizes import parse_size

Progress = Callable[[str], None]
RESULT = "result.json"
BOOTS = 3  # saved boots a kernel's runs are spread over (snapshot backend): not every run one memory layout


# --- the proof on two sessions ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofKernel:
    """One side of a proof: its recipe, the kernel built from it, the accelerator it runs with (None: probed
    when the proof first needs it, after the NO_CHANGE check)."""

    recipe: Recipe
    kernel: Kernel
    accel: Accel | None = None

    def probed(self, options: RunOptions, say: Progress | None = None, side: str = "") -> ProofKernel:
        """This side with its accelerator resolved (``--accel``, or the probe cached per host boot)."""
        if self.accel is not None:
            return self
        accel = accel_for(options, self.kernel)
        if say:
            say(f"{side}: {self.kernel.name} ({self.kernel.release}), accel {accel.name}: {accel.reason}")
        return replace(self, accel=accel)


Build = Callable[[str, Recipe], ProofKernel]


def resumed_kernels(info: ProofInfo, spec: Spec, build: Build) -> tuple[ProofKernel, ProofKernel]:
    """Both kernels of a logged proof again: ``build(side, recipe)`` of the logged recipe (cache hits), checked
    against the logged keys and patches; else, with no recipe logged, by their names in the kernel cache."""
    ctx = info.context
    if ctx.get("patches") is not None:
        ops = load_ops(ctx["patches"])
        base = spec.recipe(variant=ctx.get("variant"), base=ctx.get("base"))
        pair = build(BASE, base), build(PATCHED, base.patched(ops))
        check_resumed(info, *pair, ops)
        return pair
    out = []
    for side, name in ((BASE, info.base.name), (PATCHED, info.patched.name)):
        kernel = find_named(name)
        if kernel is None:
            raise UnknownName(f"the {side} kernel {name} of this proof is not in the kernel cache and the proof "
                              "logs no recipe to rebuild it: start a new proof")
        out.append(ProofKernel(Recipe.of_kernel(kernel), kernel))
    return out[0], out[1]


def trial_race(spec: Spec) -> float | None:
    """The full race a proof's trials may shorten: the spec's ``race:``, or the run step's limit of a C file
    the harness stops at the trial's end; None where reaching the limit is a HANG (it cannot be cut short)."""
    if spec.timed_race or spec.timeout_is == "clean":
        return spec.full_trial
    return None


def proof_info(spec: Spec, base: ProofKernel, patched: ProofKernel, ops: Sequence[PatchOp], policy: Policy,
               context: dict) -> ProofInfo:
    """The proof's header; ``context`` also records both kernels' cache keys (a resume checks them)."""
    keys = {side: pk.kernel.extra.get("key") for side, pk in ((BASE, base), (PATCHED, patched))}
    return ProofInfo(spec.name, KernelInfo.of(base.kernel), KernelInfo.of(patched.kernel),
                     tuple(PatchInfo.of(op) for op in ops), policy, context={**context, "keys": keys},
                     race=trial_race(spec))


def code_change(base: ProofKernel, patched: ProofKernel) -> codediff.CodeDiff | None:
    """The patched build's code against the base's; None where it cannot be told (no vmlinux to read)."""
    try:
        return codediff.compare(base.kernel, patched.kernel)
    except KernelError:
        return None


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


def _trial(spec: Spec, pk: ProofKernel, options: RunOptions, results: Path, runs: int,
           progress: Progress | None, side: str) -> Trial:
    opts = options.with_(results=results, runs=runs, cmdline=tuple(dict.fromkeys(options.cmdline + pk.recipe.cmdline)),
                         boots=options.boots or max(BOOTS, spec.guest.boots))
    say = (lambda msg: progress(f"{side}: {msg}")) if progress else None
    return Trial(spec, pk.kernel, opts, accel=pk.accel, progress=say)


def run_proof(spec: Spec, base: ProofKernel, patched: ProofKernel, options: RunOptions, folder: Path, *,
              info: ProofInfo | None = None, max_runs: int | None = None, budget: float | None = None,
              progress: Progress | None = None, on_run: Progress | None = None, jobs: int = 1) -> ProofResult:
    """A new proof (``info``) in ``folder``, or the one logged there resumed (``info`` None).

    Each kernel's runs go to ``folder/base/`` and ``folder/patched/`` (one run
    driver folder per session); ``on_run`` gets the prover's line after each run.
    ``jobs`` above 1 races that many guests at once (``harness.prove.parallel``):
    each slot opens its own session of a kernel when it first runs one.
    """
    folder = Path(folder)
    logged = info if info is not None else driver.read_info(folder)
    policy, shard = logged.policy, shards.shard_of(logged)
    if info is not None and info.patches and shard is None:  # a shard's plan passed the NO_CHANGE check
        diff = code_change(base, patched)
        if diff is not None and diff.same:
            return driver.no_change(info, folder, diff.describe())
    runs = max_runs or policy.max_runs
    pks = {BASE: base.probed(options, progress, BASE), PATCHED: patched.probed(options, progress, PATCHED)}
    with contextlib.ExitStack() as stack:
        def side(name: str, slot: int = 0) -> TrialSide:  # a session opened on a slot's first run of that kernel
            label = name if jobs == 1 else f"{name} {slot + 1}"
            return TrialSide(stack.enter_context(_trial(spec, pks[name], options, folder / name, runs, progress,
                                                        label)))

        if shard is not None:  # one guest at a time: the shard's counts are fixed, its order too
            make = shards.shard_maker(side(BASE), side(PATCHED), shards.ShardPlan.from_dict(shard["plan"]),
                                      int(shard["index"]))
        elif jobs > 1:
            make = parallel.side_by_side(side, jobs)
        else:
            make = driver.sequential(side(BASE), side(PATCHED))
        if info is None:
            return driver.resume(folder, None, None, max_runs=max_runs, budget=budget, progress=on_run, make=make)
        return driver.prove(None, None, info, folder, progress=on_run, make=make)


def default_jobs(spec: Spec, cores: int | None = None, memory_mib: int | None = None) -> int:
    """Guests at once the host allows: its cores over the guest's vCPUs, its memory over 1.5x the guest's."""
    cores = cores or os.cpu_count() or 1
    if memory_mib is None:
        try:
            memory_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
        except (ValueError, OSError):
            memory_mib = 0
    guest = max(1, parse_size(spec.guest.memory, bare="M", what="memory size") // (1 << 20))
    by_memory = int(memory_mib // (1.5 * guest)) if memory_mib else cores
    return max(1, min(cores // max(1, spec.guest.cpus), by_memory))


def history(spec: Spec, base: Kernel, root: Path | None) -> tuple[trials.Sample, Path] | None:
    """The newest base check recorded for this reproducer on this base build (a ``trial`` record of a proof
    under ``root``, the results folder): its sample and the proof folder it comes from; None when there is none."""
    root = Path(root) if root else results_dir()
    key = base.extra.get("key")
    for log in sorted(root.glob(f"*-prove-{slug(spec.name)}-*/{driver.LOG_FILE}"), reverse=True):
        try:
            info, records = driver.ProofLog(log.parent).read()
        except SpecError:
            continue
        if info.reproducer != spec.name or info.base.name != base.name or (
                key and (info.context.get("keys") or {}).get(BASE) not in (None, key)):
            continue
        chosen = [r for r in records if r.get("type") == "trial" and r.get("sample")]
        if chosen:
            choice = trials.Choice.from_dict(chosen[-1], info.race)
            if choice.sample is not None and choice.sample.runs:
                return choice.sample, log.parent
    return None


def plan_text(spec: Spec, base: Kernel, info: ProofInfo, root: Path | None) -> str | None:
    """The plan from the recorded history (``history``), as the proof prints it before its first run."""
    found = history(spec, base, root)
    if found is None:
        return None
    sample, folder = found
    pol = info.policy
    fixed = None if pol.trial == "auto" else (sample.full if pol.trial == "full" else float(pol.trial))
    return (f"the plan, from the base check recorded in {folder.name}:\n"
            + trials.plan_text(trials.plan_rows(pol.confidence, pol.fraction, sample, pol.interleave, fixed)))


def plan_proof(spec: Spec, base: ProofKernel, patched: ProofKernel, options: RunOptions, folder: Path,
               info: ProofInfo, *, progress: Progress | None = None, on_run: Progress | None = None,
               shard_count: int | None = None) -> tuple[ProofResult | None, list[dict], shards.ShardPlan | None]:
    """``harness prove --plan``: NO_CHANGE, or the base check run in ``folder`` and the plan it gives
    (``harness.prove.trials.plan_rows``); a settled result (NO_CHANGE, BASE_CLEAN) instead of a plan when
    there is nothing to plan.  ``resume`` of the folder goes on with the proof.  ``shard_count`` (``--shards
    N``): also the fixed-sample plan of N shards (``harness.prove.shards``), written to ``folder/plan.json``."""
    diff = code_change(base, patched) if info.patches else None
    if diff is not None and diff.same:
        return driver.no_change(info, folder, diff.describe()), [], None
    base, patched = base.probed(options, progress, BASE), patched.probed(options, progress, PATCHED)
    with _trial(spec, base, options, folder / BASE, info.policy.max_runs, progress, BASE) as bt, \
            _trial(spec, patched, options, folder / PATCHED, info.policy.max_runs, progress, PATCHED) as pt:
        proof, decision = driver.plan(TrialSide(bt), TrialSide(pt), info, folder, progress=on_run)
    if decision is not None:
        return ProofResult(decision.verdict, decision.reason, info, proof, Path(folder)), [], None
    pol = info.policy
    full = info.race if info.race is not None else float(spec.timeout)
    planned = None
    if shard_count:
        planned = shards.make_plan(info, proof, shard_count, Path(folder), full)
        shards.write_plan(folder, planned)
    sample = trials.Sample.of(proof.check_runs or proof.base.observations, full)
    fixed = None if pol.trial == "auto" else (full if pol.trial == "full" or info.race is None else float(pol.trial))
    return None, trials.plan_rows(pol.confidence, pol.fraction, sample, pol.interleave, fixed), planned


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


def runs_of(folder: Path) -> list[dict]:
    """Every run of the log, in order, as a cell record's ``results`` (``path``: the run folder, relative)."""
    _, records = driver.ProofLog(folder).read()
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
    if result.verdict is driver.ProofVerdict.TRADED:
        return "; ".join(result.proof.traded()) or None
    last = result.proof.patched.last
    if result.verdict is driver.ProofVerdict.NOT_FIXED and last is not None:
        return last.title or last.outcome
    return None


def proof_record(result: ProofResult, *, label: str, expectation: str | None = None,
                 wall_seconds: float | None = None) -> dict:
    """``result.json`` of a proof folder: ``to_json`` and a matrix cell's fields (see the module doc)."""
    data = to_json(result)
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
        "results": runs_of(result.folder) if result.folder else [],
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
        "status": "done",
    }


def write_record(folder: Path, record: dict) -> Path:
    write_json(Path(folder) / RESULT, record)
    return Path(folder) / RESULT


