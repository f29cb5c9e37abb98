"""The proof in trials of a chosen length (harness.prove.trials), simulated end to end, and its cost model.

The simulation runs the real driver (``Prover``, no log) on fake kernels
whose times to hit are drawn from distributions shaped like the measured ones:

- ``ext2``: the i_blkseq race hits in rounds of ~0.58 s (0.55-0.6 s, or
  1.15 s when it needs a second round: #16's note), 60% a round;
- ``xfs``: the mkwrite/delalloc race, a 0.10 s median after a short lag;
- ``ext4``: the inline-data BUG, 0.22 s here, spread (log-normal);
- ``heavy``: a Pareto tail (shape 1.1 from 0.5 s): some runs miss even the full 30 s race.

Truths for the patched kernel: the three of #15's simulation per trial
(``same``, ``fifth``, ``boundary`` = 1/10 of the base's rate in a trial of
the chosen length: the hardest case H0 allows), ``fixed``, and the race's
rate per second of racing cut 10x and 100x (``S(t)^(1/c)``).  A FIXED verdict
is wrong where H0 holds at the trial length that proof chose: the patched
kernel's hit rate in that trial is at least 1/10 of the base's.  Over every
case, wrong FIXED stays at or under 1 - confidence.
"""

from __future__ import annotations

import math
import random

import pytest

from harness.prove import Observation, Policy, ProofVerdict, Prover, trials
from harness.stats import ProveRule

FULL = 30.0
OVERHEAD = 1.3


class Race:
    """A time-to-hit distribution: ``draw(rng)`` seconds into the race, ``cdf(t)``."""

    def __init__(self, name, draw, cdf):
        self.name, self.draw, self.cdf = name, draw, cdf


def _rounds_cdf(t: float, period=0.575, jitter=0.03, per_round=0.6) -> float:
    total, k = 0.0, 1
    while k * period - jitter <= t and k < 200:
        frac = min(1.0, max(0.0, (t - (k * period - jitter)) / (2 * jitter)))
        total += per_round * (1 - per_round) ** (k - 1) * frac
        k += 1
    return total


def _rounds_draw(rng: random.Random, period=0.575, jitter=0.03, per_round=0.6) -> float:
    k = 1
    while rng.random() > per_round:
        k += 1
    return k * period + rng.uniform(-jitter, jitter)


RACES = (
    Race("ext2", _rounds_draw, _rounds_cdf),
    Race("xfs", lambda r: 0.03 + r.expovariate(math.log(2) / 0.07),
         lambda t: 0.0 if t < 0.03 else 1 - math.exp(-(t - 0.03) * math.log(2) / 0.07)),
    Race("ext4", lambda r: r.lognormvariate(math.log(0.22), 0.8),
         lambda t: 0.0 if t <= 0 else 0.5 * (1 + math.erf((math.log(t) - math.log(0.22)) / (0.8 * math.sqrt(2))))),
    Race("heavy", lambda r: 0.5 * r.paretovariate(1.1),
         lambda t: 0.0 if t < 0.5 else 1 - (0.5 / t) ** 1.1),
)


class Kernel:
    """A fake kernel racing ``race``; ``miss(D)`` is its chance of no hit in a ``D``-second trial."""

    def __init__(self, race: Race, rng: random.Random, truth: str = "base", base: Kernel | None = None):
        self.race, self.rng, self.truth, self.base = race, rng, truth, base

    def rate(self, seconds: float) -> float:
        p = self.race.cdf(seconds)
        if self.truth == "base":
            return p
        return truth_rate(self.truth, p)

    def run(self, seconds: float | None = None) -> Observation:
        length = FULL if seconds is None else seconds
        if self.truth == "base":
            t = self.race.draw(self.rng)
            hit = t <= length
        else:
            hit = self.rng.random() < self.rate(length)
            t = length * self.rng.random() if hit else None
        raced = t if hit else length
        return Observation(hit=hit, outcome="DATA_LOSS" if hit else "CLEAN", time_to_hit=t if hit else None,
                           seconds=raced, wall_seconds=OVERHEAD + raced, trial=seconds)


def truth_rate(truth: str, p: float) -> float:
    if truth == "fixed":
        return 0.0
    if truth == "same":
        return p
    if truth == "fifth":
        return p / 5
    if truth == "boundary":
        return p / 10
    cut = {"cut10": 10, "cut100": 100}[truth]
    return 1 - (1 - p) ** (1 / cut) if p < 1 else 1.0


