"""The proof driver: a fix proven (or refuted) on a base kernel and the same kernel patched.

How runs are made is not this module's business: a ``Side`` is anything with
``run() -> Observation`` (``SessionSide`` wraps the run driver's session;
the tests use fake sides).  The driver:

1. **base check**: runs the base until it has shown the expected outcome
   ``Policy.base_hits`` times.  No hit within the base's share of the runs
   (``base_share`` of ``--max-runs``) or of the ``--budget``: BASE_CLEAN,
   never FIXED.  Some hits but fewer than asked: the proof goes on with them.
2. **interleaved**: the patched kernel, with one more base run after every
   ``interleave`` patched runs (host drift affects both alike; the base's
   bound tightens as it goes).  After every run:
   - an expected hit on the patched kernel: NOT_FIXED;
   - the stopping rule of ``harness.stats.ProveRule`` met (the clean patched
     runs make "the patched kernel still fails at >= fraction x the base's
     rate" implausible at the confidence asked): FIXED, or TRADED when the
     patched runs showed another report the base never showed;
   - ``--max-runs`` or ``--budget`` used up first: INCONCLUSIVE, with how
     many more clean runs would settle it.

Runs that did not run the reproducer (BOOT_FAILURE, INFRA_ERROR,
BUILD_ERROR) are no exposure: they are run again, up to
``Policy.max_failures`` in a row on one kernel, then the proof stops with an
error (its log is kept: ``resume`` continues it).

Every observation is appended to ``proof.jsonl`` in the proof folder (one
JSON object a line, fsync'd) before anything else happens with it, so Ctrl-C
or a kill loses nothing and ``resume(folder, ...)`` replays the log and goes
on.  The output builders (``table``, ``statement``, ``mail_block``,
``to_json``) are pure functions of a ``ProofResult``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import harness.prove.trials as trials
from harness.errors import ExitCode, GuestError, KernelError, SpecError
from harness.repro.trial import Observation
from harness.results.journal import Journal, now
from harness.stats import ProveRule, upper_bound

BASE, PATCHED = "base", "patched"
SIDES = (BASE, PATCHED)
CHECK, TRIALS = "check", "trials"  # a base run's phase: the base check (full race), or a counted trial
LOG_FILE = "proof.jsonl"
MERGED = "merged"  # a proof merged from shards (``harness.prove.shards``): its header context's key
TRIAL_MODES = ("auto", "full")  # or a number of seconds

Progress = Callable[[str], None]


class ProofVerdict(StrEnum):
    FIXED = "FIXED"  # the clean patched runs rule out the bug at >= fraction of the base's rate
    NOT_FIXED = "NOT_FIXED"  # the patched kernel showed the expected outcome
    TRADED = "TRADED"  # the expected outcome gone, another report in its place
    BASE_CLEAN = "BASE_CLEAN"  # the base never reproduced: nothing to prove on it
    INCONCLUSIVE = "INCONCLUSIVE"  # --max-runs or --budget ended first
    NO_CHANGE = "NO_CHANGE"  # the patched build's code is the base's: nothing to run

    @property
    def exit_code(self) -> ExitCode:
        return {
            ProofVerdict.FIXED: ExitCode.OK,
            ProofVerdict.NOT_FIXED: ExitCode.UNMET,
            ProofVerdict.TRADED: ExitCode.UNMET,
            ProofVerdict.BASE_CLEAN: ExitCode.BASE_CLEAN,
            ProofVerdict.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
            ProofVerdict.NO_CHANGE: ExitCode.NO_CHANGE,
        }[self]


# --- one kernel ------------------------------------------------------------------------------


class Side(Protocol):
    """One kernel of the proof: each call runs the reproducer once more (a ``seconds``-long trial when given)."""

    def run(self, seconds: float | None = None) -> Observation: ...


class TrialSide:
    """A Side over an entered ``harness.repro.trial.Trial``."""

    def __init__(self, trial):
        self.trial = trial

    def run(self, seconds: float | None = None) -> Observation:
        return self.trial.run(seconds)


# --- what the proof is about --------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """How the proof runs and when it stops."""

    confidence: float = 0.95
    fraction: float = 0.1  # H0: the patched kernel still fails at >= fraction x the base's rate
    max_runs: int = 200  # runs in all, both kernels, failed runs included
    budget: float | None = None  # wall-clock minutes for one invocation (a resumed proof gets its own)
    base_hits: int = 3  # expected hits the base check waits for
    base_share: float = 1 / 3  # share of max_runs and of the budget the base check may use
    interleave: int = 3  # patched runs per further base run
    max_failures: int = 3  # runs in a row on one kernel that did not run the reproducer
    trial: str | float = "auto"  # trial length after the base check: chosen (auto), the full race, or seconds

    def __post_init__(self):
        ProveRule(self.confidence, self.fraction)  # validates both
        if self.trial not in TRIAL_MODES and not (isinstance(self.trial, int | float) and self.trial > 0):
            raise ValueError(f"the trial length must be auto, full or a number of seconds above 0, not {self.trial!r}")
        if self.max_runs < 2 or self.base_hits < 1 or self.interleave < 1 or self.max_failures < 1:
            raise ValueError("max_runs must be at least 2; base_hits, interleave and max_failures at least 1")
        if not 0 < self.base_share < 1:
            raise ValueError("the base check's share must be between 0 and 1")
        if self.budget is not None and self.budget <= 0:
            raise ValueError("the budget must be a positive number of minutes")

    @property
    def rule(self) -> ProveRule:
        return ProveRule(self.confidence, self.fraction)


@dataclass(frozen=True)
class KernelInfo:
    name: str  # "debian-src:6.1.192/ext2-iomap"
    version: str = ""  # "6.1.192"
    source: str = ""  # "linux-source-6.1=6.1.192-3", "git:<sha>", "linux-image 6.1.170-3"

    @classmethod
    def of(cls, kernel) -> KernelInfo:
        """From a ``harness.kernels.Kernel``: its name, version and source identity or package version."""
        extra = getattr(kernel, "extra", None) or {}
        source = extra.get("identity") or ""
        if not source and extra.get("debian_version"):
            source = f"Debian package {extra['debian_version']}"
        return cls(kernel.name, getattr(kernel, "version", "") or "", source)


@dataclass(frozen=True)
class PatchInfo:
    subject: str
    sha256: str
    revert: bool = False
    file: str = ""

    @classmethod
    def of(cls, op) -> PatchInfo:
        """From a ``harness.kernels.patches.PatchOp``."""
        return cls(op.subject, op.sha256, op.revert, op.path.name)


@dataclass(frozen=True)
class ProofInfo:
    """The header of a proof: what is compared, with which rule.  First line of the log."""

    reproducer: str
    base: KernelInfo
    patched: KernelInfo
    patches: tuple[PatchInfo, ...] = ()
    policy: Policy = field(default_factory=Policy)
    started: str = ""
    context: dict = field(default_factory=dict)  # what the caller needs to rebuild the sides on resume (argv...)
    race: float | None = None  # the spec's full race in seconds, where trials can be shorter (Spec.full_trial)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patches"] = [asdict(p) for p in self.patches]
        return d

    @classmethod
    def from_dict(cls, data: dict) -> ProofInfo:
        return cls(
            reproducer=data["reproducer"],
            base=KernelInfo(**data["base"]),
            patched=KernelInfo(**data["patched"]),
            patches=tuple(PatchInfo(**p) for p in data.get("patches", ())),
            policy=Policy(**data.get("policy", {})),
            started=data.get("started", ""),
            context=dict(data.get("context") or {}),
            race=data.get("race"),
        )


# --- the state of a proof -------------------------------------------------------------------------


@dataclass
class Tally:
    """One kernel's runs so far."""

    runs: int = 0  # runs that count (the reproducer ran)
    hits: int = 0
    failed: int = 0  # runs that did not count
    streak: int = 0  # failed runs in a row
    others: Counter = field(default_factory=Counter)  # titles other than the expected outcome -> runs
    titles: set = field(default_factory=set)  # every title seen (expected ones too)
    times_to_hit: list = field(default_factory=list)
    seconds: float = 0.0  # reproducer seconds, summed
    folders: list = field(default_factory=list)
    last: Observation | None = None
    observations: list = field(default_factory=list)

    def add(self, obs: Observation) -> None:
        self.last = obs
        self.observations.append(obs)
        if obs.folder:
            self.folders.append(obs.folder)
        if not obs.exposure:
            self.failed += 1
            self.streak += 1
            return
        self.streak = 0
        self.runs += 1
        self.hits += obs.hit
        self.seconds += obs.seconds or 0.0
        if obs.hit:
            if obs.time_to_hit is not None:
                self.times_to_hit.append(obs.time_to_hit)
            if obs.title:
                self.titles.add(obs.title)
        if obs.other or obs.reports:
            others = obs.other_titles
            self.others.update(others)
            self.titles.update(others)

    @property
    def attempts(self) -> int:
        return self.runs + self.failed

    @property
    def median_time_to_hit(self) -> float | None:
        return statistics.median(self.times_to_hit) if self.times_to_hit else None


