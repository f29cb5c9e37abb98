"""A proof split over shards (``harness.prove.shards``): the fixed-sample plan, the shards, the merge (no VM).

The simulation runs the real plan (``make_plan`` after a real base check),
the real ``ShardProver`` per shard over Bernoulli kernels and the real merge
(``union`` + ``decide``) over the shards' logged records, for 1, 2 and 4
shards and with a shard missing, and measures the wrong-FIXED rate where H0
holds and the power where the patch removes the bug.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from test_prove_cli import FIX, always, built, sessions  # noqa: F401  (the fixtures: fake kernels and sessions)

import harness.prove.trials as trials
from harness import cli, prove
from harness.errors import ExitCode, GuestError, SpecError
from harness.kernels import recipe as recipemod
from harness.prove import (
    BASE,
    PATCHED,
    KernelInfo,
    Observation,
    PatchInfo,
    Policy,
    ProofInfo,
    ProofVerdict,
    Prover,
    shards,
)
from harness.repro import spec as specs
from harness.stats import ProveRule, fixed_design, fixed_power
from harness.verdict import Outcome

HIT = Observation(hit=True, outcome="REPRODUCED", title="BUG", time_to_hit=0.4, seconds=0.4, wall_seconds=3.0)
CLEAN = Observation(hit=False, outcome="CLEAN", seconds=2.0, wall_seconds=4.0)
BOOT = Observation(hit=False, outcome="BOOT_FAILURE", exposure=False, detail="no console output")


class Bernoulli:
    def __init__(self, rate: float, rng: random.Random):
        self.rate, self.rng = rate, rng

    def run(self, seconds=None) -> Observation:
        return HIT if self.rng.random() < self.rate else CLEAN


class Script:
    """Plays observations in order (an exception is raised), then repeats the last."""

    def __init__(self, items):
        self.items = list(items)

    def run(self, seconds=None) -> Observation:
        item = self.items.pop(0) if len(self.items) > 1 else self.items[0]
        if isinstance(item, BaseException):
            raise item
        return item


class Memory:
    """A ``ProofLog`` in memory: the records a shard logs, for the merge."""

    def __init__(self):
        self.records: list[dict] = []
        self.folder = Path("memory")

    def append(self, record: dict) -> None:
        self.records.append(record)


def info(policy: Policy) -> ProofInfo:
    return ProofInfo(reproducer="ext2_iomap_blkseq", base=KernelInfo("debian-src:6.1.192/ext2-iomap", "6.1.192"),
                     patched=KernelInfo("debian-src:6.1.192/ext2-iomap+fix", "6.1.192"),
                     patches=(PatchInfo("ext2: validate cached iomap with i_blkseq", "ab" * 32),), policy=policy,
                     started="2026-12-08T00:00:00", context={"keys": {"base": "k1", "patched": "k2"}})


def checked(policy: Policy, base) -> prove.Proof | None:
    """A real base check (the full race: no shortening) on ``base``; None when it ends BASE_CLEAN."""
    prover = Prover(base, Script([CLEAN]), policy)
    return None if prover.run(plan_only=True) is not None else prover.proof


def run_shards(plan: shards.ShardPlan, policy: Policy, base, patched, skip: int | None = None) -> list[shards.Part]:
    parts = []
    for i in range(1, plan.of + 1):
        part = shards.Part(i, plan.of, plan.quota(i))
        if i != skip:
            log = Memory()
            shards.shard_maker(base, patched, plan, i)(policy, log=log).run()
            part.folder, part.records = Path(f"shard-{i}"), log.records
        part.failure = shards._failure(part, None)
        parts.append(part)
    return parts


def merged(plan, proof_info, parts) -> ProofVerdict:
    proof, hit, _ = shards.union(plan, proof_info, [], parts)
    return shards.decide(plan, proof, parts, hit).verdict


# --- the simulation ------------------------------------------------------------------------------------

PROOFS = 500
CASES = (  # (confidence, fraction, base rate); base checks of 10 hits, so that the plans are near the truth's size
    (0.95, 0.1, 0.9),  # the default rule, a race like ext2's
    (0.9, 0.5, 0.5),  # a loose rule: few patched trials, where a wrong FIXED is most likely
)
TRUTHS = {"fixed": lambda p, f: 0.0, "boundary": lambda p, f: f * p, "same": lambda p, f: p}


def simulate(policy: Policy, p: float, q: float, n_shards: int, rng: random.Random, skip: int | None = None):
    counts = dict.fromkeys(ProofVerdict, 0)
    trials = 0
    for _ in range(PROOFS):
        base, patched = Bernoulli(p, rng), Bernoulli(q, rng)
        proof = checked(policy, base)
        if proof is None:
            counts[ProofVerdict.BASE_CLEAN] += 1
            continue
        pi = info(policy)
        plan = shards.make_plan(pi, proof, n_shards, Path("check"), 30.0)
        parts = run_shards(plan, policy, base, patched, skip)
        counts[merged(plan, pi, parts)] += 1
        trials += plan.base_trials + plan.patched_trials
    return {v: n / PROOFS for v, n in counts.items()}, trials / PROOFS


def test_sharded_proof_simulated(capsys):
    """Wrong FIXED stays within alpha where H0 holds, a real fix comes out FIXED with the plan's power, for 1, 2
    and 4 shards; a missing shard is never FIXED."""
    rng = random.Random(20261208)
    lines = [f"{'rule':>8} {'base':>5} {'truth':9} {'shards':>9} {'FIXED':>6} {'NOT_FIXED':>9} {'INCONCL.':>8} "
             f"{'trials/proof':>12}"]
    for conf, frac, p in CASES:
        policy = Policy(confidence=conf, fraction=frac, base_hits=10)
        rule = policy.rule
        alpha = rule.alpha
        tol_alpha = 3 * math.sqrt(alpha * (1 - alpha) / PROOFS)
        floor_power = shards.POWER * (1 - rule.alpha_base)  # the plan's power, the check's bound holding
        tol_power = 3 * math.sqrt(floor_power * (1 - floor_power) / PROOFS)
        for truth, q_of in TRUTHS.items():
            q = q_of(p, frac)
            layouts = ((1, None), (2, None), (4, None), (2, 2)) if truth != "same" else ((1, None), (2, 2))
            for n_shards, skip in layouts:
                rate, trials = simulate(policy, p, q, n_shards, rng, skip)
                what = f"{n_shards}" + (f" ({skip} lost)" if skip else "")
                lines.append(f"{conf:g}/{frac:g} {p:5.2f} {truth:9} {what:>9} {rate[ProofVerdict.FIXED]:6.3f} "
                             f"{rate[ProofVerdict.NOT_FIXED]:9.3f} {rate[ProofVerdict.INCONCLUSIVE]:8.3f} "
                             f"{trials:12.1f}")
                if skip:
                    assert rate[ProofVerdict.FIXED] == 0, (conf, frac, truth, rate)
                elif truth == "fixed":
                    assert rate[ProofVerdict.FIXED] >= floor_power - tol_power, (conf, frac, n_shards, rate)
                else:
                    assert rate[ProofVerdict.FIXED] <= alpha + tol_alpha, (conf, frac, truth, n_shards, rate)
    with capsys.disabled():
        print(f"\nprove shards: {PROOFS} simulated proofs per row (base check, plan at power {shards.POWER}, shards, "
              "merge), share of verdicts")
        print("\n".join(lines))


# --- the plan --------------------------------------------------------------------------------------------


def test_split_spreads_the_remainder_over_the_first_shards():
    assert shards.split(10, 3) == [4, 3, 3]
    assert shards.split(2, 4) == [1, 1, 0, 0]
    assert sum(shards.split(229, 2)) == 229
    with pytest.raises(SpecError, match="positive"):
        shards.split(10, 0)


@pytest.mark.parametrize("rate", [0.29, 0.6, 1.0])
def test_fixed_design_is_the_cheapest_with_the_power(rate):
    """Against a brute force over every (n, m) up to 120 base trials."""
    rule = ProveRule(0.95, 0.1)
    design = fixed_design(rule, rate, base_cost=3.4, patched_cost=3.9, limit=120)
    assert design is not None and design.power >= 0.9
    assert design.power == pytest.approx(fixed_power(rule, rate, design.base, design.patched))
    best = None
    for n in range(1, 121):
        for k in range(n, 0, -1):
            m = rule.runs_needed(k, n)
            if fixed_power(rule, rate, n, m) >= 0.9:
                cost = 3.4 * n + 3.9 * m
                best = min(best or (cost, n, m), (cost, n, m))
                break
    assert (design.base, design.patched) == best[1:]
    assert fixed_design(rule, 0.001, limit=100) is None  # no design under the limit


def test_fixed_choice_weighs_the_plan_not_the_sequential_cost():
    """Hits at 0.3, 5 and 6 s: the sequential proof races 0.5 s trials (it learns the rate as it goes), which a
    plan at the check's bound of 1 hit in 3 would pay 12x for; the sharded plan takes the 6.25 s trials."""
    rule, sample = ProveRule(), trials.Sample((0.3, 5.0, 6.0), 0, 30.0, 2.0)
    assert trials.choose(rule, sample).trial == 0.5
    choice = shards.fixed_choice(rule, sample)
    assert choice.trial == 6.25 and "fixed plan" in choice.why
    assert shards._design(rule, sample, 6.25, 0.9).cost * 10 < shards._design(rule, sample, 0.5, 0.9).cost