TRUTHS = ("fixed", "same", "fifth", "boundary", "cut10", "cut100")
PROOFS = 1000


def test_trials_simulated_end_to_end(capsys):
    """Over 1000 proofs per case (4 distributions x 6 truths), wrong FIXED stays <= 1 - confidence.

    The default policy (0.95, 1/10, at most 200 runs, --trial auto); the full
    race 30 s.  Each proof chooses its own trial length from its base check.
    """
    policy = Policy(confidence=0.95, fraction=0.1, max_runs=200)
    rng = random.Random(20261207)
    lines = [f"{'race':6} {'truth':9} {'FIXED':>6} {'wrong':>6} {'NOT_FIX':>7} {'INCONCL':>7} {'D median':>8} "
             f"{'runs':>6} {'minutes':>7}"]
    measured = {}
    for race in RACES:
        for truth in TRUTHS:
            counts = dict.fromkeys(ProofVerdict, 0)
            wrong, lengths, runs, seconds = 0, [], 0, 0.0
            for _ in range(PROOFS):
                base = Kernel(race, rng)
                patched = Kernel(race, rng, truth)
                prover = Prover(base, patched, policy, full=FULL)
                verdict = prover.run().verdict
                counts[verdict] += 1
                d = prover.proof.trial or FULL
                lengths.append(d)
                runs += prover.proof.total
                seconds += sum(o.wall_seconds for t in (*prover.proof.tallies.values(), prover.proof.check)
                               for o in t.observations)
                h0 = patched.rate(d) >= policy.fraction * base.rate(d)
                wrong += verdict is ProofVerdict.FIXED and h0
            rate = {v: n / PROOFS for v, n in counts.items()}
            measured[race.name, truth] = rate, wrong / PROOFS
            lines.append(f"{race.name:6} {truth:9} {rate[ProofVerdict.FIXED]:6.3f} {wrong / PROOFS:6.3f} "
                         f"{rate[ProofVerdict.NOT_FIXED]:7.3f} {rate[ProofVerdict.INCONCLUSIVE]:7.3f} "
                         f"{sorted(lengths)[len(lengths) // 2]:8.2f} {runs / PROOFS:6.1f} "
                         f"{seconds / PROOFS / 60:7.1f}")
    with capsys.disabled():
        print("\nprove --trial auto: simulated proofs (confidence 0.95, fraction 1/10, max 200 runs, full race 30 s), "
              "share of verdicts; 'wrong': FIXED where H0 held at the chosen trial length")
        print("\n".join(lines))
    for (race, truth), (rate, wrong) in measured.items():
        assert wrong <= 0.05, (race, truth, rate, wrong)
        if truth in ("same", "fifth", "boundary"):
            assert rate[ProofVerdict.FIXED] <= 0.05, (race, truth, rate)
    for race in ("ext2", "xfs", "ext4"):  # real fixes are proven, and quickly
        assert measured[race, "fixed"][0][ProofVerdict.FIXED] >= 0.95, race
        assert measured[race, "same"][0][ProofVerdict.NOT_FIXED] >= 0.95, race


# --- the cost model --------------------------------------------------------------------------------------


def test_a_fast_hitting_base_gets_short_trials_and_a_stated_cost():
    sample = trials.Sample((0.6, 0.99, 1.15), 0, 30.0, 1.3)
    choice = trials.choose(ProveRule(), sample)
    assert 1.15 <= choice.trial < 2  # every hit seen is inside the trial, with the margin
    assert "least expected time to FIXED" in choice.why and "full 30 s race" in choice.why
    by_length = {p.trial: p for p in choice.plans}
    assert by_length[30.0].seconds > 8 * by_length[choice.trial].seconds  # the full race costs far more
    assert by_length[30.0].full and not by_length[choice.trial].full


def test_a_base_that_rarely_hits_keeps_the_full_race():
    sample = trials.Sample((25.0,), 4, 30.0, 1.3)  # one hit late in five runs
    choice = trials.choose(ProveRule(), sample)
    assert choice.trial == 30.0 and choice.full