@dataclass(frozen=True)
class Decision:
    verdict: ProofVerdict
    reason: str


class Proof:
    """The pure state machine: which kernel runs next, how long it races, and whether the answer is settled.

    ``full`` is the spec's full race in seconds where a trial can be shorter
    (``ProofInfo.race``); None: every run races as the spec says, and the base
    check's runs count in the rule (``--trial full`` does the same)."""

    def __init__(self, policy: Policy, full: float | None = None):
        self.policy = policy
        self.rule = policy.rule
        self.full = full
        self.tallies = {BASE: Tally(), PATCHED: Tally()}
        self.check = Tally()  # the base check's runs while they only choose the trial length
        self.check_runs: list[Observation] = []
        self.choice: trials.Choice | None = None
        self.base_checked = False  # the base check is over
        self.base_after_check = 0  # base runs (that counted) since then

    @property
    def base(self) -> Tally:
        return self.tallies[BASE]

    @property
    def patched(self) -> Tally:
        return self.tallies[PATCHED]

    @property
    def shortens(self) -> bool:
        """Trials after the base check may race less than the full race (and the check does not count)."""
        return self.full is not None and self.policy.trial != "full"

    @property
    def checking(self) -> Tally:
        """The tally the base check's runs go to."""
        return self.check if self.shortens else self.base

    @property
    def trial(self) -> float | None:
        """The seconds the next run races (None: the spec's full race)."""
        if self.choice is None or self.choice.full:
            return None
        return self.choice.trial

    @property
    def total(self) -> int:
        return self.base.attempts + self.patched.attempts + self.check.attempts

    def add(self, side: str, obs: Observation) -> Tally:
        """Count ``obs``; returns the tally it went to."""
        if side == BASE and self.shortens and self.choice is None:
            self.check.add(obs)
            self.check_runs.append(obs)
            if self.check.hits >= self.policy.base_hits:
                self.base_checked = True
            return self.check
        self.tallies[side].add(obs)
        if side == BASE and self.base_checked and obs.exposure:
            self.base_after_check += 1
        if not self.base_checked and self.base.hits >= self.policy.base_hits:
            self.base_checked = True
        return self.tallies[side]

    def end_base_check(self) -> None:
        self.base_checked = True

    @property
    def needs_choice(self) -> bool:
        return self.shortens and self.base_checked and self.choice is None

    def choose(self) -> trials.Choice:
        """The trial length from the base check (``Policy.trial``: auto, or the seconds given)."""
        sample = trials.Sample.of(self.check_runs, self.full)
        mode = self.policy.trial
        if mode == "auto":
            choice = trials.choose(self.rule, sample, self.policy.interleave)
        else:
            choice = trials.given(float(mode), sample, self.full)
        self.set_choice(choice)
        return choice

    def set_choice(self, choice: trials.Choice) -> None:
        self.choice = choice
        if choice.full:  # full-length trials are the base check's own kind of run: those runs count
            for obs in self.check_runs:
                self.base.add(obs)
            self.check = Tally()

    @property
    def racing(self) -> trials.Racing:
        """The base's hits over its seconds of racing, the check included."""
        total = trials.Racing()
        for obs in (*self.check_runs, *self.base.observations):
            total = total.add(obs)
        return total

    def next_side(self) -> str:
        if not self.base_checked:
            return BASE
        due = self.patched.runs >= self.policy.interleave * (self.base_after_check + 1)
        return BASE if due else PATCHED

    def traded(self) -> list[str]:
        """Reports of the patched runs the base never showed."""
        return [t for t in self.patched.others if t not in self.base.titles | self.check.titles]

    def settled(self) -> Decision | None:
        p = self.patched
        if p.hits:
            title = p.last.title if p.last and p.last.hit else None
            return Decision(ProofVerdict.NOT_FIXED, f"the patched kernel showed the expected outcome"
                            f"{f' ({title})' if title else ''} in its run {p.runs}")
        if not self.base_checked or self.needs_choice or not self.rule.fixed(self.base.hits, self.base.runs, p.runs):
            return None
        needed = self.rule.runs_needed(self.base.hits, self.base.runs)
        what = f"{p.runs} patched {self.unit}s"
        if traded := self.traded():
            return Decision(ProofVerdict.TRADED, f"no expected outcome in {what} (the rule needs "
                            f"{needed}), but another report the base never showed: {'; '.join(traded)}")
        return Decision(ProofVerdict.FIXED, f"no expected outcome in {what} (the rule needs {needed})")

    @property
    def unit(self) -> str:
        """What the rule counts: ``trial`` (of the chosen length) or ``run`` (the full race)."""
        return "run" if self.trial is None else "trial"

    def more_runs(self) -> int | None:
        return self.rule.more_runs(self.base.hits, self.base.runs, self.patched.runs)