def test_plan_counts_id_and_file(tmp_path):
    policy = Policy()
    proof = checked(policy, Script([HIT, CLEAN, HIT, HIT]))
    plan = shards.make_plan(info(policy), proof, 2, tmp_path, 30.0)
    assert plan.check == {"runs": 4, "hits": 3, "hits_in_trial": 3, "folder": str(tmp_path)}
    assert plan.rate == pytest.approx(ProveRule().base_floor(3, 4), abs=1e-6)
    assert [sum(x) for x in zip(*plan.shards)] == [plan.base_trials, plan.patched_trials]
    assert plan.power >= 0.9 and plan.of == 2 and len(plan.id) == 16
    shards.write_plan(tmp_path, plan)
    assert shards.read_plan(tmp_path) == plan
    data = json.loads((tmp_path / shards.PLAN).read_text())
    data["patched_trials"] -= 1
    (tmp_path / shards.PLAN).write_text(json.dumps(data))
    with pytest.raises(SpecError, match="does not match its id"):
        shards.read_plan(tmp_path)


# --- a shard, the merge over folders ----------------------------------------------------------------------


def shard_folder(root: Path, plan, policy, index: int, base, patched, check: Path) -> Path:
    folder = root / f"shard-{index}of{plan.of}"
    si = shards.shard_info(info(policy), plan, index, check)
    prove.prove(None, None, si, folder, make=shards.shard_maker(base, patched, plan, index))
    return folder


