"""A proof split over N machines (CI jobs) and merged into one statement as sound as a one-machine proof.

The sequential proof (``driver``) looks at its counts after every run and stops
when ``ProveRule`` is met: shards racing on N machines cannot share that look.
So a sharded proof is a **fixed-sample** test, planned before any counted trial:

1. **The plan** (``harness prove ... --plan --shards N``, ``make_plan``): the
   base check on one machine, exactly as a proof's (it picks the trial length
   ``D``), then a fixed number of trials per side, ``n`` base and ``m`` patched,
   sized with ``harness.stats.fixed_design``: the cheapest pair with power 0.9
   to say FIXED when the patch removes the bug and the base hits a trial at
   the check's lower bound ``L_c`` (``ProveRule.base_floor`` of the check's hits
   within ``D``, at ``1 - alpha/2``: the base's rate is below it with
   probability at most ``alpha/2``, so a real fix comes out FIXED with
   probability at least ``0.9 (1 - alpha/2)`` whatever the base's true rate).
   ``n`` and ``m`` are split into N shards (``split``), each a fixed count per
   side; ``plan.json`` in the check's folder holds it all, with an ``id`` (a
   digest of its content) every shard records.
2. **A shard** (``--shard I/N --from-check DIR``, ``ShardProver``) runs exactly
   its counts on both kernels, base trials spread evenly among the patched ones,
   with no look at the rule; its folder is a proof folder like any other
   (``proof.jsonl``, ``result.json``, ``--resume`` goes on to its counts).  A
   patched hit ends it early: NOT_FIXED is settled whatever the others show.
3. **The merge** (``--merge DIR...``, ``merge``): the plan and every shard's
   log; the rule applied **once**, to the union of the planned counts (each
   shard's first ``n_i``/``m_i`` counted trials: the sample is the one planned).
   A patched hit anywhere is NOT_FIXED; a shard that failed, stopped short or
   never reported makes the proof INCONCLUSIVE with that shard named: its
   share is never counted as clean, so FIXED needs every shard's trials.

The base check's runs choose ``D`` and size the plan; they are not in the
union (they were not planned: the check stops at its third hit).  With the
counts fixed in advance, ``P(FIXED | H0) <= alpha`` holds exactly as the rule's
module doc argues for one look; ``tests/test_prove_shards.py`` measures it and
the power by simulation for 1, 2 and 4 shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import harness.prove.trials as trials
from harness.errors import SpecError
from harness.prove.driver import (
    BASE,
    LOG_FILE,
    MERGED,
    PATCHED,
    SIDES,
    TRIALS,
    Decision,
    Proof,
    ProofInfo,
    ProofLog,
    ProofResult,
    ProofVerdict,
    Prover,
)
from harness.repro.trial import Observation
from harness.results import new_run_folder, write_json
from harness.results.journal import now
from harness.stats import FixedDesign, ProveRule, fixed_design

PLAN = "plan.json"
POWER = 0.9  # the plan's chance of FIXED for a real fix, at the check's lower bound on the base's rate
LIMIT = 20000  # base trials a plan may ask for
SHARD_KEY = "shard"  # in a shard's header context: {index, of, plan_id, check}
MERGED_KEY = MERGED  # in a merged proof's header context
ERROR_OUTCOMES = ("BOOT_FAILURE", "INFRA_ERROR", "BUILD_ERROR")  # a run that never ran the reproducer


# --- the plan ------------------------------------------------------------------------------------------


def split(total: int, shards: int) -> list[int]:
    """``total`` trials over ``shards`` shards, the first ones one more where it does not divide."""
    if shards < 1:
        raise SpecError(f"--shards {shards}: give a positive number of shards")
    return [total // shards + (i < total % shards) for i in range(shards)]


@dataclass(frozen=True)
class ShardPlan:
    """What ``plan.json`` holds: the proof, its trial length, the fixed counts and their split."""

    reproducer: str
    base: str  # kernel names
    patched: str
    patches: tuple[str, ...]  # sha256 of each patch
    keys: dict  # the kernels' cache keys
    confidence: float
    fraction: float
    trial: dict | None  # the trial length chosen by the check (``trials.Choice.to_dict``); None: the full race
    race: float | None  # the spec's full race where trials may be shorter (``ProofInfo.race``)
    check: dict  # {"runs", "hits", "hits_in_trial", "folder"}
    rate: float  # the planning rate: the check's lower bound at 1 - alpha/2
    power: float  # the design's power at that rate
    base_trials: int
    patched_trials: int
    seconds: float  # expected seconds of all the shards' trials
    shards: tuple[tuple[int, int], ...]  # (base, patched) per shard
    id: str = ""

    @property
    def rule(self) -> ProveRule:
        return ProveRule(self.confidence, self.fraction)

    @property
    def of(self) -> int:
        return len(self.shards)

    def quota(self, index: int) -> tuple[int, int]:
        """(base, patched) trials of shard ``index`` (1-based)."""
        if not 1 <= index <= self.of:
            raise SpecError(f"shard {index}/{self.of}: the plan has shards 1 to {self.of}")
        return self.shards[index - 1]

    def body(self) -> dict:
        d = asdict(self)
        d.pop("id")
        d["patches"], d["shards"] = list(self.patches), [list(s) for s in self.shards]
        return d

    def with_id(self) -> ShardPlan:
        digest = hashlib.sha256(json.dumps(self.body(), sort_keys=True).encode()).hexdigest()[:16]
        return replace(self, id=digest)

    def to_dict(self) -> dict:
        return {**self.body(), "id": self.id}

    @classmethod
    def from_dict(cls, data: dict) -> ShardPlan:
        fields = {**data, "patches": tuple(data["patches"]), "shards": tuple(tuple(s) for s in data["shards"])}
        return cls(**fields)

    def describe(self) -> str:
        length = "the full race" if self.trial is None or self._full else f"{self.trial['seconds']:g} s trials"
        parts = ", ".join(f"shard {i}/{self.of}: {b} base + {p} patched" for i, (b, p) in enumerate(self.shards, 1))
        return (f"plan {self.id}: {self.base_trials} base + {self.patched_trials} patched trials in {length}, "
                f"~{self.seconds / 60:.1f} min of trials in all; power {self.power:.2f} to say FIXED for a real fix "
                f"if the base hits >= {self.rate:.3f} of its trials (the base check's {self.check['hits_in_trial']}/"
                f"{self.check['runs']} at {1 - self.rule.alpha_base:g}); {parts}")

    @property
    def _full(self) -> bool:
        return self.trial is not None and self.race is not None and self.trial["seconds"] >= self.race

    def choice(self) -> trials.Choice | None:
        return None if self.trial is None else trials.Choice.from_dict(self.trial, self.race)


def check_counts(proof: Proof, full: float, length: float | None) -> tuple[trials.Sample, int, int]:
    """The base check's sample, its runs and its hits within trials of ``length`` seconds (None: the full race,
    every hit); the check is the separate tally where trials shorten, else the base's runs so far."""
    runs = proof.check_runs if proof.shortens else proof.base.observations
    sample = trials.Sample.of(runs, full)
    hits = len(sample.times_to_hit) if length is None else sum(t <= length for t in sample.times_to_hit)
    return sample, sample.runs, hits