# --- the log ------------------------------------------------------------------------------------------


class ProofLog:
    """``proof.jsonl`` (a ``harness.results.journal.Journal``): the header, then one record a line
    (run, phase, trial, verdict), fsync'd."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOG_FILE
        self.journal = Journal(self.path)

    @classmethod
    def create(cls, folder: Path, info: ProofInfo) -> ProofLog:
        log = cls(folder)
        if log.journal.exists():
            raise SpecError(f"{log.path} already holds a proof: resume it, or give another folder")
        log.folder.mkdir(parents=True, exist_ok=True)
        log.append({"type": "header", **info.to_dict()})
        return log

    def append(self, record: dict) -> None:
        self.journal.append(record)

    def read(self) -> tuple[ProofInfo, list[dict]]:
        """The header and the records after it; lines cut by a crash are skipped."""
        try:
            records = self.journal.read()
        except OSError as e:
            raise SpecError(f"no proof to resume in {self.folder}: {e.strerror}") from None
        if not records or records[0].get("type") != "header":
            raise SpecError(f"{self.path} does not start with a proof header: not a proof folder")
        try:
            return ProofInfo.from_dict(records[0]), records[1:]
        except (KeyError, TypeError, ValueError) as e:
            raise SpecError(f"{self.path}: bad proof header ({e})") from None


def replay(policy: Policy, records: Iterable[dict], full: float | None = None) -> Proof:
    """The state a log's records add up to (``full``: the logged ``ProofInfo.race``)."""
    proof = Proof(policy, full)
    for rec in records:
        kind = rec.get("type")
        if kind == "run" and rec.get("side") in SIDES:
            proof.add(rec["side"], Observation.from_dict(rec))
        elif kind == "phase":
            proof.end_base_check()
        elif kind == "trial" and proof.shortens:
            proof.set_choice(trials.Choice.from_dict(rec, full))
    for tally in (*proof.tallies.values(), proof.check):
        tally.streak = 0  # a resumed proof retries kernels that failed before
    return proof


