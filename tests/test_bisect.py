"""Bisection: the judge, the list and git drivers, the log and resume, the CLI, with fake steps."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import git
from harness.bisect import driver, judge
from harness.bisect.driver import Evaluator, GitBisection, ListBisection, StepLog, StepSkip, Terms
from harness.bisect.judge import CLEAN, FAIL, HIT, NO_REPRO, OTHER, REPRODUCES, SKIP, Policy, RunObs, decide
from harness.cli import bisect as bcli
from harness.errors import GitError
from harness.verdict import Outcome

TITLE = "kernel BUG in ext4_write_inline_data"
ROOT = Path(__file__).resolve().parent.parent


# --- fakes ---------------------------------------------------------------------------------------------


class FakeTarget:
    def __init__(self, step: FakeStep, candidate: str):
        self.step, self.candidate = step, candidate
        self.kernel = f"fake:{candidate}"
        self.info = {"key": f"key-{candidate}", "build_seconds": 1.0, "cached": False}

    def run(self, index: int) -> RunObs:
        s, c = self.step, self.candidate
        s.runs.append(c)
        if c in s.boot_fail:
            return RunObs(FAIL, "BOOT_FAILURE", None, 1.0, None, "no guest step started")
        if s.rng.random() < s.rate_of(c):
            return RunObs(HIT, "REPRODUCED", TITLE, 1.0)
        if c in s.other and s.rng.random() < s.other_rate:
            return RunObs(OTHER, "OTHER_CRASH", "WARNING in ext4_da_update_reserve_space", 1.0)
        return RunObs(CLEAN, "CLEAN", None, 1.0)


class FakeStep:
    """Candidate -> target whose runs hit with rate_of(candidate), from a seeded RNG."""

    def __init__(self, rate_of, *, seed=0, build_fail=(), boot_fail=(), other=(), other_rate=1.0, stop_after=None):
        self.rate_of = rate_of
        self.rng = random.Random(seed)
        self.build_fail, self.boot_fail, self.other = set(build_fail), set(boot_fail), set(other)
        self.other_rate = other_rate
        self.calls: list[str] = []
        self.runs: list[str] = []
        self.stop_after = stop_after  # raise KeyboardInterrupt at this call (an interrupted bisection)

    def __call__(self, candidate: str) -> FakeTarget:
        if self.stop_after is not None and len(self.calls) == self.stop_after:
            raise KeyboardInterrupt
        self.calls.append(candidate)
        if candidate in self.build_fail:
            raise StepSkip(f"building {candidate} failed: error: oops", "BUILD_ERROR")
        return FakeTarget(self, candidate)


def names(n: int) -> list[str]:
    return [f"debian:6.1.0-{i}" for i in range(n)]


def regression_at(k: int, cands: list[str], p: float = 1.0):
    """Candidates from index k on reproduce with rate p."""
    return lambda c: p if cands.index(c) >= k else 0.0


def list_bisect(tmp_path, cands, step, *, fix=False, policy=None, old=None, new=None, verify=True, folder=None):
    log = StepLog(folder or tmp_path / "b", "setup")
    ev = Evaluator(step, policy or Policy(runs=1), log, Terms.for_mode(fix))
    return ListBisection(cands, old or cands[0], new or cands[-1], ev, verify_ends=verify).run()


# --- judge --------------------------------------------------------------------------------------------------


def test_classify_outcomes():
    def is_hit(o):
        return o is Outcome.REPRODUCED

    assert judge.classify(Outcome.REPRODUCED, is_hit) == HIT
    assert judge.classify(Outcome.CLEAN, is_hit) == CLEAN
    for o in (Outcome.OTHER_CRASH, Outcome.HANG, Outcome.DATA_LOSS, Outcome.FS_CORRUPT):
        assert judge.classify(o, is_hit) == OTHER
    for o in (Outcome.BOOT_FAILURE, Outcome.INFRA_ERROR, Outcome.BUILD_ERROR):
        assert judge.classify(o, is_hit) == FAIL


def obs(*kinds):
    table = {HIT: ("REPRODUCED", TITLE), CLEAN: ("CLEAN", None), OTHER: ("OTHER_CRASH", "WARNING in foo"),
             FAIL: ("BOOT_FAILURE", None)}
    return [RunObs(k, *table[k]) for k in kinds]


def test_a_hit_decides_at_once_and_is_certain():
    j = decide(obs(HIT), Policy(runs=10), rate=None)
    assert j.verdict == REPRODUCES and j.confidence == 1.0 and j.titles == (TITLE,)
    assert decide(obs(CLEAN, CLEAN, HIT), Policy(runs=10), rate=0.5).verdict == REPRODUCES


def test_the_measuring_end_runs_every_run():
    p = Policy(runs=3)
    assert decide(obs(HIT), p, None, measure=True) is None
    assert decide(obs(HIT, CLEAN), p, None, measure=True) is None
    j = decide(obs(HIT, CLEAN, HIT), p, None, measure=True)
    assert (j.verdict, j.hits, j.ok) == (REPRODUCES, 2, 3)


def test_clean_stops_early_once_confident():
    p = Policy(runs=10, target=0.95)
    rate = 11 / 12  # 10 hits in 10 runs at the bad end, Laplace-smoothed
    assert judge.runs_for(rate, 0.95) == 2
    assert decide(obs(CLEAN), p, rate) is None
    j = decide(obs(CLEAN, CLEAN), p, rate)
    assert j.verdict == NO_REPRO and j.ok == 2 and j.confidence == pytest.approx(1 - (1 / 12) ** 2, abs=1e-4)
    # a low rate needs every run, and stays below the target
    j = None
    runs = []
    while j is None:
        runs.append(obs(CLEAN)[0])
        j = decide(runs, p, 0.1)
    assert len(runs) == 10 and j.verdict == NO_REPRO and j.confidence == pytest.approx(1 - 0.9**10, abs=1e-4)


def test_without_a_rate_a_clean_step_runs_all_and_has_no_confidence():
    p = Policy(runs=3)
    assert decide(obs(CLEAN, CLEAN), p, None) is None
    j = decide(obs(CLEAN, CLEAN, CLEAN), p, None)
    assert j.verdict == NO_REPRO and j.confidence is None


def test_unrelated_crash_is_no_reproduction_and_reported():
    j = decide(obs(OTHER, CLEAN), Policy(runs=2), rate=0.5)
    assert j.verdict == NO_REPRO and j.hits == 0 and j.other_titles == ("WARNING in foo",)
    assert "unrelated" in j.reason
    j = decide(obs(OTHER, OTHER), Policy(runs=2), rate=0.5)
    assert j.verdict == NO_REPRO  # never "reproduces"


def test_failed_runs_are_retried_then_skip():
    p = Policy(runs=2, max_fail=2)
    assert decide(obs(FAIL), p, 0.5) is None
    j = decide(obs(FAIL, FAIL), p, 0.5)
    assert j.verdict == SKIP and "only 0 of 2 runs succeeded" in j.reason and "BOOT_FAILURE" in j.reason
    # one failure, then enough clean runs: judged on the runs that succeeded
    assert decide(obs(FAIL, CLEAN), p, None) is None
    assert decide(obs(FAIL, CLEAN, CLEAN), p, None).verdict == NO_REPRO
    # two failures but half the runs succeeded: clean on what it has
    j = decide(obs(CLEAN, FAIL, FAIL), Policy(runs=2, max_fail=2), None)
    assert j.verdict == NO_REPRO and j.fails == 2


def test_hits_below_threshold_are_inconclusive():
    p = Policy(runs=3, min_hits=2)
    assert decide(obs(HIT), p, None) is None
    assert decide(obs(HIT, HIT), p, None).verdict == REPRODUCES
    assert decide(obs(HIT, CLEAN, CLEAN), p, None).verdict == SKIP


def test_rate_and_overall_confidence():
    r = judge.Rate()
    assert r.estimate is None
    r.add(2, 2)
    assert r.estimate == 0.75
    t = judge.Tally(rate=r, clean_steps=[2, 2])
    assert t.confidence() == pytest.approx((1 - 0.25**2) ** 2, abs=1e-4)
    assert judge.Rate(prior=0.3).estimate == 0.3


def test_policy_validation():
    with pytest.raises(ValueError):
        Policy(runs=0)
    with pytest.raises(ValueError):
        Policy(target=1.0)
    assert Policy(runs=5).needed_ok == 3


# --- list driver ---------------------------------------------------------------------------------------------


def test_list_bisect_finds_first_reproducing_kernel(tmp_path):
    cands = names(20)
    step = FakeStep(regression_at(13, cands))
    res = list_bisect(tmp_path, cands, step)
    assert res.found and res.first == cands[13] and res.last_old == cands[12]
    assert len(step.calls) <= 2 + 5  # the ends + log2(18)
    # one run a step: each clean step is only 1 - (1 - p) sure, p = (3 + 1) / (3 + 2) from the 3 hits seen
    clean = [s for s in res.steps if s.verdict == NO_REPRO]
    assert res.rate == {"hits": 3, "runs": 3, "estimate": 0.8}
    assert res.confidence == pytest.approx(0.8 ** len(clean), abs=1e-4)
    lines = (tmp_path / "b" / "steps.jsonl").read_text().splitlines()
    assert len(lines) == len(step.calls)
    first = json.loads(lines[0])
    assert first["role"] == "repro-end" and first["candidate"] == cands[-1] and first["term"] == "bad"
    assert {"candidate", "build_key", "runs", "hits", "titles", "verdict", "seconds"} <= first.keys()


def test_list_bisect_fix_mode_finds_first_clean(tmp_path):
    cands = names(12)
    step = FakeStep(lambda c: 1.0 if cands.index(c) < 7 else 0.0)
    res = list_bisect(tmp_path, cands, step, fix=True)
    assert res.found and res.first == cands[7]
    assert res.terms.new == "fixed" and res.headline().startswith("first fixed kernel: debian:6.1.0-7")
    roles = {json.loads(x)["role"]: json.loads(x) for x in (tmp_path / "b" / "steps.jsonl").read_text().splitlines()}
    assert roles["repro-end"]["candidate"] == cands[0] and roles["repro-end"]["term"] == "broken"
    assert roles["clean-end"]["candidate"] == cands[-1] and roles["clean-end"]["term"] == "fixed"


@pytest.mark.parametrize("seed", range(12))
def test_list_bisect_with_a_flaky_bug(tmp_path, seed):
    """Hit rate 0.4, 8 runs a step: the bad end measures the rate, clean steps stop early."""
    cands = names(32)
    step = FakeStep(regression_at(21, cands, p=0.4), seed=seed)
    res = list_bisect(tmp_path, cands, step, policy=Policy(runs=8, target=0.95))
    assert res.found and res.first == cands[21]
    assert 0.2 < res.rate["estimate"] < 0.8
    assert 0.7 < res.confidence < 1.0
    # the bad end ran all 8 runs; reproducing steps stopped at their first hit
    bad_end = res.steps[0]
    assert bad_end.role == "repro-end" and len(bad_end.runs) == 8
    assert all(s.runs[-1]["kind"] == HIT for s in res.steps if s.verdict == REPRODUCES and s.role == "step")


def test_list_bisect_rare_bug_can_go_wrong_and_says_so(tmp_path):
    """A 10% bug with 2 runs a step: the confidence reported is low, as it should be."""
    cands = names(16)
    step = FakeStep(regression_at(5, cands, p=0.1), seed=3)
    res = list_bisect(tmp_path, cands, step, policy=Policy(runs=2), verify=False, old=cands[0], new=cands[-1])
    if res.found:
        assert res.confidence is None or res.confidence < 0.9


def test_list_bisect_skips_build_failures(tmp_path):
    cands = names(16)
    step = FakeStep(regression_at(9, cands), build_fail={cands[7], cands[11]})
    res = list_bisect(tmp_path, cands, step)
    assert res.found and res.first == cands[9]
    recs = [json.loads(x) for x in (tmp_path / "b" / "steps.jsonl").read_text().splitlines()]
    skipped = [r for r in recs if r["verdict"] == SKIP]
    assert skipped and all("build" in r["reason"] and r["term"] == "skip" for r in skipped)


def test_list_bisect_ambiguous_when_neighbours_are_skipped(tmp_path):
    cands = names(10)
    step = FakeStep(regression_at(5, cands), build_fail={cands[4], cands[5]})
    res = list_bisect(tmp_path, cands, step)
    assert res.status == "ambiguous" and res.first is None
    assert res.suspects == cands[4:6] or set(cands[5:6]) <= set(res.suspects)
    assert cands[5] in res.suspects and cands[3] not in res.suspects


def test_list_bisect_boot_failures_skip(tmp_path):
    cands = names(10)
    step = FakeStep(regression_at(6, cands), boot_fail={cands[5]})
    res = list_bisect(tmp_path, cands, step, policy=Policy(runs=2, max_fail=2))
    # 5 cannot be judged; 6 reproduces, 4 is clean: git-bisect-like ambiguity between 5 and 6
    assert res.status in ("found", "ambiguous")
    if res.found:
        assert res.first == cands[6] and cands[5] not in step.calls
    else:
        assert res.suspects == [cands[5], cands[6]]


def test_unrelated_crash_never_counts_as_bad(tmp_path):
    cands = names(16)
    # kernels 3..10 crash with another title in every run, the bug comes at 11
    step = FakeStep(regression_at(11, cands), other=set(cands[3:11]), other_rate=1.0)
    res = list_bisect(tmp_path, cands, step, policy=Policy(runs=2))
    assert res.found and res.first == cands[11]
    assert "WARNING in ext4_da_update_reserve_space" in res.to_dict()["unrelated"]
    assert "unrelated" in res.report_text()


def test_ends_that_do_not_differ_are_reported(tmp_path):
    cands = names(8)
    res = list_bisect(tmp_path, cands, FakeStep(lambda c: 0.0))
    assert res.status == "ends" and "does not reproduce" in res.message and not res.found
    res = list_bisect(tmp_path / "2", cands, FakeStep(lambda c: 1.0))
    assert res.status == "ends" and "reproduces too" in res.message


def test_list_bisect_resumes_from_the_log(tmp_path):
    cands = names(40)
    folder = tmp_path / "resume"
    first = FakeStep(regression_at(29, cands), stop_after=4)
    with pytest.raises(KeyboardInterrupt):
        list_bisect(tmp_path, cands, first, folder=folder)
    assert len(StepLog(folder, "setup").records) == 4
    second = FakeStep(regression_at(29, cands))
    res = list_bisect(tmp_path, cands, second, folder=folder)
    assert res.found and res.first == cands[29]
    assert not set(first.calls) & set(second.calls)  # nothing finished was run again
    assert sum(s.reused for s in res.steps) == 4
    # another setup (other kconfig, other reproducer source...) does not reuse them
    log = StepLog(folder, "other-setup")
    assert log.find(cands[-1]) is None and StepLog(folder, "setup").find(cands[-1]) is not None


def test_step_log_survives_a_torn_line(tmp_path):
    log = StepLog(tmp_path, "s")
    rec = driver.StepRecord(1, "c", "c", "step", REPRODUCES, "bad", "1 hit", setup="s")
    log.append(rec)
    with open(log.path, "a") as fh:
        fh.write('{"index": 2, "candid')
    again = StepLog(tmp_path, "s")
    assert [r.candidate for r in again.records] == ["c"]


def test_pick_prefers_the_middle_and_avoids_skipped():
    assert ListBisection.pick(0, 10, set()) == 5
    assert ListBisection.pick(0, 10, {5}) == 4
    assert ListBisection.pick(0, 10, {5, 4}) == 6
    assert ListBisection.pick(3, 4, set()) is None
    assert ListBisection.pick(0, 3, {1, 2}) is None


def test_terms_and_exit_codes():
    normal, fix = Terms.for_mode(False), Terms.for_mode(True)
    assert (normal.exit_code(REPRODUCES), normal.exit_code(NO_REPRO), normal.exit_code(SKIP)) == (1, 0, 125)
    assert (fix.exit_code(REPRODUCES), fix.exit_code(NO_REPRO), fix.exit_code(SKIP)) == (0, 1, 125)
    assert (fix.term(REPRODUCES), fix.term(NO_REPRO)) == ("broken", "fixed")


# --- git driver --------------------------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.fixture
def repo(tmp_path) -> tuple[Path, list[str]]:
    """A repository with commits c0..c15 (c0 the root); returns (path, shas in order)."""
    path = tmp_path / "linux"
    path.mkdir()
    _git(path, "init", "-q", "-b", "master")
    shas = []
    for i in range(16):
        (path / "file.c").write_text(f"/* change {i} */\n")
        _git(path, "add", "file.c")
        author = "Ada Fixer <ada@example.invalid>" if i == 11 else "T <t@example.invalid>"
        _git(path, "commit", "-q", "-m", f"c{i}: change {i}", f"--author={author}")
        shas.append(_git(path, "rev-parse", "HEAD"))
    (path / "scratch.txt").write_text("the user's uncommitted work\n")
    return path, shas


def by_index(shas, fn):
    return lambda sha: fn(shas.index(sha))


def git_bisect(tmp_path, repo_path, shas, step, *, fix=False, policy=None, folder=None, verify=True):
    folder = folder or tmp_path / "gb"
    log = StepLog(folder, "setup")
    ev = Evaluator(step, policy or Policy(runs=1), log, Terms.for_mode(fix),
                   describe=lambda s: git.commit_info(repo_path, s),
                   label=lambda s: f"{s[:12]} {git.commit_info(repo_path, s)['subject']}")
    return GitBisection(repo_path, shas[0], shas[-1], ev, folder, verify_ends=verify).run()


def test_git_bisect_fix_mode_names_the_commit(tmp_path, repo):
    path, shas = repo
    head_before = _git(path, "rev-parse", "HEAD")
    step = FakeStep(by_index(shas, lambda i: 1.0 if i < 11 else 0.0))
    res = git_bisect(tmp_path, path, shas, step, fix=True)
    assert res.found and res.first == shas[11]
    assert res.info["subject"] == "c11: change 11" and res.info["author"] == "Ada Fixer <ada@example.invalid>"
    assert res.last_old == shas[10]
    assert "first fixed commit" in res.headline() and "Ada Fixer" in res.headline()
    # the user's checkout is untouched: same HEAD, their file, no bisect state, no leftover worktree
    assert _git(path, "rev-parse", "HEAD") == head_before
    assert (path / "scratch.txt").exists()
    assert not (path / ".git" / "BISECT_LOG").exists()
    assert _git(path, "worktree", "list").count("\n") == 0
    log = (tmp_path / "gb" / "git-bisect.log").read_text()
    assert "git bisect start" in log and "# first fixed commit" in log
    assert len(step.calls) <= 2 + 4


def test_git_bisect_regression_with_skips_and_flakiness(tmp_path, repo):
    path, shas = repo
    step = FakeStep(by_index(shas, lambda i: 0.5 if i >= 6 else 0.0), seed=7, build_fail={shas[4]})
    res = git_bisect(tmp_path, path, shas, step, policy=Policy(runs=6))
    assert res.found and res.first == shas[6]
    assert res.terms.new == "bad"
    recs = [json.loads(x) for x in (tmp_path / "gb" / "steps.jsonl").read_text().splitlines()]
    assert all(r["candidate"] in shas for r in recs)
    assert recs[0]["info"]["subject"].startswith("c15")


def test_git_bisect_only_skipped_left(tmp_path, repo):
    path, shas = repo
    step = FakeStep(by_index(shas, lambda i: 1.0 if i >= 8 else 0.0), build_fail={shas[7], shas[8]})
    res = git_bisect(tmp_path, path, shas, step)
    assert res.status == "ambiguous"
    assert sorted(res.suspects) == sorted(shas[7:10])  # git names the skipped ones and the first known fixed one


def test_git_bisect_resumes(tmp_path, repo):
    path, shas = repo
    folder = tmp_path / "gr"
    first = FakeStep(by_index(shas, lambda i: 1.0 if i >= 3 else 0.0), stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        git_bisect(tmp_path, path, shas, first, folder=folder)
    second = FakeStep(by_index(shas, lambda i: 1.0 if i >= 3 else 0.0))
    res = git_bisect(tmp_path, path, shas, second, folder=folder)
    assert res.found and res.first == shas[3]
    assert not set(first.calls) & set(second.calls)
    assert _git(path, "worktree", "list").count("\n") == 0


def test_git_bisect_rejects_unrelated_ends(tmp_path, repo):
    path, shas = repo
    ev = Evaluator(FakeStep(lambda s: 0.0), Policy(), StepLog(tmp_path / "x", "s"), Terms())
    with pytest.raises(GitError):
        GitBisection(path, shas[5], shas[2], ev, tmp_path / "x")
    with pytest.raises(GitError):
        GitBisection(path, "no-such-rev", shas[2], ev, tmp_path / "x")


# --- CLI -----------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness")
    bcli.add_parsers(p.add_subparsers(dest="command", required=True))
    return p


def test_cli_prebuilt_list_bisect(tmp_path, monkeypatch):
    from harness.kernels import debian

    offered = [*(f"debian:6.1.0-{i}" for i in range(47, 57)), *(f"debian:6.12.{i}" for i in (100, 101, 107))]
    monkeypatch.setattr(debian.DebianImage, "available", lambda self: list(reversed(offered)))
    fixed_from = offered.index("debian:6.12.100")
    step = FakeStep(lambda c: 1.0 if offered.index(c) < fixed_from else 0.0)
    args = parser().parse_args(["bisect", "ext4_inline", "--good", "debian:6.1.0-47", "--bad", "debian:6.12.107",
                                "--fix", "--runs", "2", "--folder", str(tmp_path / "f")])
    res = bcli.bisect(args, step=step)
    assert res.found and res.first == "debian:6.12.100" and res.last_old == "debian:6.1.0-56"
    report = json.loads((tmp_path / "f" / "report.json").read_text())
    assert report["first"] == "debian:6.12.100" and report["status"] == "found"
    assert report["step_log"].endswith("steps.jsonl") and report["runs"] >= 3
    assert (tmp_path / "f" / "report.txt").read_text().startswith("first fixed kernel: debian:6.12.100")
    params = json.loads((tmp_path / "f" / "bisect.json").read_text())
    assert params["mode"] == "fix" and params["old"] == "debian:6.1.0-47"
    # the same command again resumes: every step is reused, nothing runs
    again = FakeStep(lambda c: 1 / 0)
    res2 = bcli.bisect(args, step=again)
    assert res2.first == res.first and again.calls == [] and all(s.reused for s in res2.steps)
    # another bisection in the same folder is refused
    other = parser().parse_args(["bisect", "ext4_inline", "--good", "debian:6.1.0-48", "--bad", "debian:6.12.107",
                                 "--folder", str(tmp_path / "f")])
    with pytest.raises(bcli.HarnessError, match="holds another bisection"):
        bcli.bisect(other, step=step)


def test_cli_unknown_kernel_in_list(tmp_path, monkeypatch):
    from harness.errors import UnknownName
    from harness.kernels import debian

    monkeypatch.setattr(debian.DebianImage, "available", lambda self: ["debian:6.1.0-47", "debian:6.1.0-48"])
    args = parser().parse_args(["bisect", "ext4_inline", "--good", "debian:6.1.0-40", "--bad", "debian:6.1.0-48"])
    with pytest.raises(UnknownName, match="6.1.0-40"):
        bcli.bisect(args, step=FakeStep(lambda c: 0))


def test_cli_git_bisect_uses_kconfig_and_names_commit(tmp_path, repo):
    path, shas = repo
    step = FakeStep(by_index(shas, lambda i: 1.0 if i < 11 else 0.0))
    args = parser().parse_args(["bisect", "ext4_inline", "--kernel-source", f"git:{path}", "--good", shas[0],
                                "--bad", "master", "--fix", "--runs", "2", "--folder", str(tmp_path / "g")])
    res = bcli.bisect(args, step=step)
    assert res.found and res.first == shas[11] and res.info["subject"] == "c11: change 11"
    params = json.loads((tmp_path / "g" / "bisect.json").read_text())
    assert params["setup_inputs"]["fragments"] == ["lean", "filesystems", "faults"] and params["new"] == shas[-1]


def test_real_git_bisect_run_with_bisect_step(tmp_path, repo):
    """`git bisect run` drives the step command: BISECT_HEAD, exit 0/1/125, the shared log."""
    path, shas = repo
    script = tmp_path / "step.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from harness.cli import bisect as cli
        from harness.bisect.driver import Terms
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_bisect import FakeStep
        shas = {shas!r}
        step = FakeStep(lambda s: 1.0 if shas.index(s) < 11 else 0.0, build_fail={{shas[9]}})
        p = cli.argparse.ArgumentParser(prog="harness")
        cli.add_parsers(p.add_subparsers(dest="command", required=True))
        args = p.parse_args(["bisect-step", "ext4_inline", "--fix", "--folder", {str(tmp_path / "steps")!r}])
        rec = cli.bisect_step(args, step=step)
        sys.exit(Terms.for_mode(True).exit_code(rec.verdict))
    """))
    wt = tmp_path / "wt"
    _git(path, "worktree", "add", "--detach", "--no-checkout", str(wt), shas[-1])
    _git(wt, "bisect", "start", "--no-checkout", "--term-old=broken", "--term-new=fixed", shas[-1], shas[0])
    done = subprocess.run(["git", "-C", str(wt), "bisect", "run", sys.executable, str(script)],
                          capture_output=True, text=True, cwd=wt)
    assert f"{shas[11]} is the first fixed commit" in done.stdout, done.stdout + done.stderr
    recs = [json.loads(x) for x in (tmp_path / "steps" / "steps.jsonl").read_text().splitlines()]
    assert recs and all(r["candidate"] in shas for r in recs)