def _design(rule: ProveRule, sample: trials.Sample, length: float, power: float) -> FixedDesign | None:
    """The fixed design at trial length ``length``, planned at the check's lower bound of its hits within it."""
    hits = sum(t <= length for t in sample.times_to_hit)
    if not hits:
        return None
    return fixed_design(rule, rule.base_floor(hits, sample.runs), power=power, limit=LIMIT,
                        base_cost=sample.overhead + sample.racing(length), patched_cost=sample.overhead + length)


def fixed_choice(rule: ProveRule, sample: trials.Sample, power: float = POWER) -> trials.Choice:
    """``--trial auto`` for a sharded proof: the candidate length (``trials.candidates``) whose fixed design
    costs least (the sequential proof's choice weighs a sequential cost: a short trial that covers one hit of
    three can be cheap to a proof that learns as it goes, and ruinous to a plan made at the check's bound)."""
    costed = [(d.cost, -length, length, d) for length in trials.candidates(sample)
              if (d := _design(rule, sample, length, power)) is not None]
    if not costed:
        return trials.Choice(sample.full, "the full race: no shorter trial has a plan", (), sample)
    _, _, length, d = min(costed, key=lambda c: c[:2])
    why = (f"{length:g} s trials: the least expected time of a fixed plan, {d.cost / 60:.1f} min of trials for "
           f"{d.base} base + {d.patched} patched, from {sample.runs} base check runs")
    return trials.Choice(length, why, (), sample)