# --- the driver ---------------------------------------------------------------------------------------


class Prover:
    """Runs the sides until the proof settles or its limits end it.

    ``log`` None keeps nothing on disk (the simulation in the tests);
    ``clock`` is seconds (``time.monotonic``), injected by tests; ``full`` is
    the spec's full race where trials may be shorter (see ``Proof``).
    """

    def __init__(
        self,
        base: Side,
        patched: Side,
        policy: Policy,
        *,
        proof: Proof | None = None,
        log: ProofLog | None = None,
        clock: Callable[[], float] = time.monotonic,
        progress: Progress | None = None,
        full: float | None = None,
        records: list[dict] | None = None,  # the log a resume replayed (a ParallelProver takes its finished runs)
    ):
        self.sides = {BASE: base, PATCHED: patched}
        self.policy = policy
        self.proof = proof or Proof(policy, full)
        self.log = log
        self.clock = clock
        self.progress = progress

    def run(self, *, plan_only: bool = False) -> Decision | None:
        """Run until the proof settles (its Decision); ``plan_only``: until the base check is over and the
        trial length chosen (None, unless the base check itself settled it: BASE_CLEAN)."""
        start = self.clock()
        while True:
            decision = self.proof.settled() or self._limits(self.clock() - start)
            if plan_only and decision is None and self.proof.base_checked and not self.proof.needs_choice:
                return None
            if decision is not None:
                if self.log:
                    self.log.append({"type": "verdict", "at": now(), "verdict": decision.verdict.value,
                                     "reason": decision.reason})
                return decision
            if self.proof.needs_choice:
                self._choose()
                continue
            side = self.proof.next_side()
            seconds = self.proof.trial
            phase = CHECK if side == BASE and not self.proof.base_checked else TRIALS
            obs = self._next(side, seconds)
            if self.log:  # on disk first: whatever happens next, this run is kept
                self.log.append({"type": "run", "side": side, "phase": phase, "at": now(), **self._record(obs)})
            tally = self.proof.add(side, obs)
            self._report(side, obs, tally)
            self._check_failures(side, tally)

    def _record(self, obs: Observation) -> dict:
        return obs.to_dict()

    def _next(self, side: str, seconds: float | None) -> Observation:
        """The side's next run (``ParallelProver``: the next one started, of several racing at once)."""
        return self.sides[side].run() if seconds is None else self.sides[side].run(seconds)

    def _choose(self) -> None:
        choice = self.proof.choose()
        if self.log:  # before the first trial: a resume races the same length
            self.log.append({"type": "trial", "at": now(), **choice.to_dict()})
        if self.progress:
            self.progress(f"trial length: {choice.why}")
            if choice.sample is not None and choice.sample.runs:
                pol = self.policy
                rows = trials.plan_rows(pol.confidence, pol.fraction, choice.sample, pol.interleave,
                                        None if pol.trial == "auto" else choice.trial)
                self.progress("the plan, from the base check:\n" + trials.plan_text(rows))

    def _limits(self, elapsed: float) -> Decision | None:
        p, proof = self.policy, self.proof
        budget = p.budget * 60 if p.budget else None
        if not proof.base_checked:
            check = proof.checking
            runs_used = check.attempts >= math.ceil(p.base_share * p.max_runs)
            time_used = budget is not None and elapsed >= p.base_share * budget
            if runs_used or time_used:
                if check.hits == 0:
                    n = check.runs
                    bound = upper_bound(0, n, p.confidence) if n else 1.0
                    return Decision(ProofVerdict.BASE_CLEAN, f"the base never showed the expected outcome in {n} "
                                    f"runs (its rate is below {bound:.3f} with probability {p.confidence:g})")
                proof.end_base_check()
                if self.log:
                    self.log.append({"type": "phase", "at": now(), "phase": "interleave",
                                     "reason": f"base check ended with {check.hits} hits"})
        if proof.total >= p.max_runs:
            return Decision(ProofVerdict.INCONCLUSIVE, f"--max-runs {p.max_runs} reached")
        if budget is not None and elapsed >= budget:
            return Decision(ProofVerdict.INCONCLUSIVE, f"the budget of {p.budget:g} min ran out")
        return None

    def _report(self, side: str, obs: Observation, t: Tally) -> None:
        if self.progress is None:
            return
        what = obs.outcome + (f": {obs.title}" if obs.title else "")
        name = "base check" if t is self.proof.check else side
        unit = "run" if obs.trial is None else f"{obs.trial:g} s trial"
        self.progress(f"{name} {unit} {t.attempts}: {what} ({t.hits}/{t.runs} hits)")

    def _check_failures(self, side: str, t: Tally) -> None:
        if t.streak < self.policy.max_failures:
            return
        last = t.last
        why = f"{last.outcome}{': ' + last.detail if last.detail else ''}" if last else "?"
        where = f"; the proof so far is in {self.log.folder} (resume it)" if self.log else ""
        msg = f"the {side} kernel did not run the reproducer {t.streak} times in a row (last: {why}){where}"
        raise (KernelError if last and last.outcome == "BUILD_ERROR" else GuestError)(msg)


