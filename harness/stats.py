"""Binomial statistics shared by ``bisect`` and ``prove``: exact intervals and stopping rules.

Exposure is counted in **runs**, not in reproducer-seconds: every run is one
Bernoulli trial of the bug (a fresh guest each time, so runs are independent
by construction), and a rate is hits per run.  Seconds were rejected because
a run that hits stops at the hit, so the base's hazard after its first
fraction of a second is never observed (a clean patched run of 20 s would be
credited with 20 s of a rate measured in the first 0.1 s), and because
``time_to_hit`` means different things per reproducer (an oops's console
stamp, or whatever ``@@first-loss-after`` prints: the same xfs bug measured
0.10 s median when the reproducer printed the store time and 9.4 s when it
printed the check time, a 90x change in a per-second rate for the same 10/10
per-run rate).  The seconds are still recorded with every run.

Intervals are exact (Clopper-Pearson): a bound is a quantile of the beta
distribution, ``scipy.special.betaincinv`` (what ``scipy.stats.beta.ppf``
computes, without its ~100 us of argument handling per call).

The proof's stopping rule (``ProveRule``)
-----------------------------------------

Null hypothesis H0: the patched kernel still fails at a rate
``q >= f * p``, ``p`` the base's per-run rate, ``f`` the ``--fraction``.
``FIXED`` may be declared only when H0 is implausible at the requested
confidence ``c``; the uncertainty of ``p`` is paid for by splitting the error
budget ``alpha = 1 - c`` between the base and the patched runs (Bonferroni;
the construction is Berger & Boos's p-value maximised over a confidence set
for the nuisance parameter, JASA 89 (1994) 1012-1016):

- ``alpha_b = alpha_p = alpha / 2``;
- the base showed ``k`` hits in ``n`` runs: its one-sided lower
  Clopper-Pearson bound at confidence ``1 - alpha_b`` is
  ``L = B^-1(alpha_b; k, n - k + 1)`` (``B^-1`` the beta quantile), so
  ``P(p < L) <= alpha_b``;
- if ``p >= L``, every rate H0 allows is ``q >= f * L``, and ``m`` clean
  patched runs have probability ``(1 - q)^m <= (1 - f * L)^m``;
- ``FIXED`` once ``(1 - f * L)^m <= alpha_p``, i.e. once the clean patched
  runs reach ``m >= N(k, n) = ceil(ln(alpha_p) / ln(1 - f * L))``.
  Then ``P(FIXED | H0) <= alpha_b + alpha_p = alpha``; the achieved
  confidence reported is ``1 - alpha_b - (1 - f * L)^m``.

Worked example, ``c = 0.95`` and ``f = 1/10``: the base reproduced in all of
its first 17 runs, so ``L = 0.025^(1/17) = 0.805`` (``k = n`` makes the beta
quantile ``alpha_b^(1/n)``); H0 then means ``q >= 0.0805``, and
``N = ceil(ln 0.025 / ln(1 - 0.0805)) = ceil(43.96) = 44``: after 44 clean
patched runs, a patched kernel still failing at >= 1/10 of the base's rate
would have shown it with probability >= 0.95.  With only 3/3 base runs
(``L = 0.292``) the same claim needs 125 clean runs, hence the base keeps
running, one run after every three patched ones, while the proof goes on.

A patched kernel that hits is ``NOT_FIXED`` at once.  ``more_runs`` says how
many more clean patched runs would settle an unfinished proof at the base's
current bound.  The rule is checked after every run; the simulation in
tests/test_prove.py measures its wrong-FIXED rate (well under ``alpha``:
the bound is conservative).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass


@functools.cache
def _betaincinv():
    # imported on first use: scipy takes 0.3-1 s to import and every `harness` command imports this module
    from scipy.special import betaincinv

    return betaincinv


def _check(k: int, n: int) -> None:
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= hits <= runs, got {k}/{n}")


def lower_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided lower Clopper-Pearson bound: ``P(rate < bound) <= 1 - confidence``."""
    _check(k, n)
    if k == 0:
        return 0.0
    return float(_betaincinv()(k, n - k + 1, 1.0 - confidence))


def upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided upper Clopper-Pearson bound: ``P(rate > bound) <= 1 - confidence``."""
    _check(k, n)
    if k == n:
        return 1.0
    return float(_betaincinv()(k + 1, n - k, confidence))


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided interval on a rate ``k/n`` (``(0, 1)`` when ``n == 0``)."""
    tail = (1.0 - confidence) / 2
    return lower_bound(k, n, 1.0 - tail), upper_bound(k, n, 1.0 - tail)


def laplace(hits: int, runs: int) -> float:
    """``(hits + 1) / (runs + 2)``: a point estimate that is never 0 or 1."""
    return (hits + 1) / (runs + 2)


def miss_probability(rate: float, clean_runs: int) -> float:
    """P(no hit in ``clean_runs`` runs | the bug is there with hit rate ``rate``)."""
    return (1.0 - rate) ** clean_runs


def clean_confidence(rate: float | None, clean_runs: int) -> float | None:
    """Chance that ``clean_runs`` runs would have shown a bug of hit rate ``rate``."""
    if rate is None:
        return None
    return 1.0 - miss_probability(rate, clean_runs)


def runs_for(rate: float, target: float) -> int:
    """Clean runs needed before a clean verdict reaches ``target`` confidence."""
    if rate >= 1.0:
        return 1
    return max(1, math.ceil(math.log(1.0 - target) / math.log(1.0 - rate)))


@dataclass(frozen=True)
class ProveRule:
    """The proof's stopping rule (see the module docstring for the formula)."""

    confidence: float = 0.95
    fraction: float = 0.1
    base_share: float = 0.5  # share of the error budget spent on the base's bound

    def __post_init__(self):
        if not 0 < self.confidence < 1:
            raise ValueError("the confidence must be between 0 and 1")
        if not 0 < self.fraction <= 1:
            raise ValueError("the fraction must be in (0, 1]")
        if not 0 < self.base_share < 1:
            raise ValueError("the base's share of the error must be between 0 and 1")

    @property
    def alpha(self) -> float:
        return 1.0 - self.confidence

    @property
    def alpha_base(self) -> float:
        return self.alpha * self.base_share

    @property
    def alpha_patched(self) -> float:
        return self.alpha - self.alpha_base

    def base_floor(self, hits: int, runs: int) -> float:
        """``L``: the base's rate is at least this, but with probability ``alpha_base``."""
        return lower_bound(hits, runs, 1.0 - self.alpha_base)

    def runs_needed(self, hits: int, runs: int) -> int | None:
        """``N(k, n)``: clean patched runs that settle FIXED; None while the base has no hit."""
        return _runs_needed(self, hits, runs)

    def miss_bound(self, hits: int, runs: int, clean: int) -> float:
        """``(1 - f L)^m``: the chance, under H0 with the base bound holding, of ``clean`` clean runs."""
        return (1.0 - self.fraction * self.base_floor(hits, runs)) ** clean

    def achieved(self, hits: int, runs: int, clean: int) -> float:
        """Confidence the data give against H0: ``1 - alpha_b - (1 - f L)^m`` (floored at 0)."""
        return max(0.0, 1.0 - self.alpha_base - self.miss_bound(hits, runs, clean))

    def fixed(self, hits: int, runs: int, clean: int) -> bool:
        needed = self.runs_needed(hits, runs)
        return needed is not None and clean >= needed

    def more_runs(self, hits: int, runs: int, clean: int) -> int | None:
        """Clean patched runs still missing at the base's current bound (None: the base has no hit)."""
        needed = self.runs_needed(hits, runs)
        return None if needed is None else max(0, needed - clean)