def make_plan(info: ProofInfo, proof: Proof, shards: int, folder: Path, full: float, *,
              power: float = POWER) -> ShardPlan:
    """The plan after the base check ``proof`` went through; ``full``: the spec's full race in seconds (its
    timeout where the race is not timed).  Where trials shorten and ``--trial auto``, the length is the
    cheapest for the fixed plan (``fixed_choice``), else the proof's."""
    rule = info.policy.rule
    choice = proof.choice if proof.shortens else None
    if proof.shortens and info.policy.trial == "auto":
        choice = fixed_choice(rule, trials.Sample.of(proof.check_runs, full), power)
    trial = None if choice is None or choice.full else choice.trial
    sample, runs, hits = check_counts(proof, full, trial)
    if hits == 0:
        raise SpecError("the base check saw no hit within the trial length: nothing to plan (run it again)")
    length = trial if trial is not None else full
    rate = rule.base_floor(hits, runs)
    design: FixedDesign | None = fixed_design(rule, rate, power=power, limit=LIMIT,
                                              base_cost=sample.overhead + sample.racing(length),
                                              patched_cost=sample.overhead + length)
    if design is None:
        raise SpecError(f"the base check's {hits}/{runs} bounds the base's rate only at >= {rate:.3g}: no plan of at "
                        f"most {LIMIT} base trials reaches power {power:g}; prove it unsplit")
    counts = tuple(zip(split(design.base, shards), split(design.patched, shards)))
    plan = ShardPlan(
        reproducer=info.reproducer, base=info.base.name, patched=info.patched.name,
        patches=tuple(p.sha256 for p in info.patches), keys=dict(info.context.get("keys") or {}),
        confidence=info.policy.confidence, fraction=info.policy.fraction,
        trial=choice.to_dict() if choice is not None else None, race=info.race,
        check={"runs": runs, "hits": len(sample.times_to_hit), "hits_in_trial": hits, "folder": str(folder)},
        rate=round(rate, 6), power=round(design.power, 4), base_trials=design.base, patched_trials=design.patched,
        seconds=round(design.cost, 1), shards=counts)
    return plan.with_id()


def write_plan(folder: Path, plan: ShardPlan) -> Path:
    write_json(Path(folder) / PLAN, plan.to_dict())
    return Path(folder) / PLAN


def read_plan(folder: Path) -> ShardPlan:
    path = Path(folder) / PLAN
    try:
        data = json.loads(path.read_text())
        plan = ShardPlan.from_dict(data)
    except OSError as e:
        raise SpecError(f"{path}: {e.strerror}: give the folder `harness prove --plan --shards N` made") from None
    except (ValueError, TypeError, KeyError) as e:
        raise SpecError(f"{path}: not a shard plan ({e})") from None
    if plan.with_id().id != plan.id:
        raise SpecError(f"{path}: its content does not match its id {plan.id} (edited?): plan the proof again")
    return plan


def shard_info(check: ProofInfo, plan: ShardPlan, index: int, check_folder: Path) -> ProofInfo:
    """The header of shard ``index``: the check's, the shard named in its context."""
    plan.quota(index)
    ctx = {**check.context, SHARD_KEY: {"index": index, "of": plan.of, "plan_id": plan.id,
                                        "check": str(check_folder), "plan": plan.to_dict()}}
    return replace(check, context=ctx, started=now())


def shard_of(info: ProofInfo) -> dict | None:
    """The shard a proof header names (None: not a shard)."""
    found = info.context.get(SHARD_KEY)
    return found if isinstance(found, dict) else None


# --- a shard: its fixed counts ---------------------------------------------------------------------------


