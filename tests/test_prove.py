"""The proof driver with fake sides: the stopping rule simulated, every verdict, the log and resume, the output."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import prove
from harness.errors import ExitCode, GuestError, KernelError, SpecError
from harness.prove import (
    BASE,
    PATCHED,
    KernelInfo,
    Observation,
    PatchInfo,
    Policy,
    ProofInfo,
    ProofLog,
    ProofResult,
    ProofVerdict,
    Prover,
)
from harness.repro.spec import Expectation
from harness.repro.trial import Trial
from harness.verdict import Outcome

BUG = "kernel BUG in ext4_write_inline_data"
LOCKDEP = "possible deadlock in ext4_page_mkwrite"
HIT = Observation(hit=True, outcome="REPRODUCED", title=BUG, time_to_hit=0.2, seconds=0.2, reports=(BUG,))
CLEAN = Observation(hit=False, outcome="CLEAN", seconds=20.0)
TRADE = Observation(hit=False, outcome="OTHER_CRASH", title=LOCKDEP, other=LOCKDEP, reports=(LOCKDEP,))
BOOT = Observation(hit=False, outcome="BOOT_FAILURE", exposure=False, detail="no console output")


class Bernoulli:
    """A kernel that shows the bug with probability ``rate`` per run."""

    def __init__(self, rate: float, rng: random.Random):
        self.rate, self.rng = rate, rng

    def run(self) -> Observation:
        return HIT if self.rng.random() < self.rate else CLEAN


class Script:
    """A kernel that plays observations in order, then repeats the last one (or raises it)."""

    def __init__(self, observations: Iterable[Observation | BaseException], repeat: bool = True):
        self.queue = list(observations)
        self.repeat = repeat
        self.calls = 0

    def run(self) -> Observation:
        self.calls += 1
        item = self.queue.pop(0) if len(self.queue) > 1 or not self.repeat else self.queue[0]
        if isinstance(item, BaseException):
            raise item
        return item


class Clock:
    """Fake monotonic seconds; every run of a ``Timed`` side advances it."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Timed:
    def __init__(self, side, clock: Clock, seconds: float):
        self.side, self.clock, self.seconds = side, clock, seconds

    def run(self) -> Observation:
        self.clock.now += self.seconds
        return self.side.run()


def info(policy: Policy | None = None, **kw) -> ProofInfo:
    return ProofInfo(
        reproducer=kw.get("reproducer", "ext4_inline/debug"),
        base=KernelInfo("debian-src:6.1.192/debug", "6.1.192", "linux-source-6.1=6.1.192-3"),
        patched=KernelInfo("debian-src:6.1.192/debug+fix", "6.1.192", "linux-source-6.1=6.1.192-3"),
        patches=(PatchInfo("ext4: convert inline data in ->mmap instead of ->page_mkwrite", "ab" * 32, False,
                           "0001-ext4-convert-inline-data-at-mmap-time.patch"),),
        policy=policy or Policy(),
        started="2026-12-03T22:00:00",
        context={"argv": ["prove", "ext4_inline/debug", "--variant", "debug", "--patch", "fix.patch"]},
    )


# --- the stopping rule, simulated ------------------------------------------------------------------------

RATES = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
TRUTHS = {  # the patched kernel's rate as a function of the base's
    "fixed": lambda p: 0.0,
    "same": lambda p: p,
    "fifth": lambda p: p / 5,
    "boundary": lambda p: p / 10,  # exactly fraction x the base rate: the hardest case H0 allows
}
PROOFS = 1000