@functools.lru_cache(maxsize=65536)
def _runs_needed(rule: ProveRule, hits: int, runs: int) -> int | None:
    # cached: the proof asks after every run, and the simulation in the tests millions of times
    if hits == 0:
        return None
    floor = rule.fraction * rule.base_floor(hits, runs)
    if floor >= 1.0:
        return 1
    return max(1, math.ceil(math.log(rule.alpha_patched) / math.log1p(-floor)))


# --- the fixed-sample proof (shards) ---------------------------------------------------------------------


@dataclass(frozen=True)
class FixedDesign:
    """A fixed-sample proof: ``base`` and ``patched`` trials planned before any of them runs.

    ``hits`` is the fewest base hits with which ``patched`` clean trials settle
    FIXED (``N(hits, base) <= patched``); ``power`` the chance of at least that
    many at the planning ``rate`` (a patch that removes the bug leaves the
    patched trials clean); ``cost`` the expected seconds."""

    base: int
    patched: int
    hits: int
    rate: float
    power: float
    cost: float


@functools.cache
def _binom():
    # imported on first use: scipy takes 0.3-1 s to import, and only a sharded proof's plan needs it
    from scipy.stats import binom

    return binom


def fixed_power(rule: ProveRule, rate: float, base: int, patched: int) -> float:
    """P(FIXED) of a fixed-sample proof of ``base`` + ``patched`` trials when the base hits ``rate`` of its
    trials and the patched kernel none: ``P(K >= k)``, ``K ~ Bin(base, rate)``, ``k`` the fewest hits with
    ``N(k, base) <= patched`` (``N`` decreases in ``k``)."""
    need = next((k for k in range(1, base + 1) if rule.fixed(k, base, patched)), None)
    return 0.0 if need is None else float(_binom().sf(need - 1, base, rate))


@functools.lru_cache(maxsize=4096)  # the simulation plans thousands of proofs from a few check outcomes
def fixed_design(rule: ProveRule, rate: float, *, power: float = 0.9, base_cost: float = 1.0,
                 patched_cost: float = 1.0, limit: int = 20000) -> FixedDesign | None:
    """The cheapest fixed-sample proof (``base_cost``/``patched_cost``: seconds a trial) with at least ``power``
    to say FIXED when the base hits ``rate`` of its trials and the patch removes the bug; None when no
    design of at most ``limit`` base trials reaches it.

    For each ``n`` base trials, ``k(n)`` is the largest hit count the base reaches with probability
    ``>= power`` (``scipy.stats.binom``), and ``m(n) = N(k(n), n)`` clean patched trials settle FIXED at it;
    the design is the ``n`` of least ``n base_cost + m(n) patched_cost``."""
    import numpy as np  # with scipy, only here: the plan of a sharded proof

    if not 0 < rate <= 1 or not 0 < power < 1:
        raise ValueError("the planning rate must be in (0, 1] and the power in (0, 1)")
    n = np.arange(1, limit + 1)
    k = _binom().ppf(1.0 - power, n, rate)
    k = np.where(_binom().sf(k - 1, n, rate) >= power, k, k - 1)  # the ppf's float edge: never overstate
    ok = k >= 1
    if not ok.any():
        return None
    n, k = n[ok], k[ok].astype(int)
    floor = rule.fraction * _betaincinv()(k, n - k + 1, rule.alpha_base)
    per_run = np.log1p(-np.minimum(floor, 1 - 1e-16))  # floor 1: one clean trial settles it
    m = np.where(floor >= 1.0, 1, np.maximum(1, np.ceil(math.log(rule.alpha_patched) / per_run)))
    cost = n * base_cost + m * patched_cost
    i = int(np.argmin(cost))
    design = FixedDesign(int(n[i]), int(m[i]), int(k[i]), rate, 0.0, float(cost[i]))
    return FixedDesign(design.base, design.patched, design.hits, rate,
                       fixed_power(rule, rate, design.base, design.patched), design.cost)
