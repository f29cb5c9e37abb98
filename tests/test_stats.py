"""harness.stats: exact binomial bounds against published values, and the proof's stopping rule."""

from __future__ import annotations

import math

import pytest
from scipy.stats import binomtest

from harness import stats
from harness.stats import ProveRule, clopper_pearson, lower_bound, upper_bound

# Exact (Clopper-Pearson) 95% two-sided limits, 4 decimals, as printed in tables of exact binomial
# confidence limits (e.g. Geigy Scientific Tables, "confidence limits for the binomial distribution",
# n = 10; Newcombe, Statistics in Medicine 17 (1998) 857-872, Table II, method 5, for the last four).
# 0/n and n/n also have a closed form: 1 - 0.025^(1/n).
PUBLISHED_95 = [
    (0, 10, 0.0000, 0.3085),
    (1, 10, 0.0025, 0.4450),
    (5, 10, 0.1871, 0.8129),
    (10, 10, 0.6915, 1.0000),
    (0, 30, 0.0000, 0.1157),
    (81, 263, 0.2527, 0.3676),
    (0, 20, 0.0000, 0.1684),
    (1, 29, 0.0009, 0.1776),
]


@pytest.mark.parametrize(("k", "n", "lo", "hi"), PUBLISHED_95)
def test_clopper_pearson_matches_published_tables(k, n, lo, hi):
    got = clopper_pearson(k, n, 0.95)
    assert got == pytest.approx((lo, hi), abs=6e-5)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (0, 30), (7, 41), (40, 41)])
def test_clopper_pearson_agrees_with_binomtest(k, n):
    """scipy's binomtest finds the exact limits by root-finding on the binomial CDF: another route to the same numbers."""
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_closed_forms_at_the_edges():
    for n in (1, 3, 10, 17, 100):
        assert upper_bound(0, n, 0.95) == pytest.approx(1 - 0.05 ** (1 / n))
        assert lower_bound(n, n, 0.975) == pytest.approx(0.025 ** (1 / n))
    assert lower_bound(0, 5) == 0.0 and upper_bound(5, 5) == 1.0
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        clopper_pearson(3, 2)


def test_one_sided_bounds_cover_at_least_their_level():
    """Coverage of the one-sided bounds, computed exactly over every outcome of 12 runs."""
    n = 12
    for p in (0.05, 0.3, 0.5, 0.8, 0.97):
        pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
        assert sum(w for k, w in enumerate(pmf) if lower_bound(k, n, 0.95) <= p) >= 0.95 - 1e-12
        assert sum(w for k, w in enumerate(pmf) if upper_bound(k, n, 0.95) >= p) >= 0.95 - 1e-12


def test_bisect_math_moved_but_unchanged():
    assert stats.runs_for(0.75, 0.95) == 3 and stats.runs_for(1.0, 0.95) == 1
    assert stats.miss_probability(0.5, 3) == 0.125
    assert stats.clean_confidence(None, 5) is None
    assert stats.laplace(2, 2) == 0.75


def test_rule_worked_example_of_the_docstring():
    rule = ProveRule(confidence=0.95, fraction=0.1)
    assert rule.alpha_base == pytest.approx(0.025) and rule.alpha_patched == pytest.approx(0.025)
    assert rule.base_floor(17, 17) == pytest.approx(0.025 ** (1 / 17))  # 0.805
    assert rule.runs_needed(17, 17) == 44
    assert rule.runs_needed(3, 3) == 125
    assert not rule.fixed(17, 17, 43) and rule.fixed(17, 17, 44)
    assert rule.miss_bound(17, 17, 44) <= 0.025 < rule.miss_bound(17, 17, 43)
    assert rule.achieved(17, 17, 44) >= 0.95 > rule.achieved(17, 17, 43)
    assert rule.more_runs(17, 17, 30) == 14
    assert rule.runs_needed(0, 50) is None and rule.more_runs(0, 50, 10) is None


def test_rule_needs_more_runs_when_asked_for_more():
    base = ProveRule(0.95, 0.1).runs_needed(10, 10)
    assert ProveRule(0.99, 0.1).runs_needed(10, 10) > base
    assert ProveRule(0.95, 0.05).runs_needed(10, 10) > base
    assert ProveRule(0.95, 0.1).runs_needed(5, 10) > base  # a less certain base rate costs runs
    # H0 "fails every time the base does": one clean run refutes it once the base floor is within alpha_p of 1
    assert ProveRule(0.95, 1.0).runs_needed(200, 200) == 1  # floor 0.982
    assert ProveRule(0.95, 1.0).runs_needed(50, 50) == 2  # floor 0.929: 0.071 > 0.025, 0.071^2 < 0.025
    with pytest.raises(ValueError):
        ProveRule(confidence=1.0)
    with pytest.raises(ValueError):
        ProveRule(fraction=0)