def test_stopping_rule_simulated(capsys):
    """Over 1000 proofs per case, wrong FIXED verdicts stay <= 1 - confidence wherever H0 holds.

    The real driver (``Prover``, no log) runs fake Bernoulli kernels with
    the default policy: confidence 0.95, fraction 1/10, at most 200 runs.
    """
    policy = Policy(confidence=0.95, fraction=0.1, max_runs=200)
    rng = random.Random(20261203)
    lines = [f"{'base rate':>9} {'truth':9} {'FIXED':>6} {'NOT_FIXED':>9} {'BASE_CLEAN':>10} {'INCONCL.':>8} "
             f"{'runs/proof':>10}"]
    measured = {}
    for p in RATES:
        for truth, patched_rate in TRUTHS.items():
            counts = dict.fromkeys(ProofVerdict, 0)
            runs = 0
            for _ in range(PROOFS):
                prover = Prover(Bernoulli(p, rng), Bernoulli(patched_rate(p), rng), policy)
                counts[prover.run().verdict] += 1
                runs += prover.proof.total
            rate = {v: n / PROOFS for v, n in counts.items()}
            measured[p, truth] = rate
            lines.append(f"{p:9.2f} {truth:9} {rate[ProofVerdict.FIXED]:6.3f} {rate[ProofVerdict.NOT_FIXED]:9.3f} "
                         f"{rate[ProofVerdict.BASE_CLEAN]:10.3f} {rate[ProofVerdict.INCONCLUSIVE]:8.3f} "
                         f"{runs / PROOFS:10.1f}")
    with capsys.disabled():
        print("\nprove: simulated proofs (confidence 0.95, fraction 1/10, max 200 runs), share of verdicts")
        print("\n".join(lines))
    for (p, truth), rate in measured.items():
        assert rate[ProofVerdict.TRADED] == 0
        if truth != "fixed":  # H0 holds: FIXED would be wrong
            assert rate[ProofVerdict.FIXED] <= 0.05, (p, truth, rate)
    assert measured[1.0, "fixed"][ProofVerdict.FIXED] >= 0.99  # and the rule does prove real fixes
    assert measured[0.5, "fixed"][ProofVerdict.FIXED] >= 0.9
    for p in (0.1, 0.2, 0.5, 1.0):
        assert measured[p, "same"][ProofVerdict.NOT_FIXED] >= 0.99


def test_rule_and_schedule_of_a_sure_bug():
    """A base that always hits: 3 base runs, then three patched runs per base run until N(k, n) clean."""
    base, patched = Script([HIT]), Script([CLEAN])
    prover = Prover(base, patched, Policy())
    decision = prover.run()
    proof = prover.proof
    assert decision.verdict is ProofVerdict.FIXED
    assert proof.patched.runs == proof.rule.runs_needed(proof.base.hits, proof.base.runs)
    assert proof.base.runs == 3 + proof.patched.runs // 3
    assert (proof.base.runs, proof.patched.runs) == (17, 44)  # the worked example of harness.stats


# --- the verdicts --------------------------------------------------------------------------------------------


def test_base_clean_after_its_share_of_the_runs(tmp_path: Path):
    base, patched = Script([CLEAN]), Script([HIT])
    result = prove.prove(base, patched, info(Policy(max_runs=30)), tmp_path / "p")
    assert result.verdict is ProofVerdict.BASE_CLEAN and result.exit_code == ExitCode.BASE_CLEAN == 9
    assert base.calls == 10 and patched.calls == 0  # a third of 30; the patched kernel is never run
    assert prove.statement(result) == ("Nothing to prove on this base: it never showed the expected outcome in 10 "
                                       "runs (its rate is below 0.259 with probability 0.95).")


def test_base_clean_after_its_share_of_the_budget(tmp_path: Path):
    clock = Clock()
    base = Timed(Script([CLEAN]), clock, 60)
    result = prove.prove(base, Script([CLEAN]), info(Policy(budget=9)), tmp_path / "p", clock=clock)
    assert result.verdict is ProofVerdict.BASE_CLEAN
    assert result.proof.base.runs == 3  # 3 of 9 minutes, a minute a run


def test_a_base_with_few_hits_goes_on_with_them(tmp_path: Path):
    base = Script([CLEAN] * 9 + [HIT] + [CLEAN])
    result = prove.prove(base, Script([CLEAN]), info(Policy(max_runs=30)), tmp_path / "p")
    assert result.verdict is ProofVerdict.INCONCLUSIVE
    records = [json.loads(line) for line in (tmp_path / "p" / prove.LOG_FILE).read_text().splitlines()]
    assert any(r["type"] == "phase" for r in records)  # the base check ended on its share, with 1 hit
    assert result.proof.patched.runs > 0


def test_not_fixed_on_the_first_patched_hit(tmp_path: Path):
    patched = Script([CLEAN, CLEAN, HIT, CLEAN])
    result = prove.prove(Script([HIT]), patched, info(), tmp_path / "p")
    assert result.verdict is ProofVerdict.NOT_FIXED and result.exit_code == ExitCode.UNMET
    assert patched.calls == 3 and result.proof.base.runs == 3  # the base check; no base run due yet
    assert BUG in result.reason
    assert prove.statement(result) == ("The patched kernel still fails: the expected outcome showed in 1 of 3 "
                                       "patched runs, against 3 of 3 base runs.")