class ShardProver(Prover):
    """Runs one shard's fixed counts (``quota``: base, patched), base trials spread among the patched ones;
    no look at the rule.  Stops early only at a patched hit (NOT_FIXED, whatever the other shards show)."""

    def __init__(self, base, patched, policy, *, quota: tuple[int, int], choice: trials.Choice | None,
                 label: str, **kw):
        kw.pop("records", None)
        super().__init__(base, patched, policy, **kw)
        self.quota = dict(zip(SIDES, quota))
        self.choice = choice
        self.label = label

    def _start(self) -> None:
        """The shard's phase and trial records, once (a resume replays them)."""
        proof = self.proof
        if not proof.base_checked:
            proof.end_base_check()
            if self.log:
                self.log.append({"type": "phase", "at": now(), "phase": "interleave",
                                 "reason": f"shard {self.label}: the base check is the plan's"})
        if proof.shortens and proof.choice is None and self.choice is not None:
            proof.set_choice(self.choice)
            if self.log:
                self.log.append({"type": "trial", "at": now(), **self.choice.to_dict()})

    def next_shard_side(self) -> str | None:
        """The side whose share of its quota is behind (base first on a tie); None: both done."""
        done = {s: self.proof.tallies[s].runs for s in SIDES}
        left = [s for s in SIDES if done[s] < self.quota[s]]
        if len(left) < 2:
            return left[0] if left else None
        return min(SIDES, key=lambda s: (done[s] / self.quota[s], SIDES.index(s)))

    def settled_shard(self) -> Decision | None:
        p = self.proof.patched
        if p.hits:
            title = p.last.title if p.last and p.last.hit else None
            return Decision(ProofVerdict.NOT_FIXED, f"shard {self.label}: the patched kernel showed the expected "
                            f"outcome{f' ({title})' if title else ''} in its trial {p.runs}")
        if self.next_shard_side() is None:
            return Decision(ProofVerdict.INCONCLUSIVE, f"shard {self.label} done: its {self.quota[BASE]} base and "
                            f"{self.quota[PATCHED]} patched trials (the verdict is the merge's: harness prove --merge)")
        return None

    def run(self, *, plan_only: bool = False) -> Decision:
        self._start()
        start = self.clock()
        budget = self.policy.budget * 60 if self.policy.budget else None
        while True:
            decision = self.settled_shard()
            if decision is None and budget is not None and self.clock() - start >= budget:
                decision = Decision(ProofVerdict.INCONCLUSIVE, f"shard {self.label}: the budget of "
                                    f"{self.policy.budget:g} min ran out before its trials were done")
            if decision is not None:
                if self.log:
                    self.log.append({"type": "verdict", "at": now(), "verdict": decision.verdict.value,
                                     "reason": decision.reason})
                return decision
            side = self.next_shard_side()
            obs = self._next(side, self.proof.trial)
            if self.log:
                self.log.append({"type": "run", "side": side, "phase": TRIALS, "at": now(), **self._record(obs)})
            tally = self.proof.add(side, obs)
            self._report(side, obs, tally)
            self._check_failures(side, tally)


def shard_status(result: ProofResult, shard: dict) -> dict:
    """A shard's ``result.json`` entry: which shard of which plan, its quota, what it ran, whether it is done."""
    plan = ShardPlan.from_dict(shard["plan"])
    quota = plan.quota(int(shard["index"]))
    ran = (result.proof.base.runs, result.proof.patched.runs)
    complete = result.proof.patched.hits > 0 or (ran[0] >= quota[0] and ran[1] >= quota[1])
    return {"index": int(shard["index"]), "of": plan.of, "plan_id": plan.id, "base": quota[0], "patched": quota[1],
            "ran_base": ran[0], "ran_patched": ran[1], "complete": complete}


def shard_maker(base, patched, plan: ShardPlan, index: int) -> Callable[..., ShardProver]:
    """A ``driver.MakeProver`` of shard ``index`` of ``plan`` over the two sides."""
    quota, choice = plan.quota(index), plan.choice()

    def make(policy, **kw) -> ShardProver:
        return ShardProver(base, patched, policy, quota=quota, choice=choice, label=f"{index}/{plan.of}", **kw)

    return make


# --- the merge -----------------------------------------------------------------------------------------------


