"""How long a proof's trials race, chosen from what the base check measured; what a proof will cost.

A clean patched run races the spec's whole ``race:`` (30 s for ext2's
i_blkseq race) while the base hits within a second: a proof at the full
length spends almost all of its time racing a kernel that is not going to
fail.  After the base check (the base at the full length until it has shown
the bug ``Policy.base_hits`` times), the proof picks one trial length ``D``
and from then on runs both kernels in ``D``-second trials; only those trials
count toward the stopping rule (``harness.stats.ProveRule``, unchanged: a
trial is a Bernoulli run like any other, and a hit is a hit within the trial).
The base check's runs choose ``D`` and never count in the rule, so the choice
cannot select its own evidence (a ``D`` that happens to cover every hit seen
would otherwise be credited with them).

The cost model (``plan``): at trial length ``D`` the base hits a trial with
probability ``p(D)``, estimated from the base check's times to hit as
``(#{T <= D} + 1/2) / (n + 1)`` (shrunk, so three hits in three runs never
promise a certain hit); a trial costs the measured per-run overhead ``o`` (a
run's wall time less its racing) plus its racing, ``D`` for a clean patched
trial and ``E[min(T, D)]`` for a base one.  With ``k = p(D) n`` expected hits
in ``n`` base trials and one base trial per ``interleave`` patched ones, the
proof ends FIXED at the first ``m`` clean patched trials with
``m >= N(k, m / interleave)``; the expected wall time is
``n (o + E[min(T, D)]) + m (o + D)``.  ``choose`` evaluates every candidate
``D`` (each measured time to hit with a 25% margin, and the full race) and
keeps the cheapest.

``D`` is fixed for the rest of the proof (also on resume): re-choosing it
from the trials seen so far and pooling trials of different lengths would
mix two experiments, and shortening ``D`` after a run of early hits makes the
pooled base rate too high for the new, shorter trials; the simulation in
tests/test_trials.py measures that pooling's wrong-FIXED rate against the
fixed ``D``'s.

What a proof in ``D``-second trials claims (``hazard_cut``): the rule rules
out a patched per-trial rate ``>= f L``.  Under proportional hazards (the
patch divides the race's rate per second of racing by ``c``), a trial's miss
probability goes from ``S(D)`` to ``S(D)^(1/c)``; with the base's rate per
second of racing bounded below by ``lambda_L`` (its hits over its racing
seconds, a one-sided Poisson bound), ``S(D) <= exp(-lambda_L D)`` and the patch
still fails at least ``f L`` of the trials while ``c <= lambda_L D / -ln(1 - f
L)``: that ``c`` is the cut the proof would have caught.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from harness.stats import ProveRule

MARGIN = 1.25  # a candidate D is a measured time to hit with this margin
MIN_TRIAL = 0.5  # seconds: below this a trial is all overhead


@functools.cache
def _gammaincinv():
    # imported on first use: scipy takes 0.3-1 s to import and every `harness` command imports this module
    from scipy.special import gammaincinv

    return gammaincinv


@dataclass(frozen=True)
class Sample:
    """What the base check measured: the hits' times, the runs without a hit, the per-run overhead."""

    times_to_hit: tuple[float, ...]  # seconds into the race of each hit
    clean: int  # runs that raced the full length without a hit (other reports included)
    full: float  # the full race's seconds
    overhead: float  # median seconds of a run beyond its racing (restore, stage, mount, check, record)

    @property
    def runs(self) -> int:
        return len(self.times_to_hit) + self.clean

    def rate(self, trial: float) -> float:
        """Predicted base hit rate of a ``trial``-second trial (shrunk towards 1/2)."""
        hits = sum(t <= trial for t in self.times_to_hit)
        return (hits + 0.5) / (self.runs + 1)

    def racing(self, trial: float) -> float:
        """Expected seconds a base trial races: ``E[min(T, trial)]`` (runs without a hit race it all)."""
        if not self.runs:
            return trial
        return (sum(min(t, trial) for t in self.times_to_hit) + self.clean * trial) / self.runs

    @classmethod
    def of(cls, observations: Iterable, full: float) -> Sample:
        """From the base check's ``harness.repro.trial.Observation`` records (runs that counted only)."""
        times, clean, overheads = [], 0, []
        for obs in observations:
            if not obs.exposure:
                continue
            if obs.hit:
                times.append(obs.time_to_hit if obs.time_to_hit is not None else (obs.seconds or full))
            else:
                clean += 1
            raced = obs.seconds if obs.seconds is not None else (obs.time_to_hit or 0.0)
            if obs.overhead is not None:  # the backend's phases: a boot the run waited for is not overhead
                overheads.append(obs.overhead)
            elif obs.wall_seconds is not None:
                overheads.append(max(0.0, obs.wall_seconds - raced))
        return cls(tuple(times), clean, full, statistics.median(overheads) if overheads else 0.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "times_to_hit": [round(t, 3) for t in self.times_to_hit],
                "overhead": round(self.overhead, 3)}


