"""Judging one bisection step from its runs, the way syzkaller's bisection does.

A step runs the reproducer up to N times on one kernel.  Each run is one of:

- ``hit``: the spec's expected crash title (or its expected data loss);
- ``clean``: no sign of any bug;
- ``other``: a crash with another title, a hang, data loss the spec does not
  expect: NOT this bug.  It counts as "no reproduction" for the step and is
  reported, never taken as the bug (syzkaller's habit of calling any crash
  "bad" is what sends its bisections to the wrong commit);
- ``fail``: the run says nothing about the bug (BOOT_FAILURE, INFRA_ERROR,
  BUILD_ERROR).  Failed runs are retried up to ``max_fail`` times, then the
  step is judged on the runs that succeeded, or skipped.

A step **reproduces** as soon as its hits reach ``min_hits`` (a hit is the
expected title: certain, confidence 1).  It is **clean** when it had no hit
and enough runs succeeded.  Its confidence is the chance that N clean runs
would have shown the bug if it were there: ``1 - (1 - p)^N``, with ``p`` the
hit rate measured on the steps that reproduce (the known-bad end first),
Laplace-smoothed (``(hits + 1) / (runs + 2)``) so that 2 hits in 2 runs gives
p = 0.75, not a certainty.  A clean step stops early once that confidence
reaches the target: the answer is then already as certain as asked.

The binomial formulas are ``harness.stats``'s (re-exported here).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

# a run is the one Observation (harness.repro.trial), its kinds named there
from harness.repro.trial import CLEAN, FAIL, HIT, OTHER, Observation
from harness.repro.trial import FAIL_OUTCOMES as _FAIL_OUTCOMES

# the binomial math lives in harness.stats (shared with prove); these names stay importable from here
from harness.stats import clean_confidence, laplace, miss_probability
from harness.stats import runs_for as runs_for

REPRODUCES, NO_REPRO, SKIP = "reproduces", "clean", "skip"


def classify(outcome, is_hit) -> str:
    """``hit`` / ``clean`` / ``other`` / ``fail`` for a run's Outcome.

    ``is_hit(outcome)`` is the spec's ``expect.is_hit`` (the expected title,
    or expected data loss).
    """
    value = getattr(outcome, "value", outcome)
    if is_hit(outcome):
        return HIT
    if value == "CLEAN":
        return CLEAN
    if value in _FAIL_OUTCOMES:
        return FAIL
    return OTHER


def RunObs(kind: str, outcome: str = "", title: str | None = None, seconds: float = 0.0, folder: str | None = None,
           detail: str = "") -> Observation:
    """A run of a step as the one ``harness.repro.trial.Observation``, from its kind (hit/clean/other/fail)
    and its wall seconds: how the step functions and the tests make one."""
    return Observation(hit=kind == HIT, outcome=outcome, exposure=kind != FAIL, title=title,
                       other=(title or outcome) if kind == OTHER else None, seconds=seconds,
                       folder=folder, wall_seconds=seconds, detail=detail)


@dataclass(frozen=True)
class Policy:
    """How many runs a step gets and when it may stop."""

    runs: int = 1  # successful runs a step aims for
    min_hits: int = 1  # hits that make a step reproduce
    min_ok: int | None = None  # successful runs a clean verdict needs (default: half of runs, at least 1)
    target: float = 0.95  # a clean step stops once its confidence reaches this
    max_fail: int = 2  # failed runs (boot, infra) before the step is judged on what it has
    prior_rate: float | None = None  # hit rate to assume before any step reproduced (--rate)

    def __post_init__(self):
        if self.runs < 1 or self.min_hits < 1 or self.max_fail < 1:
            raise ValueError("runs, min_hits and max_fail must be positive")
        if not 0 < self.target < 1:
            raise ValueError("target confidence must be between 0 and 1")
        if self.prior_rate is not None and not 0 < self.prior_rate <= 1:
            raise ValueError("the hit rate must be in (0, 1]")

    @property
    def needed_ok(self) -> int:
        return self.min_ok if self.min_ok is not None else max(1, math.ceil(self.runs / 2))


@dataclass(frozen=True)
class Judgement:
    verdict: str  # reproduces | clean | skip
    reason: str
    hits: int = 0
    ok: int = 0  # runs that succeeded (hit, clean or other)
    fails: int = 0
    titles: tuple[str, ...] = ()  # expected titles seen
    other_titles: tuple[str, ...] = ()  # unrelated crashes / outcomes seen (reported)
    confidence: float | None = None
    rate: float | None = None  # the hit rate the confidence used

    def to_dict(self) -> dict:
        d = asdict(self)
        d["titles"], d["other_titles"] = list(self.titles), list(self.other_titles)
        return d


@dataclass
class Rate:
    """Hits and runs pooled over the steps that reproduce."""

    hits: int = 0
    runs: int = 0
    prior: float | None = None

    def add(self, hits: int, runs: int) -> None:
        self.hits += hits
        self.runs += runs

    @property
    def estimate(self) -> float | None:
        """Laplace-smoothed hit rate, or the prior when nothing reproduced yet."""
        if self.runs == 0:
            return self.prior
        return laplace(self.hits, self.runs)

    def to_dict(self) -> dict:
        return {"hits": self.hits, "runs": self.runs, "estimate": _round(self.estimate)}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def decide(runs: list[RunObs], policy: Policy, rate: float | None, *, measure: bool = False) -> Judgement | None:
    """The step's judgement, or None when it needs another run.

    ``measure``: run all ``policy.runs`` even after a hit (the known-bad end,
    whose hit rate the rest of the bisection relies on).
    """
    hits = sum(r.kind == HIT for r in runs)
    ok = sum(r.kind != FAIL for r in runs)
    fails = len(runs) - ok
    non_hit = ok - hits
    titles = tuple(dict.fromkeys(r.title for r in runs if r.kind == HIT and r.title))
    others = tuple(dict.fromkeys((r.title or r.outcome) for r in runs if r.kind == OTHER))

    def judgement(verdict: str, reason: str, confidence: float | None = None) -> Judgement:
        return Judgement(verdict, reason, hits, ok, fails, titles, others, _round(confidence), _round(rate))

    if hits >= policy.min_hits and (not measure or ok >= policy.runs or fails >= policy.max_fail):
        return judgement(REPRODUCES, f"{hits} hit{'s' * (hits != 1)} in {ok} runs", 1.0)
    if hits == 0 and non_hit and rate is not None and not measure:
        conf = clean_confidence(rate, non_hit)
        if conf >= policy.target and non_hit < policy.runs:
            return judgement(NO_REPRO, f"no hit in {non_hit} runs: confidence {conf:.3f} reached the "
                             f"target {policy.target} (rate {rate:.3f})", conf)
    if ok < policy.runs and fails < policy.max_fail:
        return None
    if hits >= policy.min_hits:
        return judgement(REPRODUCES, f"{hits} hits in {ok} runs", 1.0)
    if hits:
        return judgement(SKIP, f"{hits} hit{'s' * (hits != 1)} in {ok} runs: below the threshold of {policy.min_hits}")
    if ok < policy.needed_ok:
        last = next((r for r in reversed(runs) if r.kind == FAIL), None)
        why = f"only {ok} of {policy.runs} runs succeeded ({fails} failed"
        if last is not None:
            why += f", last: {last.outcome}{': ' + last.detail if last.detail else ''}"
        return judgement(SKIP, why + ")")
    reason = f"no hit in {non_hit} runs"
    if others:
        reason += f" (unrelated: {'; '.join(others)})"
    return judgement(NO_REPRO, reason, clean_confidence(rate, non_hit))


@dataclass
class Tally:
    """Pooled figures of a whole bisection (for the report)."""

    rate: Rate = field(default_factory=Rate)
    clean_steps: list[int] = field(default_factory=list)  # non-hit runs of each clean step

    def confidence(self) -> float | None:
        """Probability that no clean verdict was a missed reproduction."""
        p = self.rate.estimate
        if p is None:
            return None if self.clean_steps else 1.0
        conf = 1.0
        for n in self.clean_steps:
            conf *= 1.0 - miss_probability(p, n)
        return _round(conf)