@dataclass
class Part:
    """One shard as the merge found it: its folder (None: never reported), its log, why it does not count."""

    index: int
    of: int
    quota: tuple[int, int]
    folder: Path | None = None
    records: list = field(default_factory=list)
    failure: str | None = None

    @property
    def label(self) -> str:
        return f"{self.index}/{self.of}"

    def counted(self) -> dict[str, list[Observation]]:
        """Per side, the runs this shard logged, its counted trials cut at its quota (failed runs kept)."""
        out: dict[str, list[Observation]] = {BASE: [], PATCHED: []}
        left = dict(zip(SIDES, self.quota))
        for rec in self.records:
            if rec.get("type") != "run" or rec.get("side") not in SIDES:
                continue
            obs = Observation.from_dict(rec)
            if obs.exposure:
                if left[rec["side"]] <= 0:
                    continue  # past its quota: not in the planned sample
                left[rec["side"]] -= 1
            out[rec["side"]].append(obs)
        return out


def _nested(path: Path, root: Path) -> bool:
    """``path`` is inside another proof folder under ``root`` (a merged proof's copies of its shards)."""
    return any((p / LOG_FILE).exists() for p in path.parent.parents if p.is_relative_to(root))


def _shard_logs(dirs: Sequence[Path]) -> list[tuple[Path, ProofInfo, list[dict]]]:
    found = []
    for d in dirs:
        if not Path(d).is_dir():
            raise SpecError(f"{d}: no such folder")
        for log in sorted(Path(d).rglob(LOG_FILE)):
            if _nested(log, Path(d)):
                continue
            try:
                info, records = ProofLog(log.parent).read()
            except SpecError:
                continue
            if shard_of(info) is not None:
                found.append((log.parent, info, records))
    return found


def plans_under(dirs: Sequence[Path]) -> dict[str, tuple[ShardPlan, Path]]:
    """plan id -> (plan, the check's folder) of every plan under ``dirs`` (the first folder of each)."""
    plans: dict[str, tuple[ShardPlan, Path]] = {}
    for d in dirs:
        for path in sorted(Path(d).rglob(PLAN)):
            if _nested(path, Path(d)):
                continue
            plan = read_plan(path.parent)
            plans.setdefault(plan.id, (plan, path.parent))
    return plans


def find_plan(dirs: Sequence[Path], plan_id: str | None = None) -> tuple[ShardPlan, Path]:
    """The one plan under ``dirs`` (the check's folder), or the one of id ``plan_id``; two different plans
    are refused."""
    plans = plans_under(dirs)
    if plan_id is not None:
        plans = {k: v for k, v in plans.items() if k == plan_id}
    if not plans:
        raise SpecError(f"no {PLAN} under {', '.join(map(str, dirs))}: give the check's folder "
                        "(`harness prove ... --plan --shards N`) with the shards'")
    if len(plans) > 1:
        raise SpecError(f"{len(plans)} plans under the folders given ({', '.join(sorted(plans))}): merge one "
                        "proof's shards at a time")
    return next(iter(plans.values()))


def _failure(part: Part, data: dict | None) -> str | None:
    """Why a shard's share cannot count (None: its planned trials are all there, or it ended NOT_FIXED)."""
    if part.folder is None:
        return "never reported"
    counted = part.counted()
    if any(o.hit for o in counted[PATCHED]):
        return None
    if data and data.get("verdict") in ("INFRA_ERROR", "BUILD_ERROR"):
        return f"failed ({data['verdict']}: {data.get('error') or 'no detail'})"
    runs = {s: sum(o.exposure for o in counted[s]) for s in SIDES}
    if runs[BASE] < part.quota[0] or runs[PATCHED] < part.quota[1]:
        logged = [r for r in part.records if r.get("type") == "run"]
        last = logged[-1] if logged else {}
        why = ("failed, its last run " + last["outcome"] + (f": {last['detail']}" if last.get("detail") else "")
               if last.get("outcome") in ERROR_OUTCOMES else "did not finish")
        return (f"{why} ({runs[BASE]} of {part.quota[0]} base and {runs[PATCHED]} of {part.quota[1]} patched "
                "trials logged)")
    return None