def test_runs_to_fixed_matches_the_rule():
    rule = ProveRule(0.95, 0.1)
    n, m = trials.runs_to_fixed(rule, 1.0, 3)
    assert m >= rule.runs_needed(n, n) and n == math.ceil(m / 3)
    assert trials.runs_to_fixed(rule, 0.0, 3) == (0, 0)  # a base that never hits never settles


def test_the_sample_shrinks_towards_a_half_and_measures_overhead():
    obs = [Observation(hit=True, outcome="DATA_LOSS", time_to_hit=0.6, seconds=0.7, wall_seconds=2.0),
           Observation(hit=False, outcome="CLEAN", seconds=30.0, wall_seconds=31.4),
           Observation(hit=False, outcome="BOOT_FAILURE", exposure=False, wall_seconds=9.0)]
    s = trials.Sample.of(obs, 30.0)
    assert s.runs == 2 and s.times_to_hit == (0.6,) and s.clean == 1
    assert s.rate(1.0) == pytest.approx(1.5 / 3) and s.overhead == pytest.approx((1.3 + 1.4) / 2)


def test_hazard_cut_and_rate_floor():
    # 17 hits in 17 s of racing, at 0.975: the floor is the Poisson bound
    floor = trials.rate_floor(17, 17.0, 0.025)
    assert 0.5 < floor < 1.0
    rule = ProveRule(0.95, 0.1)
    # the full 30 s race: a patch cutting the per-second rate 100-fold is still caught
    assert trials.hazard_cut(rule, 0.805, floor, 30.0) > 100
    assert trials.hazard_cut(rule, 0.805, floor, 1.2) < trials.hazard_cut(rule, 0.805, floor, 30.0)
    assert trials.hazard_cut(rule, 0.805, 0.0, 1.2) is None


def test_plan_rows_cover_looser_settings_only():
    sample = trials.Sample((0.6, 0.99, 1.15), 0, 30.0, 1.3)
    rows = trials.plan_rows(0.95, 0.1, sample)
    assert [(r["confidence"], r["fraction"]) for r in rows] == [(0.95, 0.1), (0.95, 0.2), (0.9, 0.5), (0.8, 1.0)]
    assert all(r["minutes"] < r["full_race_minutes"] for r in rows)
    assert rows[0]["patched_runs"] > rows[-1]["patched_runs"]
    text = trials.plan_text(rows)
    assert text.splitlines()[0].split()[:2] == ["confidence", "fraction"] and "1.24 s" in text
    assert [(r["confidence"], r["fraction"]) for r in trials.plan_rows(0.8, 1.0, sample)] == [(0.8, 1.0)]


def test_choice_round_trips_through_the_log():
    sample = trials.Sample((0.6, 0.99, 1.15), 0, 30.0, 1.3)
    choice = trials.choose(ProveRule(), sample)
    back = trials.Choice.from_dict(choice.to_dict(), 30.0)
    assert back.trial == choice.trial and back.sample.times_to_hit == sample.times_to_hit and not back.full


# --- may D be re-chosen during a proof? ------------------------------------------------------------------


REPROOFS = 300  # the figures in the docstring are from a run with 1000 (100 s here: too long for every test run)


class Rechoosing(Prover):
    """The rejected design: after every 5 base trials, D is chosen again from every base hit so far, and the
    trials of every length are pooled in one tally (what "re-choose D as evidence comes in" costs nothing
    extra would mean)."""

    def run(self, *, plan_only=False):
        proof = self.proof
        while True:
            decision = proof.settled() or self._limits(0.0)
            if decision is not None:
                return decision
            if proof.needs_choice:
                self._choose()
                continue
            side = proof.next_side()
            obs = self.sides[side].run(proof.trial)
            proof.add(side, obs)
            if side == "base" and proof.choice is not None and proof.base.runs % 5 == 0:
                seen = [o for o in (*proof.check_runs, *proof.base.observations) if o.exposure]
                sample = trials.Sample(tuple(o.time_to_hit for o in seen if o.hit),
                                       sum(not o.hit for o in seen), FULL, OVERHEAD)
                proof.choice = trials.choose(proof.rule, sample, proof.policy.interleave)