@dataclass(frozen=True)
class Plan:
    """The expected cost of a proof ending FIXED in ``trial``-second trials."""

    trial: float
    rate: float  # predicted base hit rate per trial
    base_runs: int  # base trials, the base check not included
    patched_runs: int
    seconds: float  # expected wall seconds of those runs
    full: bool = False  # the trial is the spec's full race

    @property
    def settles(self) -> bool:
        return self.patched_runs > 0

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def runs_to_fixed(rule: ProveRule, rate: float, interleave: int, *, limit: int = 5000) -> tuple[int, int]:
    """(base trials, patched trials) at which a base hitting ``rate`` of its trials settles FIXED
    (``k = rate n`` expected hits); (0, 0) when no number of runs under ``limit`` does."""
    for m in range(1, limit):
        n = max(1, math.ceil(m / interleave))
        needed = rule.runs_needed(min(n, math.floor(rate * n + 1e-9)), n)
        if needed is not None and m >= needed:
            return n, m
    return 0, 0


def plan(rule: ProveRule, sample: Sample, trial: float, interleave: int = 3) -> Plan:
    rate = sample.rate(trial)
    n, m = runs_to_fixed(rule, rate, interleave)
    seconds = n * (sample.overhead + sample.racing(trial)) + m * (sample.overhead + trial) if m else math.inf
    return Plan(trial, rate, n, m, seconds, full=trial >= sample.full)


def candidates(sample: Sample) -> list[float]:
    """Each measured time to hit with a margin (at least ``MIN_TRIAL``), and the full race."""
    out = {round(max(MIN_TRIAL, t * MARGIN), 2) for t in sample.times_to_hit if t * MARGIN < sample.full}
    return sorted(out) + [sample.full]


@dataclass(frozen=True)
class Choice:
    """The trial length picked, why, and every candidate's plan."""

    trial: float
    why: str
    plans: tuple[Plan, ...] = ()
    sample: Sample | None = None
    given: bool = False  # --trial SECONDS, or --trial full: not chosen from the data

    @property
    def full(self) -> bool:
        return self.sample is not None and self.trial >= self.sample.full

    @classmethod
    def from_dict(cls, data: dict, full: float | None) -> Choice:
        """A logged ``trial`` record (``to_dict``) back; ``full`` is the proof's full race."""
        sample = data.get("sample")
        if sample:
            sample = Sample(tuple(sample.get("times_to_hit") or ()), int(sample.get("clean") or 0),
                            float(sample.get("full") or full or 0.0), float(sample.get("overhead") or 0.0))
        elif full is not None:
            sample = Sample((), 0, full, 0.0)
        plans = tuple(Plan(**p) for p in data.get("plans") or ())
        return cls(float(data["seconds"]), data.get("why", ""), plans, sample or None, bool(data.get("given")))

    def to_dict(self) -> dict:
        return {"seconds": self.trial, "why": self.why, "given": self.given,
                "sample": self.sample.to_dict() if self.sample else None,
                "plans": [p.to_dict() for p in self.plans]}


def choose(rule: ProveRule, sample: Sample, interleave: int = 3) -> Choice:
    """The candidate trial length with the least expected wall time to FIXED."""
    plans = tuple(plan(rule, sample, d, interleave) for d in candidates(sample))
    best = min(plans, key=lambda p: (p.seconds, -p.trial))
    if not math.isfinite(best.seconds):
        return Choice(sample.full, "no shorter trial is expected to settle: the full race", plans, sample)
    full = plans[-1]
    vs = f" (the full {sample.full:g} s race: {_minutes(full.seconds)})" if best is not full else ""
    why = (f"{best.trial:g} s trials: the least expected time to FIXED, {_minutes(best.seconds)} for "
           f"{best.base_runs} base + {best.patched_runs} patched trials{vs}; from {sample.runs} base check runs "
           f"({len(sample.times_to_hit)} hits, times to hit {_times(sample.times_to_hit)}), a predicted base rate "
           f"of {best.rate:.2f} a trial and {sample.overhead:.1f} s of overhead a run")
    return Choice(best.trial, why, plans, sample)