def planned(tmp_path: Path, policy: Policy, n: int = 2) -> tuple[shards.ShardPlan, Path]:
    check = tmp_path / "check"
    proof, decision = prove.plan(Script([HIT]), Script([CLEAN]), info(policy), check)
    assert decision is None
    plan = shards.make_plan(info(policy), proof, n, check, 30.0)
    shards.write_plan(check, plan)
    return plan, check


def test_shard_runs_exactly_its_counts_and_resumes_to_them(tmp_path):
    policy = Policy(confidence=0.9, fraction=0.5)
    plan, check = planned(tmp_path, policy)
    b, p = plan.quota(1)
    folder = tmp_path / "shard"
    si = shards.shard_info(info(policy), plan, 1, check)
    with pytest.raises(KeyboardInterrupt):  # killed after 5 runs
        prove.prove(None, None, si, folder,
                    make=shards.shard_maker(Script([HIT] * 3 + [BOOT, KeyboardInterrupt()]), Script([CLEAN]), plan, 1))
    result = prove.resume(folder, None, None, make=shards.shard_maker(Script([HIT]), Script([CLEAN]), plan, 1))
    assert (result.proof.base.runs, result.proof.patched.runs) == (b, p)
    assert result.verdict is ProofVerdict.INCONCLUSIVE and "done" in result.reason
    assert shards.shard_status(result, shards.shard_of(result.info))["complete"]
    _, records = prove.ProofLog(folder).read()
    sides = [r["side"] for r in records if r["type"] == "run" and r["outcome"] != "BOOT_FAILURE"]
    assert sides[0] == BASE and sides.count(PATCHED) == p  # base spread among the patched