def test_re_choosing_the_trial_length_buys_little_and_leaves_the_guarantee(capsys):
    """Measured, not assumed: re-choosing D every 5 base trials from every hit seen so far, pooling trials of
    different lengths in one tally, against the fixed D the driver keeps, on the heavy-tailed race (where a
    first choice from three hits is the least reliable): wrong FIXED at the boundary truth, and the runs and
    racing seconds a real fix's proof takes.

    What was measured here (1000 proofs each: 0.004 and 0.002 wrong FIXED; 122 and 135 runs a real fix's
    proof): both far under 0.05 (the rule's Bonferroni split leaves room), and re-choosing saves no runs (it
    took more): pooled trials of different lengths are
    no longer one Bernoulli experiment, so the rule's guarantee (proven for one trial length) would no longer
    cover the proof; paying for it properly means restarting the counts at each new D, or splitting alpha
    over the re-choices.  Hence the driver fixes D once, after the base check, and a resume keeps it."""
    policy = Policy(confidence=0.95, fraction=0.1, max_runs=200)
    rates, runs = {}, {}
    for name, cls in (("fixed D", Prover), ("re-chosen D, pooled", Rechoosing)):
        for truth in ("boundary", "fixed"):
            rng = random.Random(7)
            wrong = total = 0
            for _ in range(REPROOFS):
                base = Kernel(RACES[3], rng)
                patched = Kernel(RACES[3], rng, truth)
                prover = cls(base, patched, policy, full=FULL)
                verdict = prover.run().verdict
                d = prover.proof.trial or FULL
                wrong += verdict is ProofVerdict.FIXED and patched.rate(d) >= policy.fraction * base.rate(d)
                total += prover.proof.total
            if truth == "boundary":
                rates[name] = wrong / REPROOFS
            else:
                runs[name] = total / REPROOFS
    with capsys.disabled():
        print(f"\nprove, heavy-tailed race, {REPROOFS} proofs each: wrong FIXED at the boundary truth: "
              + ", ".join(f"{k} {v:.3f}" for k, v in rates.items())
              + "; runs per proof of a real fix: " + ", ".join(f"{k} {v:.1f}" for k, v in runs.items()))
    assert all(rate <= 0.05 for rate in rates.values()), rates


def test_hits_per_saved_boot_and_their_disagreement():
    from harness.prove.driver import Tally
    from harness.prove.output import boots_disagree, per_boot

    same, apart = Tally(), Tally()
    for boot in (1, 2, 3):
        for i in range(12):
            same.add(Observation(hit=i % 2 == 0, outcome="DATA_LOSS" if i % 2 == 0 else "CLEAN", boot=boot))
            apart.add(Observation(hit=boot == 1, outcome="DATA_LOSS" if boot == 1 else "CLEAN", boot=boot))
    assert per_boot(same) == {1: (6, 12), 2: (6, 12), 3: (6, 12)}
    assert boots_disagree(same) > 0.9
    assert boots_disagree(apart) < 0.001  # boot 1 hits every run, the others never: beyond chance
    one = Tally()
    one.add(Observation(hit=True, outcome="DATA_LOSS", boot=1))
    assert boots_disagree(one) is None and per_boot(Tally()) == {}


def test_overhead_from_the_backends_phases_leaves_a_boot_out():
    """A run restored from a boot made at its turn waited ~7 s for that boot: the phases say what the run cost."""
    from types import SimpleNamespace

    from harness.repro.trial import from_run_result
    from harness.verdict import Outcome

    verdict = SimpleNamespace(outcome=Outcome.DATA_LOSS, title="data loss", time_to_hit=1.2, reports=(), detail="")
    steps = (SimpleNamespace(name="run", seconds=1.5),)
    guest = {"boot": 2, "phases": {"restore": 0.3, "connect": 0.8, "run": 4.2, "ahead_restore": 1.0}}
    result = SimpleNamespace(verdict=verdict, steps=steps, wall_seconds=13.6, folder="x", guest=guest)
    obs = from_run_result(result, lambda o: True)
    assert obs.boot == 2 and obs.overhead == pytest.approx(0.3 + 0.8 + 4.2 - 1.5)
    no_phases = from_run_result(SimpleNamespace(verdict=verdict, steps=steps, wall_seconds=13.6, folder="x"),
                                lambda o: True)
    assert no_phases.overhead == pytest.approx(13.6 - 1.5)
    assert trials.Sample.of([obs], 30.0).overhead == pytest.approx(3.8)