def test_traded_names_the_other_report(tmp_path: Path):
    result = prove.prove(Script([HIT]), Script([TRADE]), info(), tmp_path / "p")
    assert result.verdict is ProofVerdict.TRADED and result.exit_code == ExitCode.UNMET
    assert LOCKDEP in result.reason and result.proof.traded() == [LOCKDEP]
    data = prove.to_json(result)
    assert data["traded"] == [LOCKDEP] and data["patched"]["other_reports"] == {LOCKDEP: 44}
    assert prove.statement(result).startswith(f"The expected outcome is gone, traded for another report: {LOCKDEP}. ")


def test_a_report_the_base_shows_too_is_no_trade(tmp_path: Path):
    noise = "WARNING in ext4_da_update_reserve_space"
    base_hit = Observation(hit=True, outcome="REPRODUCED", title=BUG, reports=(BUG, noise))
    patched_noise = Observation(hit=False, outcome="OTHER_CRASH", title=noise, other=noise, reports=(noise,))
    result = prove.prove(Script([base_hit]), Script([CLEAN, patched_noise]), info(), tmp_path / "p")
    assert result.verdict is ProofVerdict.FIXED
    assert result.proof.patched.others == {noise: 43}


def test_inconclusive_says_how_many_more_runs(tmp_path: Path):
    result = prove.prove(Script([HIT]), Script([CLEAN]), info(Policy(max_runs=20)), tmp_path / "p")
    proof = result.proof
    assert result.verdict is ProofVerdict.INCONCLUSIVE and result.exit_code == ExitCode.INCONCLUSIVE == 11
    assert (proof.base.runs, proof.patched.runs) == (7, 13)
    more = proof.rule.runs_needed(7, 7) - 13
    assert proof.more_runs() == more == 48  # N(7, 7) = 61
    assert result.reason == "--max-runs 20 reached"
    assert f"about {more} more clean runs would settle it" in prove.statement(result)
    assert prove.to_json(result)["more_runs"] == more


def test_inconclusive_when_the_budget_ends(tmp_path: Path):
    clock = Clock()
    base, patched = Timed(Script([HIT]), clock, 30), Timed(Script([CLEAN]), clock, 30)
    result = prove.prove(base, patched, info(Policy(budget=10)), tmp_path / "p", clock=clock)
    assert result.verdict is ProofVerdict.INCONCLUSIVE and result.reason == "the budget of 10 min ran out"
    assert result.proof.total == 20  # 30 s a run


def test_failed_runs_are_retried_then_stop_the_proof(tmp_path: Path):
    patched = Script([BOOT, BOOT, CLEAN, BOOT, BOOT, BOOT, CLEAN])
    with pytest.raises(GuestError, match="did not run the reproducer 3 times in a row") as err:
        prove.prove(Script([HIT]), patched, info(), tmp_path / "p")
    assert "BOOT_FAILURE: no console output" in str(err.value) and "resume" in str(err.value)
    log = ProofLog(tmp_path / "p")
    _, records = log.read()
    assert [r["outcome"] for r in records if r.get("side") == PATCHED] == ["BOOT_FAILURE"] * 2 + ["CLEAN"] + \
        ["BOOT_FAILURE"] * 3
    build = Observation(hit=False, outcome="BUILD_ERROR", exposure=False)
    with pytest.raises(KernelError):
        prove.prove(Script([HIT]), Script([build]), info(), tmp_path / "q")


# --- the log and resume ----------------------------------------------------------------------------------------


def test_resume_from_a_log_cut_mid_line(tmp_path: Path):
    folder = tmp_path / "proof"
    patched = Script([CLEAN] * 10 + [KeyboardInterrupt()], repeat=False)
    with pytest.raises(KeyboardInterrupt):
        prove.prove(Script([HIT]), patched, info(), folder)
    path = folder / prove.LOG_FILE
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 1 + 3 + 10 + 3  # header, base check, 10 patched with 3 base runs between
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # killed while writing the last run
    assert prove.read_info(folder) == info()
    result = prove.resume(folder, Script([HIT]), Script([CLEAN]))
    assert result.verdict is ProofVerdict.FIXED
    assert (result.proof.base.runs, result.proof.patched.runs) == (17, 44)  # the same proof as in one go
    bad = 0
    for line in path.read_text().splitlines():
        try:
            json.loads(line)
        except ValueError:
            bad += 1
    assert bad == 1  # only the cut line; the next record started on its own line
    loaded = prove.load(folder)
    assert loaded is not None and loaded.verdict is ProofVerdict.FIXED
    assert loaded.proof.patched.runs == 44