def given(seconds: float | None, sample: Sample | None, full: float) -> Choice:
    """A trial length the user fixed (``--trial SECONDS``; None: ``--trial full``)."""
    if seconds is None or seconds >= full:
        return Choice(full, f"the full {full:g} s race (--trial full)", (), sample, given=True)
    return Choice(seconds, f"{seconds:g} s trials (--trial {seconds:g})", (), sample, given=True)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if math.isfinite(seconds) else "never"


def _times(times: Sequence[float]) -> str:
    shown = ", ".join(f"{t:.2f}" for t in sorted(times)[:6])
    return (shown + (", ..." if len(times) > 6 else "") + " s") if times else "none"


# --- what the proof claims, per second of racing ---------------------------------------------------


def rate_floor(hits: int, racing: float, alpha: float) -> float:
    """One-sided lower Poisson bound on hits per second of racing: ``P(rate < bound) <= alpha``."""
    if hits <= 0 or racing <= 0:
        return 0.0
    return float(_gammaincinv()(hits, alpha)) / racing


def hazard_cut(rule: ProveRule, base_floor: float, per_second: float, trial: float) -> float | None:
    """The largest cut of the base's per-second rate that ``trial``-second trials would have caught."""
    threshold = rule.fraction * base_floor
    if per_second <= 0 or not 0 < threshold < 1:
        return None
    return per_second * trial / -math.log1p(-threshold)


@dataclass(frozen=True)
class Racing:
    """The base's hits and seconds of racing, over every base run (the base check included)."""

    hits: int = 0
    seconds: float = 0.0
    runs: int = 0
    extra: dict = field(default_factory=dict)

    def add(self, obs) -> Racing:
        raced = obs.raced
        if raced is None:
            return self
        return Racing(self.hits + bool(obs.hit), self.seconds + raced, self.runs + 1)


# --- the plan: what a proof will cost, at the settings asked and looser ones -----------------------------

LOOSER = ((0.95, 0.2), (0.9, 0.5), (0.8, 1.0))


def plan_rows(confidence: float, fraction: float, sample: Sample, interleave: int = 3,
              trial: float | None = None) -> list[dict]:
    """One row per setting (the one asked first, then the looser ones): its trial length, runs and minutes,
    the base check's runs included; ``trial`` fixes the length (``--trial``), None picks each setting's best."""
    check = sample.runs * (sample.overhead + sample.racing(sample.full))  # already spent when the plan is made
    rows = []
    for c, f in dict.fromkeys(((confidence, fraction), *((c, f) for c, f in LOOSER
                                                       if c <= confidence and f >= fraction))):
        rule = ProveRule(c, f)
        chosen = plan(rule, sample, trial, interleave) if trial is not None else choose(rule, sample, interleave)
        best = chosen if isinstance(chosen, Plan) else plan(rule, sample, chosen.trial, interleave)
        full = plan(rule, sample, sample.full, interleave)
        rows.append({"confidence": c, "fraction": f, "trial": best.trial, "base_runs": best.base_runs + sample.runs,
                     "patched_runs": best.patched_runs, "minutes": _min(check + best.seconds),
                     "full_race_minutes": None if best.full else _min(check + full.seconds)})
    return rows


def _min(seconds: float) -> float | None:
    return round(seconds / 60, 1) if math.isfinite(seconds) else None


def plan_text(rows: Sequence[dict]) -> str:
    """The plan as a table: expected runs per side and minutes, the base check included."""
    head = ("confidence", "fraction", "trial", "base runs", "patched runs", "minutes", "at the full race")
    lines = [head]
    for r in rows:
        lines.append((f"{r['confidence']:g}", f"{r['fraction']:g}", f"{r['trial']:g} s", str(r["base_runs"]),
                      str(r["patched_runs"] or "-"), "-" if r["minutes"] is None else f"{r['minutes']:.1f}",
                      "-" if r["full_race_minutes"] is None else f"{r['full_race_minutes']:.1f} min"))
    return columns(lines)


def columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows of cells as text columns, each as wide as its widest cell, two spaces apart (the proof's table,
    the plan)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