def test_merge_of_every_shard_is_the_rule_once_on_the_union(tmp_path):
    policy = Policy(confidence=0.9, fraction=0.5)
    plan, check = planned(tmp_path, policy)
    for i in (1, 2):
        shard_folder(tmp_path, plan, policy, i, Script([HIT]), Script([CLEAN]), check)
    run = tmp_path / "shard-1of2" / "run-01" / "disk.img"  # a finished run's file: linked, not copied
    run.parent.mkdir()
    run.write_bytes(b"x")
    result, _, parts = shards.merge([tmp_path], tmp_path / "out")
    assert result.verdict is ProofVerdict.FIXED and all(p.failure is None for p in parts)
    assert (result.proof.base.runs, result.proof.patched.runs) == (plan.base_trials, plan.patched_trials)
    assert result.proof.check.runs == 3 and "union of 2 shard(s)" in result.reason
    assert (result.folder / "shard-1" / "proof.jsonl").exists() and (result.folder / "check" / "plan.json").exists()
    assert (result.folder / "shard-1" / "run-01" / "disk.img").stat().st_ino == run.stat().st_ino
    assert (result.folder / "shard-1" / "proof.jsonl").stat().st_ino != (run.parent.parent / "proof.jsonl").stat().st_ino
    again = prove.load(result.folder)  # the merged log replays to the same counts
    assert again.verdict is ProofVerdict.FIXED and again.proof.patched.runs == plan.patched_trials
    result2, _, _ = shards.merge([tmp_path], tmp_path / "out2")  # the copies inside the merged folder are skipped
    assert result2.proof.patched.runs == plan.patched_trials


def test_merge_names_a_missing_or_failed_shard_and_never_counts_it(tmp_path):
    policy = Policy(confidence=0.9, fraction=0.5)
    plan, check = planned(tmp_path, policy)
    shard_folder(tmp_path, plan, policy, 1, Script([HIT]), Script([CLEAN]), check)
    result, _, _ = shards.merge([tmp_path], tmp_path / "out")
    assert result.verdict is ProofVerdict.INCONCLUSIVE and result.reason.startswith("shard 2/2 never reported")
    assert result.proof.patched.runs == plan.quota(1)[1]
    assert "resume the shard named" in prove.statement(result) and prove.to_json(result)["more_runs"] is None
    failed = tmp_path / "shard-2of2"
    si = shards.shard_info(info(policy), plan, 2, check)
    with pytest.raises(KeyboardInterrupt):  # killed midway: its log stops short
        prove.prove(None, None, si, failed, make=shards.shard_maker(
            Script([HIT, HIT, KeyboardInterrupt()]), Script([CLEAN]), plan, 2))
    result, _, _ = shards.merge([tmp_path], tmp_path / "out")
    assert result.verdict is ProofVerdict.INCONCLUSIVE and "shard 2/2 did not finish" in result.reason
    assert result.proof.base.runs == plan.quota(1)[0]  # the killed shard's trials are not counted
    with pytest.raises(GuestError):  # its guest would not boot three times in a row: the proof stops
        prove.resume(failed, None, None, make=shards.shard_maker(Script([BOOT]), Script([BOOT]), plan, 2))
    result, _, _ = shards.merge([tmp_path], tmp_path / "out")
    assert "shard 2/2 failed, its last run BOOT_FAILURE: no console output (2 of" in result.reason
    (failed / "result.json").write_text(json.dumps({"verdict": "INFRA_ERROR", "error": "the guest did not boot"}))
    result, _, _ = shards.merge([tmp_path], tmp_path / "out")
    assert "shard 2/2 failed (INFRA_ERROR: the guest did not boot)" in result.reason


def test_a_patched_hit_in_any_shard_is_not_fixed(tmp_path):
    policy = Policy(confidence=0.9, fraction=0.5)
    plan, check = planned(tmp_path, policy)
    shard_folder(tmp_path, plan, policy, 2, Script([HIT]), Script([CLEAN, HIT]), check)
    result, _, _ = shards.merge([tmp_path], tmp_path / "out")  # shard 1 never reported: the hit still counts
    assert result.verdict is ProofVerdict.NOT_FIXED and "shard 2/2's trial 2" in result.reason


