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

import json
import math
import os
import statistics
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from harness.errors import ExitCode, GuestError, KernelError, SpecError
from harness.stats import ProveRule, clopper_pearson, upper_bound

BASE, PATCHED = "base", "patched"
SIDES = (BASE, PATCHED)
LOG_FILE = "proof.jsonl"
FAIL_OUTCOMES = frozenset({"BOOT_FAILURE", "INFRA_ERROR", "BUILD_ERROR"})

Progress = Callable[[str], None]


class ProofVerdict(StrEnum):
    FIXED = "FIXED"  # the clean patched runs rule out the bug at >= fraction of the base's rate
    NOT_FIXED = "NOT_FIXED"  # the patched kernel showed the expected outcome
    TRADED = "TRADED"  # the expected outcome gone, another report in its place
    BASE_CLEAN = "BASE_CLEAN"  # the base never reproduced: nothing to prove on it
    INCONCLUSIVE = "INCONCLUSIVE"  # --max-runs or --budget ended first

    @property
    def exit_code(self) -> ExitCode:
        return {
            ProofVerdict.FIXED: ExitCode.OK,
            ProofVerdict.NOT_FIXED: ExitCode.UNMET,
            ProofVerdict.TRADED: ExitCode.UNMET,
            ProofVerdict.BASE_CLEAN: ExitCode.BASE_CLEAN,
            ProofVerdict.INCONCLUSIVE: ExitCode.INCONCLUSIVE,
        }[self]


# --- one run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What one run of one kernel showed, as far as the proof is concerned."""

    hit: bool  # the spec's expected outcome (title, or data loss where the spec says so)
    outcome: str  # the run's Outcome value (REPRODUCED, CLEAN, OTHER_CRASH, ...)
    exposure: bool = True  # the reproducer ran: the run counts (boot/infra/build failures do not)
    title: str | None = None  # the verdict's title (the expected one for a hit)
    other: str | None = None  # another report's title (or the outcome, e.g. HANG) when the run was not a hit
    seconds: float | None = None  # reproducer seconds (the run step; up to the hit when it never ended)
    time_to_hit: float | None = None
    reports: tuple[str, ...] = ()  # every report title in the console
    folder: str | None = None
    wall_seconds: float | None = None
    detail: str = ""

    @property
    def other_titles(self) -> tuple[str, ...]:
        """Titles of this run that are not the expected outcome."""
        found = [self.other] if self.other else []
        found += [t for t in self.reports if not (self.hit and t == self.title)]
        return tuple(dict.fromkeys(found))

    def to_dict(self) -> dict:
        return {**asdict(self), "reports": list(self.reports)}

    @classmethod
    def from_dict(cls, data: dict) -> Observation:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["reports"] = tuple(values.get("reports") or ())
        return cls(**values)


def observation(
    *,
    outcome,
    title: str | None,
    time_to_hit: float | None,
    reports: Sequence[str],
    steps: Sequence,
    wall_seconds: float | None,
    folder,
    is_hit: Callable[[object], bool],
    detail: str = "",
) -> Observation:
    """A run driver's RunResult fields -> Observation.

    ``outcome`` is a ``harness.verdict.Outcome`` (or its value), ``steps``
    the run's StepResults (``.name``, ``.seconds``), ``is_hit`` the spec's
    ``expect.is_hit``.  The run counts as exposure when it hit, was CLEAN,
    or reached the ``run`` step without a harness failure.
    """
    value = getattr(outcome, "value", str(outcome))
    hit = bool(is_hit(outcome))
    run_step = next((s for s in steps if getattr(s, "name", None) == "run"), None)
    failed = value in FAIL_OUTCOMES
    exposure = hit or (not failed and (value == "CLEAN" or run_step is not None))
    seconds = getattr(run_step, "seconds", None)
    if seconds is None and exposure:
        seconds = time_to_hit
    return Observation(
        hit=hit,
        outcome=value,
        exposure=exposure,
        title=title,
        other=None if hit or failed or value == "CLEAN" else (title or value),
        seconds=seconds,
        time_to_hit=time_to_hit,
        reports=tuple(reports),
        folder=None if folder is None else str(folder),
        wall_seconds=None if wall_seconds is None else round(wall_seconds, 2),
        detail=detail,
    )