def test_resume_takes_new_limits_but_keeps_the_rule(tmp_path: Path):
    folder = tmp_path / "proof"
    first = prove.prove(Script([HIT]), Script([CLEAN]), info(Policy(max_runs=20)), folder)
    assert first.verdict is ProofVerdict.INCONCLUSIVE
    again = prove.resume(folder, Script([HIT]), Script([CLEAN]), max_runs=100)
    assert again.verdict is ProofVerdict.FIXED and again.info.policy.max_runs == 100
    assert again.info.policy.confidence == 0.95 and again.proof.total == 61


def test_a_folder_holds_one_proof(tmp_path: Path):
    prove.prove(Script([CLEAN]), Script([CLEAN]), info(Policy(max_runs=6)), tmp_path / "p")
    with pytest.raises(SpecError, match="already holds a proof"):
        prove.prove(Script([CLEAN]), Script([CLEAN]), info(), tmp_path / "p")
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / prove.LOG_FILE).write_text('{"type": "run"}\n')
    with pytest.raises(SpecError, match="not a proof folder"):
        prove.read_info(tmp_path / "q")
    with pytest.raises(SpecError, match="no proof to resume"):
        prove.read_info(tmp_path / "nothing")


# --- the output ---------------------------------------------------------------------------------------------------


def fixed_result() -> ProofResult:
    base_hit = Observation(hit=True, outcome="DATA_LOSS", title="data loss", time_to_hit=0.12, seconds=9.0,
                           folder="results/b")
    patched_clean = Observation(hit=False, outcome="CLEAN", seconds=31.0, folder="results/p")
    proof = prove.Proof(Policy())
    proof.end_base_check()
    for i in range(17):
        proof.add(BASE, replace_tth(base_hit, 0.1 + 0.01 * i))
    for _ in range(44):
        proof.add(PATCHED, patched_clean)
    proof.add(BASE, BOOT)
    the_info = ProofInfo(
        reproducer="ext2_iomap_blkseq",
        base=KernelInfo("debian-src:6.1.192/ext2-iomap", "6.1.192", "linux-source-6.1=6.1.192-3"),
        patched=KernelInfo("debian-src:6.1.192/ext2-iomap+1", "6.1.192", "linux-source-6.1=6.1.192-3"),
        patches=(PatchInfo("ext2: validate cached iomap with i_blkseq", "3c9f" + "0" * 60, False, "0002.patch"),),
    )
    return ProofResult(ProofVerdict.FIXED, "no expected outcome in 44 patched runs", the_info, proof)


def replace_tth(obs: Observation, tth: float) -> Observation:
    return Observation(**{**obs.__dict__, "time_to_hit": round(tth, 3)})


def test_table():
    assert prove.table(fixed_result()) == "\n".join([
        "         kernel                           runs            hits  rate [95% CI]      median time-to-hit  other reports",
        "base     debian-src:6.1.192/ext2-iomap    17 (+1 failed)  17    1.00 [0.80, 1.00]  0.18 s              -",
        "patched  debian-src:6.1.192/ext2-iomap+1  44              0     0.00 [0.00, 0.08]  -                   -",
    ])


def test_statement_and_mail_block():
    result = fixed_result()
    assert prove.statement(result) == (
        "Had the patched kernel still failed at ≥ 1/10 of the base rate, 44 clean runs would have shown it with "
        "probability ≥ 0.95 (base: 17 hits in 17 runs, its rate ≥ 0.805 with probability 0.975).")
    assert prove.mail_block(result) == "\n".join([
        "Reproducer: ext2_iomap_blkseq (kernel-repro-harness: harness prove)",
        "Base:       debian-src:6.1.192/ext2-iomap, Linux 6.1.192 (linux-source-6.1=6.1.192-3)",
        "Patched:    the base with",
        "              ext2: validate cached iomap with i_blkseq",
        "                sha256 3c9f000000000000000000000000000000000000000000000000000000000000",
        "Runs:       base 17 runs, 17 hits; patched 44 runs, 0 hits",
        "Result:     FIXED (confidence 0.95, fraction 1/10)",
        "",
        "Had the patched kernel still failed at >= 1/10 of the base rate, 44",
        "clean runs would have shown it with probability >= 0.95 (base: 17 hits",
        "in 17 runs, its rate >= 0.805 with probability 0.975).",
    ])
    assert "Tested-by" not in prove.mail_block(result) and "Reported-by" not in prove.mail_block(result)