def test_merge_refuses_mismatched_plans(tmp_path):
    policy = Policy(confidence=0.9, fraction=0.5)
    plan, check = planned(tmp_path / "a", policy)
    other, other_check = planned(tmp_path / "b", Policy(confidence=0.95, fraction=0.5))
    shard_folder(tmp_path / "a", plan, policy, 1, Script([HIT]), Script([CLEAN]), check)
    shard_folder(tmp_path / "b", other, policy, 1, Script([HIT]), Script([CLEAN]), other_check)
    with pytest.raises(SpecError, match="2 plans under the folders given") as exc:
        shards.merge([tmp_path], tmp_path / "out")
    assert "\n" not in str(exc.value)
    (other_check / shards.PLAN).unlink()
    with pytest.raises(SpecError, match=f"of plan {other.id}, not of plan {plan.id}"):
        shards.merge([tmp_path], tmp_path / "out")
    with pytest.raises(SpecError, match="no plan.json under"):
        shards.merge([tmp_path / "b"], tmp_path / "out")


# --- the command line (fake kernels and sessions, from test_prove_cli) -----------------------------------


def test_cli_plan_shards_then_merge(built, sessions, tmp_path, capsys):  # noqa: F811
    spec = specs.load("ext2_iomap_blkseq")
    base = spec.recipe(variant="ext2-iomap")
    patched = base.patched(recipemod.load_ops([str(FIX)]))
    sessions.patterns = {base.name: always(Outcome.DATA_LOSS), patched.name: always(Outcome.CLEAN)}
    rule = ["--confidence", "0.9", "--fraction", "0.5"]
    code = cli.main(["prove", "ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch", str(FIX), *rule, "--plan",
                     "--shards", "2", "--results", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == ExitCode.OK and "harness prove --shard 2/2 --from-check" in out
    check = next(tmp_path.glob("*/plan.json")).parent
    assert cli.main(["prove", "--shard", "3/3", "--from-check", str(check)]) == ExitCode.SPEC
    capsys.readouterr()
    assert cli.main(["prove", "--shard", "1/2", "--from-check", str(check), "--results", str(tmp_path),
                     "--json"]) == ExitCode.OK
    shard = json.loads(capsys.readouterr().out)
    assert shard["verdict"] == "INCONCLUSIVE"
    code = cli.main(["prove", "--merge", str(tmp_path), "--results", str(tmp_path / "merged"), "--json"])
    merged = json.loads(capsys.readouterr().out)
    assert code == ExitCode.INCONCLUSIVE and "shard 2/2 never reported" in merged["reason"]
    sessions.interrupt_after = sessions.total + 3  # Ctrl-C after 3 runs of shard 2, then --resume finishes it
    assert cli.main(["prove", "--shard", "2/2", "--from-check", str(tmp_path), "--results", str(tmp_path)]) == 130
    sessions.interrupt_after = None
    shard2 = next(tmp_path.glob("*-shard2of2"))
    assert cli.main(["prove", "--resume", str(shard2)]) == ExitCode.OK
    assert json.loads((shard2 / "result.json").read_text())["shard"]["complete"] is True
    capsys.readouterr()
    code = cli.main(["prove", "--merge", str(tmp_path), "--results", str(tmp_path / "merged")])
    out = capsys.readouterr().out
    assert code == ExitCode.OK and "FIXED: no expected outcome in" in out
    newest = max((tmp_path / "merged").glob("*-merged*/result.json"), key=lambda p: p.stat().st_mtime_ns)
    record = json.loads(newest.read_text())
    assert record["verdict"] == "FIXED" and [s["failure"] for s in record["shards"]] == [None, None]
    assert record["runs"] == json.loads((check / "plan.json").read_text())["patched_trials"]
    with pytest.raises(SystemExit) as exc:
        cli.main(["prove", "--merge", str(tmp_path), "--patch", str(FIX)])
    assert exc.value.code == ExitCode.USAGE and "--merge takes the reproducer" in capsys.readouterr().err