def collect(dirs: Sequence[Path], plan_id: str | None = None) -> tuple[ShardPlan, Path, list[Part]]:
    """The plan and its shards under ``dirs``; a shard of another plan is refused (a one-line error), or,
    with ``plan_id`` (a matrix merge: several proofs' shards in one tree), left to its own plan."""
    plan, check = find_plan(dirs, plan_id)
    parts = {i: Part(i, plan.of, plan.quota(i)) for i in range(1, plan.of + 1)}
    for folder, info, records in _shard_logs(dirs):
        shard = shard_of(info)
        if plan_id is not None and shard.get("plan_id") != plan_id:
            continue
        if shard.get("plan_id") != plan.id or int(shard.get("of", 0)) != plan.of:
            raise SpecError(f"{folder}: shard {shard.get('index')}/{shard.get('of')} of plan {shard.get('plan_id')}, "
                            f"not of plan {plan.id} in {check}: merge one proof's shards at a time")
        part = parts.get(int(shard["index"]))
        if part is None:
            raise SpecError(f"{folder}: shard {shard['index']} is not in the plan's {plan.of} shards")
        candidate = Part(part.index, part.of, part.quota, folder, records)
        candidate.failure = _failure(candidate, _result(folder))
        better = part.folder is None or (part.failure is not None and candidate.failure is None) or (
            (part.failure is None) == (candidate.failure is None) and folder.name > part.folder.name)
        if better:
            parts[part.index] = candidate
    for part in parts.values():
        if part.folder is None:
            part.failure = _failure(part, None)
    return plan, check, [parts[i] for i in sorted(parts)]