def test_json():
    data = prove.to_json(fixed_result())
    assert data["verdict"] == "FIXED" and data["confidence"] == 0.95 and data["exit_code"] == 0
    assert (data["base"]["runs"], data["base"]["hits"], data["base"]["failed"]) == (17, 17, 1)
    assert (data["patched"]["runs"], data["patched"]["hits"]) == (44, 0)
    assert data["achieved_confidence"] >= 0.95
    assert data["statement"].startswith("Had the patched kernel still failed at ≥ 1/10")
    assert data["patched"]["reproducer_seconds"] == 44 * 31.0
    assert data["patched"]["folders"] == ["results/p"] * 44
    assert data["patches"][0]["sha256"].startswith("3c9f")
    json.dumps(data)  # serialisable as it is


def test_fraction_text():
    assert [prove.fraction_text(f) for f in (0.1, 0.2, 0.25, 0.3, 1.0)] == ["1/10", "1/5", "1/4", "0.3", "1"]


# --- from the run driver's RunResult ------------------------------------------------------------------------------


def step(name, rc, seconds):
    return SimpleNamespace(name=name, rc=rc, seconds=seconds)


SETUP = [step("setup", 0, 0.1), step("mount", 0, 1.0), step("compile", 0, 8.0)]


def run_result(outcome, title=None, tth=None, reports=(), steps=(), detail=""):
    verdict = SimpleNamespace(outcome=outcome, title=title, time_to_hit=tth, reports=tuple(reports), detail=detail)
    return SimpleNamespace(verdict=verdict, steps=tuple(steps), wall_seconds=19.4, folder=Path("/r/run-01"))


def test_observation_from_run_results():
    oops = Expectation(titles=(BUG,)).is_hit
    lost = Expectation(data_loss=True).is_hit
    hit = prove.from_run_result(run_result(Outcome.REPRODUCED, BUG, 0.142, [BUG], [*SETUP, step("run", None, None)]), oops)
    assert (hit.hit, hit.exposure, hit.seconds, hit.time_to_hit, hit.other) == (True, True, 0.142, 0.142, None)
    assert hit.folder == "/r/run-01" and hit.outcome == "REPRODUCED" and hit.wall_seconds == 19.4
    clean = prove.from_run_result(run_result(Outcome.CLEAN, steps=[*SETUP, step("run", 0, 20.3)]), oops)
    assert (clean.hit, clean.exposure, clean.seconds, clean.other) == (False, True, 20.3, None)
    boot = prove.from_run_result(run_result(Outcome.BOOT_FAILURE, detail="no console output"), oops)
    assert (boot.hit, boot.exposure, boot.other) == (False, False, None)
    early = prove.from_run_result(run_result(Outcome.OTHER_CRASH, LOCKDEP, None, [LOCKDEP], SETUP[:2]), oops)
    assert (early.exposure, early.other) == (False, LOCKDEP)  # crashed before the reproducer ran
    trade = prove.from_run_result(run_result(Outcome.OTHER_CRASH, LOCKDEP, 3.0, [LOCKDEP],
                                             [*SETUP, step("run", None, None)]), oops)
    assert (trade.hit, trade.exposure, trade.other, trade.seconds) == (False, True, LOCKDEP, 3.0)
    hang = prove.from_run_result(run_result(Outcome.HANG, steps=[*SETUP, step("run", 124, 150.0)]), oops)
    assert (hang.exposure, hang.other) == (True, "HANG")
    loss = prove.from_run_result(run_result(Outcome.DATA_LOSS, "data loss", 0.1, (), [*SETUP, step("run", 1, 30.0)]),
                                 lost)
    assert (loss.hit, loss.seconds, loss.time_to_hit) == (True, 30.0, 0.1)
    assert not prove.from_run_result(run_result(Outcome.DATA_LOSS, "data loss", 0.1, (), SETUP), oops).hit
    assert Observation.from_dict(json.loads(json.dumps(trade.to_dict()))) == trade


def test_trial_side_runs_the_trial():
    session = SimpleNamespace(run=lambda seconds=None: run_result(Outcome.CLEAN, steps=[step("run", 0, 20.0)]))
    trial = Trial(SimpleNamespace(expect=Expectation(titles=(BUG,))), None, None)
    trial.session = session
    assert prove.TrialSide(trial).run().outcome == "CLEAN"
    assert prove.TrialSide(trial).run(2.5).trial == 2.5


def test_exit_codes():
    assert {v: int(v.exit_code) for v in ProofVerdict} == {
        ProofVerdict.FIXED: 0, ProofVerdict.NOT_FIXED: 1, ProofVerdict.TRADED: 1,
        ProofVerdict.BASE_CLEAN: 9, ProofVerdict.INCONCLUSIVE: 11, ProofVerdict.NO_CHANGE: 13}