# --- proving and resuming --------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofResult:
    verdict: ProofVerdict
    reason: str
    info: ProofInfo
    proof: Proof
    folder: Path | None = None

    @property
    def exit_code(self) -> ExitCode:
        return self.verdict.exit_code


MakeProver = Callable[..., Prover]  # (policy, *, proof, log, clock, progress, full) -> a Prover over the sides


def sequential(base: Side, patched: Side) -> MakeProver:
    """One run at a time on these two sides (``harness.prove.parallel.side_by_side``: several at once)."""
    return lambda policy, **kw: Prover(base, patched, policy, **kw)


def prove(
    base: Side | None,
    patched: Side | None,
    info: ProofInfo,
    folder: Path,
    *,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
    make: MakeProver | None = None,
) -> ProofResult:
    """A new proof in ``folder`` (its ``proof.jsonl`` starts with ``info``); ``make`` replaces the two sides
    (runs side by side)."""
    info = info if info.started else replace(info, started=now())
    log = ProofLog.create(Path(folder), info)
    make = make or sequential(base, patched)
    prover = make(info.policy, proof=None, log=log, clock=clock, progress=progress, full=info.race)
    decision = prover.run()
    return ProofResult(decision.verdict, decision.reason, info, prover.proof, Path(folder))


def plan(base: Side, patched: Side, info: ProofInfo, folder: Path, *, progress: Progress | None = None,
         clock: Callable[[], float] = time.monotonic) -> tuple[Proof, Decision | None]:
    """A new proof in ``folder`` run through its base check only (``--plan``): the state, and the Decision
    when the check settled it (BASE_CLEAN).  ``resume`` goes on from there."""
    info = info if info.started else replace(info, started=now())
    log = ProofLog.create(Path(folder), info)
    prover = Prover(base, patched, info.policy, log=log, clock=clock, progress=progress, full=info.race)
    return prover.proof, prover.run(plan_only=True)