def _result(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return None


def decide(plan: ShardPlan, proof: Proof, parts: Sequence[Part],
           patched_hit: tuple[Part, Observation, int] | None) -> Decision:
    """The merged verdict: a patched hit anywhere NOT_FIXED; a shard missing or short INCONCLUSIVE naming it;
    else ``ProveRule`` once on the union (FIXED, TRADED, or INCONCLUSIVE when the planned trials fall short)."""
    if patched_hit is not None:
        part, obs, n = patched_hit
        return Decision(ProofVerdict.NOT_FIXED, f"the patched kernel showed the expected outcome"
                        f"{f' ({obs.title})' if obs.title else ''} in shard {part.label}'s trial {n}")
    failed = [p for p in parts if p.failure]
    if failed:
        named = "; ".join(f"shard {p.label} {p.failure}" for p in failed)
        lost = sum(p.quota[0] for p in failed), sum(p.quota[1] for p in failed)
        return Decision(ProofVerdict.INCONCLUSIVE, f"{named}: its share ({lost[0]} base, {lost[1]} patched trials) "
                        "is not counted, never as clean")
    settled = proof.settled()
    if settled is not None:
        return Decision(settled.verdict, f"{settled.reason}; the union of {plan.of} shard(s) of plan {plan.id}")
    b = proof.base
    return Decision(ProofVerdict.INCONCLUSIVE, f"the planned trials did not settle it: the base hit {b.hits} of "
                    f"{b.runs} (the plan counted on >= {plan.rate:.3f} a trial), so {proof.patched.runs} clean patched "
                    f"trials fall short of the rule's {plan.rule.runs_needed(b.hits, b.runs) or 'any number'}")


def union(plan: ShardPlan, info: ProofInfo, check_records: Sequence[dict], parts: Sequence[Part],
          moves: dict[str, str] | None = None) -> tuple[Proof, tuple[Part, Observation, int] | None, list[dict]]:
    """The merged state: the check's runs in their own tally, then every shard's planned trials; the first
    patched hit (shard, run, its trial number); the log records of the merged proof.  ``moves``: folder ->
    its copy, where the runs' folders are now."""
    proof = Proof(info.policy, info.race)
    records: list[dict] = []
    for rec in _moved([r for r in check_records if r.get("type") == "run" and r.get("side") == BASE], moves or {}):
        obs = Observation.from_dict(rec)
        proof.check.add(obs)
        proof.check_runs.append(obs)
        records.append({**rec, "type": "check"})  # kept, never replayed as a counted run
    proof.end_base_check()
    records.append({"type": "phase", "at": now(), "phase": "interleave", "reason": "the plan's base check"})
    choice = plan.choice()
    if proof.shortens and choice is not None:
        proof.set_choice(choice)
        records.append({"type": "trial", "at": now(), **choice.to_dict()})
    hit = None
    for part in parts:
        if part.folder is None or part.failure:  # a failed shard's trials are not the plan's: never counted
            continue
        for side, runs in part.counted().items():
            for obs in runs:
                obs = _moved_obs(obs, moves or {})
                proof.add(side, obs)
                records.append({"type": "run", "side": side, "phase": TRIALS, SHARD_KEY: part.label, **obs.to_dict()})
                if side == PATCHED and obs.hit and hit is None:
                    hit = (part, obs, proof.patched.runs)
    return proof, hit, records


def _moved_folder(folder: str | None, moves: dict[str, str]) -> str | None:
    for src, dest in moves.items():
        if folder and Path(folder).is_relative_to(src):
            return str(Path(dest) / Path(folder).relative_to(src))
    return folder


def _moved(records: list[dict], moves: dict[str, str]) -> list[dict]:
    """The records with each run folder moved into the merged folder's copy of its shard."""
    return [{**rec, "folder": _moved_folder(rec.get("folder"), moves)} if rec.get("folder") else rec
            for rec in records]


def _moved_obs(obs: Observation, moves: dict[str, str]) -> Observation:
    return replace(obs, folder=_moved_folder(obs.folder, moves)) if obs.folder else obs


def merge(dirs: Sequence[Path], results: Path | None = None, *,
          plan_id: str | None = None) -> tuple[ProofResult, ShardPlan, list[Part]]:
    """One proof from the plan (the one of ``plan_id``) and the shards under ``dirs``: a new folder
    (``results`` its root) with the check and the shards copied in (``check/``, ``shard-I/``),
    ``proof.jsonl`` and the verdict.  The caller writes ``result.json`` (``record.proof_record``, with
    ``merged_fields``)."""
    plan, check, parts = collect(dirs, plan_id)
    check_info, check_records = ProofLog(check).read()
    info = replace(check_info, context={**check_info.context, MERGED_KEY: {
        "plan_id": plan.id, "check": str(check), "shards": {p.label: str(p.folder) if p.folder else None
                                                          for p in parts},
        "failed": [p.label for p in parts if p.failure]}}, started=now())
    root = Path(results) if results else check.parent
    folder = new_run_folder(f"prove-{info.reproducer}", f"{info.patched.name}-merged", root)
    moves = {str(check): str(folder / "check")}
    _copy(check, folder / "check")
    for p in parts:
        if p.folder is not None:
            _copy(p.folder, folder / f"shard-{p.index}")
            moves[str(p.folder)] = str(folder / f"shard-{p.index}")
    proof, hit, records = union(plan, info, check_records, parts, moves)
    decision = decide(plan, proof, parts, hit)
    log = ProofLog.create(folder, info)
    for rec in records:
        log.append(rec)
    log.append({"type": "verdict", "at": now(), "verdict": decision.verdict.value, "reason": decision.reason})
    return ProofResult(decision.verdict, decision.reason, info, proof, folder), plan, parts


def _link_or_copy(src: str, dest: str) -> None:
    if Path(src).name in (LOG_FILE, "result.json", PLAN):  # a resumed shard appends to its log: a copy of it
        shutil.copy2(src, dest)
        return
    try:
        os.link(src, dest)  # a finished run's files never change
    except OSError:  # another file system: a copy
        shutil.copy2(src, dest)


def _copy(src: Path, dest: Path) -> None:
    """A shard's folder into the merged one: hard links where they can be (the run folders' scratch disks are
    sparse; a copy would write them out whole, 178 MB of shard becoming 3.2 GB)."""
    shutil.copytree(src, dest, symlinks=True, copy_function=_link_or_copy)


def merged_fields(plan: ShardPlan, parts: Sequence[Part]) -> dict:
    """What a merged proof's ``result.json`` adds: the plan and every shard, the failed ones named."""
    failed = [p for p in parts if p.failure]
    return {
        "plan": {"id": plan.id, "base_trials": plan.base_trials, "patched_trials": plan.patched_trials,
                 "rate": plan.rate, "power": plan.power, "trial": plan.trial and plan.trial.get("seconds")},
        "shards": [{"index": p.index, "of": p.of, "folder": f"shard-{p.index}" if p.folder else None,
                    "base": p.quota[0], "patched": p.quota[1], "failure": p.failure} for p in parts],
        "error": "; ".join(f"shard {p.label} {p.failure}" for p in failed) or None,
    }


def is_shard_folder(folder: Path) -> bool:
    """``folder`` is a shard's proof folder (its ``result.json`` is part of a proof the merge folds)."""
    if not (Path(folder) / LOG_FILE).exists():
        return False
    try:
        return shard_of(ProofLog(folder).read()[0]) is not None
    except SpecError:
        return False