def test_bisect_step_usage_error_aborts_git_bisect_run(capsys):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["bisect-step", "ext4_inline", "--no-such-option"])
    assert e.value.code == bcli.GIT_ABORT
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["bisect-step"])
    assert e.value.code == bcli.GIT_ABORT


def test_bisect_step_error_exit_aborts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = parser().parse_args(["bisect-step", "no-such-repro", "--kernel", "debian:6.1.0-47"])
    assert bcli.cmd_bisect_step(args) == bcli.GIT_ABORT


def test_main_entry_point_help():
    done = subprocess.run([sys.executable, "-m", "harness.bisect", "bisect", "--help"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0 and "--kernel-source" in done.stdout and "--fix" in done.stdout


def test_resume_tests_skipped_steps_again(tmp_path):
    cands = names(10)
    folder = tmp_path / "s"
    first = FakeStep(regression_at(6, cands), build_fail={cands[4]})
    list_bisect(tmp_path, cands, first, folder=folder)
    assert cands[4] in first.calls
    second = FakeStep(regression_at(6, cands))  # the build failure was transient (killed, out of disk...)
    res = list_bisect(tmp_path, cands, second, folder=folder)
    assert second.calls == [cands[4]] and res.found and res.first == cands[6]
    # --reuse-skips keeps them
    log = StepLog(folder, "setup", reuse_skips=True)
    third = FakeStep(lambda c: 1 / 0)
    ev = Evaluator(third, Policy(), log, Terms())
    assert ev.evaluate(cands[4]).reused and third.calls == []


def test_bisect_steps_run_with_the_shared_run_options(tmp_path, monkeypatch):
    """--timeout and --host-compile reach the step's Trial unchanged; a step is one Trial (one run session,
    one boot) for all its runs, into <folder>/runs/<kernel>."""
    from harness.bisect import steps
    from harness.kernels import Kernel
    from harness.options import Accel, RunOptions
    from harness.repro.trial import Observation

    seen, runs, closed = [], [], []

    class FakeTrial:
        def __init__(self, spec, kernel, options, *, accel, progress=None):
            seen.append((options, accel, progress))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            closed.append(exc)

        def run(self, seconds=None):
            runs.append(seconds)
            return Observation(hit=True, outcome="REPRODUCED", title=TITLE, wall_seconds=3.0, seconds=0.5)

    monkeypatch.setattr(steps, "Trial", FakeTrial)
    monkeypatch.setattr(steps, "accel_for", lambda options, kernel: Accel("tcg", f"asked {options.accel}"))
    kernel = Kernel(name="debian:6.1.0-47", release="6.1.0-47-amd64", version="6.1.170", image=tmp_path / "vmlinuz")
    monkeypatch.setattr(steps.kernels, "resolve", lambda name, progress=None: kernel)
    args = parser().parse_args(["bisect", "ext4_inline", "--good", "a", "--bad", "b", "-n", "4", "--timeout", "30",
                                "--host-compile", "--accel", "kvm"])
    spec = bcli.specs.load("ext4_inline")
    inputs = bcli.Inputs.from_args(args, spec, None)
    options = inputs.options(args, tmp_path / "folder")
    assert options == RunOptions(accel="kvm", runs=4, results=tmp_path / "folder" / "runs", host_compile=True, timeout=30)
    say = []
    with inputs.step(spec, options, say.append)("debian:6.1.0-47") as target:
        obs = target.run(1)
        target.run(2)
    assert obs.kind == HIT and obs.title == TITLE and obs.wall_seconds == 3.0
    (used, accel, progress), = seen  # one session for the step's two runs
    assert runs == [None, None] and len(closed) == 1
    assert used == options.with_(results=tmp_path / "folder" / "runs" / "debian_6.1.0-47")
    assert accel == Accel("tcg", "asked kvm") and progress == say.append
    assert target.info["accel"] == "tcg"
    # the timeout is part of the step log's key (a longer limit may judge a candidate differently)
    assert inputs.setup(spec, options)["timeout"] == 30 and "timeout" not in inputs.setup(spec, RunOptions())