def from_run_result(result, is_hit: Callable[[object], bool]) -> Observation:
    """``harness.repro.run.RunResult`` -> Observation (duck-typed: no import of the run driver)."""
    v = result.verdict
    return observation(
        outcome=v.outcome,
        title=v.title,
        time_to_hit=v.time_to_hit,
        reports=tuple(v.reports),
        steps=tuple(result.steps),
        wall_seconds=result.wall_seconds,
        folder=result.folder,
        is_hit=is_hit,
        detail=v.detail,
    )


class Side(Protocol):
    """One kernel of the proof: each call runs the reproducer once more."""

    def run(self) -> Observation: ...


class SessionSide:
    """A Side over the run driver's session (``ReproSession(...)``, entered): one ``.run()`` a call."""

    def __init__(self, session, is_hit: Callable[[object], bool]):
        self.session = session
        self.is_hit = is_hit

    def run(self) -> Observation:
        return from_run_result(self.session.run(), self.is_hit)


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

    def __post_init__(self):
        ProveRule(self.confidence, self.fraction)  # validates both
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

    def add(self, obs: Observation) -> None:
        self.last = obs
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
    """The pure state machine: which kernel runs next, and whether the answer is settled."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.rule = policy.rule
        self.tallies = {BASE: Tally(), PATCHED: Tally()}
        self.base_checked = False  # the base check is over
        self.base_after_check = 0  # base runs (that counted) since then

    @property
    def base(self) -> Tally:
        return self.tallies[BASE]

    @property
    def patched(self) -> Tally:
        return self.tallies[PATCHED]

    @property
    def total(self) -> int:
        return self.base.attempts + self.patched.attempts

    def add(self, side: str, obs: Observation) -> None:
        self.tallies[side].add(obs)
        if side == BASE and self.base_checked and obs.exposure:
            self.base_after_check += 1
        if not self.base_checked and self.base.hits >= self.policy.base_hits:
            self.base_checked = True

    def end_base_check(self) -> None:
        self.base_checked = True

    def next_side(self) -> str:
        if not self.base_checked:
            return BASE
        due = self.patched.runs >= self.policy.interleave * (self.base_after_check + 1)
        return BASE if due else PATCHED

    def traded(self) -> list[str]:
        """Reports of the patched runs the base never showed."""
        return [t for t in self.patched.others if t not in self.base.titles]

    def settled(self) -> Decision | None:
        p = self.patched
        if p.hits:
            title = p.last.title if p.last and p.last.hit else None
            return Decision(ProofVerdict.NOT_FIXED, f"the patched kernel showed the expected outcome"
                            f"{f' ({title})' if title else ''} in its run {p.runs}")
        if not self.base_checked or not self.rule.fixed(self.base.hits, self.base.runs, p.runs):
            return None
        needed = self.rule.runs_needed(self.base.hits, self.base.runs)
        if traded := self.traded():
            return Decision(ProofVerdict.TRADED, f"no expected outcome in {p.runs} patched runs (the rule needs "
                            f"{needed}), but another report the base never showed: {'; '.join(traded)}")
        return Decision(ProofVerdict.FIXED, f"no expected outcome in {p.runs} patched runs (the rule needs {needed})")

    def more_runs(self) -> int | None:
        return self.rule.more_runs(self.base.hits, self.base.runs, self.patched.runs)


# --- the log ------------------------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


class ProofLog:
    """``proof.jsonl``: the header, then one record a line (run, phase, verdict), fsync'd."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOG_FILE

    @classmethod
    def create(cls, folder: Path, info: ProofInfo) -> ProofLog:
        log = cls(folder)
        if log.path.exists() and log.path.stat().st_size:
            raise SpecError(f"{log.path} already holds a proof: resume it, or give another folder")
        log.folder.mkdir(parents=True, exist_ok=True)
        log.append({"type": "header", **info.to_dict()})
        return log

    def append(self, record: dict) -> None:
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a line cut by a kill: end it, so that it stays one bad line
                    fh.write(b"\n")
            fh.write((json.dumps(record, default=str) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> tuple[ProofInfo, list[dict]]:
        """The header and the records after it; lines cut by a crash are skipped."""
        try:
            lines = self.path.read_text(errors="replace").splitlines()  # a kill may cut a character too
        except OSError as e:
            raise SpecError(f"no proof to resume in {self.folder}: {e.strerror}") from None
        records = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
        if not records or records[0].get("type") != "header":
            raise SpecError(f"{self.path} does not start with a proof header: not a proof folder")
        try:
            return ProofInfo.from_dict(records[0]), records[1:]
        except (KeyError, TypeError, ValueError) as e:
            raise SpecError(f"{self.path}: bad proof header ({e})") from None


def replay(policy: Policy, records: Iterable[dict]) -> Proof:
    """The state a log's records add up to."""
    proof = Proof(policy)
    for rec in records:
        if rec.get("type") == "run" and rec.get("side") in SIDES:
            proof.add(rec["side"], Observation.from_dict(rec))
        elif rec.get("type") == "phase":
            proof.end_base_check()
    for tally in proof.tallies.values():
        tally.streak = 0  # a resumed proof retries kernels that failed before
    return proof


# --- the driver ---------------------------------------------------------------------------------------


class Prover:
    """Runs the sides until the proof settles or its limits end it.

    ``log`` None keeps nothing on disk (the simulation in the tests);
    ``clock`` is seconds (``time.monotonic``), injected by tests.
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
    ):
        self.sides = {BASE: base, PATCHED: patched}
        self.policy = policy
        self.proof = proof or Proof(policy)
        self.log = log
        self.clock = clock
        self.progress = progress

    def run(self) -> Decision:
        start = self.clock()
        while True:
            decision = self.proof.settled() or self._limits(self.clock() - start)
            if decision is not None:
                if self.log:
                    self.log.append({"type": "verdict", "at": _now(), "verdict": decision.verdict.value,
                                     "reason": decision.reason})
                return decision
            side = self.proof.next_side()
            obs = self.sides[side].run()
            if self.log:  # on disk first: whatever happens next, this run is kept
                self.log.append({"type": "run", "side": side, "at": _now(), **obs.to_dict()})
            self.proof.add(side, obs)
            self._report(side, obs)
            self._check_failures(side)

    def _limits(self, elapsed: float) -> Decision | None:
        p, proof = self.policy, self.proof
        budget = p.budget * 60 if p.budget else None
        if not proof.base_checked:
            runs_used = proof.base.attempts >= math.ceil(p.base_share * p.max_runs)
            time_used = budget is not None and elapsed >= p.base_share * budget
            if runs_used or time_used:
                if proof.base.hits == 0:
                    n = proof.base.runs
                    bound = upper_bound(0, n, p.confidence) if n else 1.0
                    return Decision(ProofVerdict.BASE_CLEAN, f"the base never showed the expected outcome in {n} "
                                    f"runs (its rate is below {bound:.3f} with probability {p.confidence:g})")
                proof.end_base_check()
                if self.log:
                    self.log.append({"type": "phase", "at": _now(), "phase": "interleave",
                                     "reason": f"base check ended with {proof.base.hits} hits"})
        if proof.total >= p.max_runs:
            return Decision(ProofVerdict.INCONCLUSIVE, f"--max-runs {p.max_runs} reached")
        if budget is not None and elapsed >= budget:
            return Decision(ProofVerdict.INCONCLUSIVE, f"the budget of {p.budget:g} min ran out")
        return None

    def _report(self, side: str, obs: Observation) -> None:
        if self.progress is None:
            return
        t = self.proof.tallies[side]
        what = obs.outcome + (f": {obs.title}" if obs.title else "")
        self.progress(f"{side} run {t.attempts}: {what} ({t.hits}/{t.runs} hits)")

    def _check_failures(self, side: str) -> None:
        t = self.proof.tallies[side]
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


def prove(
    base: Side,
    patched: Side,
    info: ProofInfo,
    folder: Path,
    *,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> ProofResult:
    """A new proof in ``folder`` (its ``proof.jsonl`` starts with ``info``)."""
    info = info if info.started else replace(info, started=_now())
    log = ProofLog.create(Path(folder), info)
    prover = Prover(base, patched, info.policy, log=log, clock=clock, progress=progress)
    decision = prover.run()
    return ProofResult(decision.verdict, decision.reason, info, prover.proof, Path(folder))


def read_info(folder: Path) -> ProofInfo:
    """The header of the proof in ``folder`` (to rebuild its sides before ``resume``)."""
    return ProofLog(Path(folder)).read()[0]


def resume(
    folder: Path,
    base: Side,
    patched: Side,
    *,
    max_runs: int | None = None,
    budget: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    progress: Progress | None = None,
) -> ProofResult:
    """Continue the proof logged in ``folder``; ``max_runs``/``budget`` replace the logged limits.

    The confidence and the fraction stay as logged: changing them after
    seeing runs would spoil the statement.
    """
    log = ProofLog(Path(folder))
    info, records = log.read()
    changes = {k: v for k, v in (("max_runs", max_runs), ("budget", budget)) if v is not None}
    if changes:
        info = replace(info, policy=replace(info.policy, **changes))
    log.append({"type": "resume", "at": _now(), **changes})
    proof = replay(info.policy, records)
    decision = Prover(base, patched, info.policy, proof=proof, log=log, clock=clock, progress=progress).run()
    return ProofResult(decision.verdict, decision.reason, info, proof, Path(folder))


def load(folder: Path) -> ProofResult | None:
    """A logged proof's last verdict, without running anything (None while it has none)."""
    info, records = ProofLog(Path(folder)).read()
    ends = [i for i, r in enumerate(records) if r.get("type") == "verdict"]
    if not ends:
        return None
    last = records[ends[-1]]
    proof = replay(info.policy, records[: ends[-1]])
    return ProofResult(ProofVerdict(last["verdict"]), last.get("reason", ""), info, proof, Path(folder))


# --- output: pure functions of a ProofResult ----------------------------------------------------------


def fraction_text(fraction: float) -> str:
    """0.1 -> "1/10"; 0.3 -> "0.3"."""
    inv = round(1 / fraction)
    return f"1/{inv}" if inv > 1 and abs(1 / fraction - inv) < 1e-6 else f"{fraction:g}"


def _rate(t: Tally) -> str:
    if not t.runs:
        return "-"
    lo, hi = clopper_pearson(t.hits, t.runs, 0.95)
    return f"{t.hits / t.runs:.2f} [{lo:.2f}, {hi:.2f}]"


def _others(t: Tally) -> str:
    return "; ".join(f"{title} (x{n})" for title, n in t.others.most_common()) or "-"


def table(result: ProofResult) -> str:
    """Kernel, runs, hits, rate with its 95% Clopper-Pearson interval, median time-to-hit, other reports."""
    rows = [("", "kernel", "runs", "hits", "rate [95% CI]", "median time-to-hit", "other reports")]
    for side, kernel in ((BASE, result.info.base), (PATCHED, result.info.patched)):
        t = result.proof.tallies[side]
        tth = t.median_time_to_hit
        rows.append((
            side,
            kernel.name,
            f"{t.runs}" + (f" (+{t.failed} failed)" if t.failed else ""),
            str(t.hits),
            _rate(t),
            "-" if tth is None else f"{tth:.2f} s",
            _others(t),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def statement(result: ProofResult, *, ascii: bool = False) -> str:
    """The answer in words, with the figures it rests on."""
    ge = ">=" if ascii else "≥"
    pol, rule = result.info.policy, result.info.policy.rule
    b, p = result.proof.base, result.proof.patched
    conf = f"{pol.confidence:g}"
    if result.verdict is ProofVerdict.NOT_FIXED:
        return (f"The patched kernel still fails: the expected outcome showed in {p.hits} of {p.runs} patched "
                f"runs, against {b.hits} of {b.runs} base runs.")
    if result.verdict is ProofVerdict.BASE_CLEAN:
        bound = upper_bound(0, b.runs, pol.confidence) if b.runs else 1.0
        return (f"Nothing to prove on this base: it never showed the expected outcome in {b.runs} runs "
                f"(its rate is below {bound:.3f} with probability {conf}).")
    floor = rule.base_floor(b.hits, b.runs)
    basis = (f"(base: {b.hits} hits in {b.runs} runs, its rate {ge} {floor:.3f} with probability "
             f"{1 - rule.alpha_base:g})")
    claim = (f"Had the patched kernel still failed at {ge} {fraction_text(pol.fraction)} of the base rate, "
             f"{p.runs} clean runs would have shown it with probability {ge} {conf} {basis}.")
    if result.verdict is ProofVerdict.FIXED:
        return claim
    if result.verdict is ProofVerdict.TRADED:
        return f"The expected outcome is gone, traded for another report: {'; '.join(result.proof.traded())}. {claim}"
    more = result.proof.more_runs()
    if more is None:
        return f"Not settled ({result.reason}): the base has not shown the expected outcome yet."
    return (f"Not settled ({result.reason}): {p.runs} clean patched runs so far; about {more} more clean runs "
            f"would settle it at the base's current bound {basis}.")


def _kernel_line(k: KernelInfo) -> str:
    return k.name + (f", Linux {k.version}" if k.version else "") + (f" ({k.source})" if k.source else "")


def mail_block(result: ProofResult) -> str:
    """Plain text to paste into a mailing-list reply: what was run, on what, and the answer (no tags)."""
    info, pol = result.info, result.info.policy
    b, p = result.proof.base, result.proof.patched
    lines = [f"Reproducer: {info.reproducer} (kernel-repro-harness: harness prove)", f"Base:       {_kernel_line(info.base)}"]
    if info.patches:
        lines.append("Patched:    the base with")
        for patch in info.patches:
            lines.append(f"              {'revert of ' if patch.revert else ''}{patch.subject}")
            lines.append(f"                sha256 {patch.sha256}")
    else:
        lines.append(f"Patched:    {_kernel_line(info.patched)}")
    lines += [
        f"Runs:       base {b.runs} runs, {b.hits} hits; patched {p.runs} runs, {p.hits} hits",
        f"Result:     {result.verdict.value} (confidence {pol.confidence:g}, fraction {fraction_text(pol.fraction)})",
        "",
        *textwrap.wrap(statement(result, ascii=True), 72),
    ]
    return "\n".join(lines)


def _side_json(t: Tally, kernel: KernelInfo) -> dict:
    lo, hi = clopper_pearson(t.hits, t.runs, 0.95) if t.runs else (0.0, 1.0)
    return {
        "kernel": asdict(kernel),
        "runs": t.runs,
        "hits": t.hits,
        "failed": t.failed,
        "rate": round(t.hits / t.runs, 4) if t.runs else None,
        "ci95": [round(lo, 4), round(hi, 4)],
        "median_time_to_hit": t.median_time_to_hit,
        "reproducer_seconds": round(t.seconds, 2),
        "other_reports": dict(t.others),
        "folders": list(t.folders),
    }


def to_json(result: ProofResult) -> dict:
    """One object: verdict, confidence, base/patched runs and hits, the statement, and the rest."""
    info, proof, rule = result.info, result.proof, result.info.policy.rule
    settled_runs = result.verdict in (ProofVerdict.FIXED, ProofVerdict.TRADED, ProofVerdict.INCONCLUSIVE)
    achieved = rule.achieved(proof.base.hits, proof.base.runs, proof.patched.runs) if settled_runs else None
    return {
        "verdict": result.verdict.value,
        "reason": result.reason,
        "confidence": info.policy.confidence,
        "fraction": info.policy.fraction,
        "achieved_confidence": None if achieved is None else round(achieved, 4),
        "base": _side_json(proof.base, info.base),
        "patched": _side_json(proof.patched, info.patched),
        "statement": statement(result),
        "more_runs": proof.more_runs() if result.verdict is ProofVerdict.INCONCLUSIVE else None,
        "traded": proof.traded() if result.verdict is ProofVerdict.TRADED else [],
        "reproducer": info.reproducer,
        "patches": [asdict(p) for p in info.patches],
        "policy": asdict(info.policy),
        "folder": None if result.folder is None else str(result.folder),
        "exit_code": int(result.exit_code),
    }