def no_change(info: ProofInfo, folder: Path, reason: str) -> ProofResult:
    """A proof that ends before any run: the patched build's code is the base's (``harness.kernels.codediff``)."""
    info = info if info.started else replace(info, started=now())
    log = ProofLog.create(Path(folder), info)
    log.append({"type": "verdict", "at": now(), "verdict": ProofVerdict.NO_CHANGE.value, "reason": reason})
    return ProofResult(ProofVerdict.NO_CHANGE, reason, info, Proof(info.policy, info.race), Path(folder))


def read_info(folder: Path) -> ProofInfo:
    """The header of the proof in ``folder`` (to rebuild its sides before ``resume``)."""
    return ProofLog(Path(folder)).read()[0]


def resume(
    folder: Path,
    base: Side | None,
    patched: Side | None,
    *,
    max_runs: int | None = None,
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
    make: MakeProver | None = None,
) -> ProofResult:
    """Continue the proof logged in ``folder``; ``max_runs``/``budget`` replace the logged limits.

    The confidence, the fraction and the trial length stay as logged: changing
    them after seeing runs would spoil the statement.
    """
    log = ProofLog(Path(folder))
    info, records = log.read()
    changes = {k: v for k, v in (("max_runs", max_runs), ("budget", budget)) if v is not None}
    if changes:
        info = replace(info, policy=replace(info.policy, **changes))
    log.append({"type": "resume", "at": now(), **changes})
    proof = replay(info.policy, records, info.race)
    make = make or sequential(base, patched)
    prover = make(info.policy, proof=proof, log=log, clock=clock, progress=progress, full=info.race, records=records)
    decision = prover.run()
    return ProofResult(decision.verdict, decision.reason, info, proof, Path(folder))


def load(folder: Path) -> ProofResult | None:
    """A logged proof's last verdict, without running anything (None while it has none)."""
    info, records = ProofLog(Path(folder)).read()
    ends = [i for i, r in enumerate(records) if r.get("type") == "verdict"]
    if not ends:
        return None
    last = records[ends[-1]]
    proof = replay(info.policy, records[: ends[-1]], info.race)
    return ProofResult(ProofVerdict(last["verdict"]), last.get("reason", ""), info, proof, Path(folder))
