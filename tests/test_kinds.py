"""Kinds of run (issue 23): the session asks its kind to prepare, stage and read, and never which kind it runs.

A kind made here (``Suite``, the shape the next kind takes) runs through a real
``ReproSession`` with a backend that writes a guest's logs; the fstests kind
stages and reads a run folder with real fstests results (tests/data/fstests/).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from harness.errors import GuestError, SpecError, UnknownName
from harness.fstests import config, disks
from harness.fstests import guest as fguest
from harness.fstests.build import Build
from harness.fstests.kind import Fstests
from harness.guest.backends import backend, choose
from harness.guest.machine import Backend, GuestRun
from harness.guest.protocol import GuestOutput, GuestPlan
from harness.kernels import Kernel
from harness.options import Accel, RunOptions
from harness.registry import Registry
from harness.repro import kinds
from harness.repro import spec as specs
from harness.repro.kind import Context, Reading, RunKind, Staged
from harness.repro.reproducer import Reproducer
from harness.repro.run import ReproSession, RunResult, Summary
from harness.results import db
from harness.verdict import Evidence, Outcome, Verdict

DATA = Path(__file__).resolve().parent / "data" / "fstests"
KERNEL = Kernel("debian:6.1.0-56", "6.1.0-56-amd64", "6.1.192", Path("/k/vmlinuz"))
ROOT = Path(__file__).resolve().parent.parent


# --- which kind --------------------------------------------------------------------------------


def test_a_spec_gets_its_kind_by_mode():
    assert type(kinds.for_spec(specs.load("ext4_inline"))) is Reproducer
    fstests = specs.load(str(ROOT / "reproducers" / "xfs_mkwrite_delalloc" / "fstests"))
    assert fstests.mode == "fstests" and type(kinds.for_spec(fstests)) is Fstests


def test_a_mode_no_kind_runs_is_one_line_naming_the_modes():
    with pytest.raises(UnknownName, match=r"^Unknown spec mode 'ltp'\. Available: fstests, plain, syzkaller$"):
        kinds.for_spec(replace(specs.load("ext4_inline"), mode="ltp"))


def test_fstests_needs_a_backend_that_shares_the_root_and_attaches_disks(monkeypatch):
    needs = Fstests.requirements
    assert needs.unmet(backend("vng")) is None
    assert needs.unmet(backend("snapshot")) == ("fstests runs check from the host's build on two virtio disks: "
                                                "snapshot guests cannot have both (use --backend vng)")
    assert Reproducer.requirements.unmet(backend("snapshot")) is None
    monkeypatch.delenv("HARNESS_BACKEND", raising=False)
    assert choose("auto", KERNEL, shares_root="fstests") == (
        "vng", "auto: the run reads the host's files in the guest (fstests), which snapshot guests cannot")


# --- a new kind through the session -------------------------------------------------------------


class Failed:
    """A suite's results: one test failed (``harness.verdict.SuiteResults``)."""

    def verdict(self, ev: Evidence) -> Verdict | None:
        return Verdict(Outcome.TEST_FAILED, title="suite: t1 failed")


class Suite(RunKind):
    """The next kind of run, as small as it can be: one command, its results read back."""

    name = "suite"
    modes = ("suite",)

    def __init__(self, spec):
        super().__init__(spec)
        self.calls: list[str] = []

    def prepare(self, ctx: Context) -> Verdict | None:
        self.calls.append(f"prepare {ctx.folder.is_dir()} {ctx.backend.name}")
        return None

    def describe(self) -> str | None:
        return "2 suite tests"

    def stage(self, ctx: Context, run_dir: Path, seconds: float | None = None) -> Staged:
        self.calls.append(f"stage {run_dir.name} {seconds}")
        plan = GuestPlan(title="suite", fs_type="none", mount_options="", source="", cflags=(), args=(),
                         run_timeout=77, check_argv=None, image=False, run_argv=("suite", "t1", "t2"))
        return Staged(ctx.request(run_dir, plan, ()), {"staged": run_dir.name})

    def read(self, ctx, run_dir, staged, output, text, console) -> Reading:
        self.calls.append(f"read {run_dir.name} {output.done}")
        return Reading({**staged.record, "suite": {"t1": "fail", "t2": "pass"}}, tests=Failed())

    def close(self) -> None:
        self.calls.append("close")


class Logs(Backend):
    """A guest that ran every step to its end, and the requests it was given."""

    name = "logs"

    def __init__(self):
        super().__init__()
        self.requests, self.budgets = [], []

    def run(self, req, *, watchdog=None, timeout=None) -> GuestRun:
        self.requests.append(req)
        self.budgets.append(watchdog.budgets["run"])
        console, output = req.run_dir / "console.log", req.run_dir / "guest.log"
        console.write_text("[    1.0] harness: step run begin 1.0\n")
        output.write_text("@@harness guest up 1.0 kernel 6.1.192\n@@harness step run begin 1.0\n"
                          "@@harness step run end 0 2.0\n@@harness done\n")
        return GuestRun(0, 0.2, console, output)


def test_the_session_runs_a_kind_it_was_never_told_about(tmp_path, monkeypatch):
    registry: Registry[type[RunKind]] = Registry("spec mode")
    registry.add("suite", Suite)
    monkeypatch.setattr(kinds, "KINDS", registry)
    spec = replace(specs.load("ext4_inline"), mode="suite")
    guests, seen = Logs(), []
    with ReproSession(spec, KERNEL, RunOptions(runs=2, results=tmp_path), accel=Accel("tcg"), backend=guests,
                      progress=seen.append) as session:
        first, second = session.run(), session.run(seconds=5)
    kind = session.kind
    assert kind.calls == ["prepare True logs", "stage run-01 None", "read run-01 True", "stage run-02 5",
                          "read run-02 True", "close"]
    assert "2 suite tests" in seen
    assert [r.plan.run_argv for r in guests.requests] == [("suite", "t1", "t2")] * 2
    assert guests.budgets == [77, 77]  # the watchdog gives the run step the budget the kind's plan says
    assert first.outcome is Outcome.TEST_FAILED and first.verdict.title == "suite: t1 failed"
    record = json.loads((first.folder / "result.json").read_text())
    assert record["suite"] == {"t1": "fail", "t2": "pass"} and record["staged"] == "run-01"
    assert second.kind_record == {"staged": "run-02", "suite": {"t1": "fail", "t2": "pass"}}
    assert json.loads((session.folder / "result.json").read_text())["status"] == "done"


# --- fstests as a kind: staged and read without a guest -----------------------------------------


def _prepared(tmp_path: Path) -> fguest.Prepared:
    expected = tuple((DATA / "xfs-xunit" / "expected.txt").read_text().split())
    build = Build(root=tmp_path / "build", key="k1", revision="r", toolchain="gcc", source="fstests", seconds=0.0)
    return fguest.Prepared(config.Selection(fs="xfs", tests=expected), build, config.profile("xfs"), expected)


def test_fstests_stages_its_two_disks_and_check_then_reads_every_test(tmp_path, monkeypatch):
    image = tmp_path / "test-base.img"
    image.write_bytes(b"\0" * 4096)
    monkeypatch.setattr(disks.images, "build", lambda recipe, progress=None: image)  # no mkfs.xfs here
    spec = specs.load(str(ROOT / "reproducers" / "xfs_mkwrite_delalloc" / "fstests"))
    kind = Fstests(spec)
    kind.prepared = _prepared(tmp_path)
    run_dir = tmp_path / "run-01"
    run_dir.mkdir()
    ctx = Context(spec, KERNEL, RunOptions(), Accel("tcg"), backend("vng"), tmp_path, 900, lambda msg: None)

    staged = kind.stage(ctx, run_dir)
    req = staged.request
    assert [d.serial for d in req.disks] == [config.TEST_SERIAL, config.SCRATCH_SERIAL]
    assert req.plan.run_argv == ("bash", str(run_dir / fguest.SCRIPT)) and req.plan.run_timeout == 900
    assert req.preload == ("fs-xfs",) and (run_dir / "local.config").exists()
    assert "--exact-order" in (run_dir / fguest.SCRIPT).read_text()

    shutil.copytree(DATA / "xfs-xunit" / "results", run_dir / fguest.RESULTS)
    text = (DATA / "xfs-xunit" / "check.out").read_text()
    console = (DATA / "xfs-xunit" / "console.log").read_text()
    reading = kind.read(ctx, run_dir, staged, GuestOutput.parse(text), text, console)
    assert reading.record["fstests"]["counts"] == {"pass": 36, "fail": 1, "notrun": 2, "unfinished": 0,
                                                   "unreached": 0}
    verdict = reading.tests.verdict(Evidence(console=console, output=text))
    assert verdict.outcome is Outcome.TEST_FAILED and verdict.title == "fstests: generic/263 failed"


# --- a run that never ran the reproducer --------------------------------------------------------


def test_is_error_is_the_one_spelling_of_a_run_that_never_ran():
    assert {o for o in Outcome if o.is_error} == {Outcome.BOOT_FAILURE, Outcome.INFRA_ERROR, Outcome.BUILD_ERROR}
    assert not any(o.is_error and o.is_bug for o in Outcome)
    assert db.ERROR_VERDICTS == ("BOOT_FAILURE", "INFRA_ERROR", "BUILD_ERROR")
    assert db.CellResult("c", "k", "r", verdict="BOOT_FAILURE").is_error
    assert not db.CellResult("c", "k", "r", verdict="FIXED").is_error  # a proof's verdict is no Outcome


def test_a_summary_names_an_error_before_clean_and_a_bug_before_an_error(tmp_path):
    def summary(*outcomes: Outcome) -> Summary:
        runs = tuple(RunResult(i, tmp_path, Verdict(o), (), 1.0, None) for i, o in enumerate(outcomes, 1))
        return Summary("r", KERNEL, "tcg", "", tmp_path, runs, None)

    assert summary(Outcome.CLEAN, Outcome.INFRA_ERROR, Outcome.BOOT_FAILURE).verdict is Outcome.BOOT_FAILURE
    assert summary(Outcome.BUILD_ERROR, Outcome.HANG).verdict is Outcome.HANG
    assert summary(Outcome.CLEAN).verdict is Outcome.CLEAN


def test_vmcore_needs_a_backend_that_dumps_memory_and_reaches_the_request(tmp_path, monkeypatch):
    registry: Registry[type[RunKind]] = Registry("spec mode")
    registry.add("suite", Suite)
    monkeypatch.setattr(kinds, "KINDS", registry)
    spec = replace(specs.load("ext4_inline"), mode="suite")
    with pytest.raises(GuestError) as exc:
        ReproSession(spec, KERNEL, RunOptions(runs=1, results=tmp_path, vmcore=True), accel=Accel("tcg"),
                     backend=Logs()).__enter__()
    assert str(exc.value) == ("--vmcore needs a backend that can dump the guest's memory: logs cannot (given by the "
                              "caller); use --backend snapshot")
    assert backend("snapshot").dumps_memory and not backend("vng").dumps_memory

    class Dumps(Logs):
        dumps_memory = True

    for options, guest in ((RunOptions(runs=1, results=tmp_path, vmcore=True), spec.guest),
                           (RunOptions(runs=1, results=tmp_path), replace(spec.guest, vmcore=True)),
                           (RunOptions(runs=1, results=tmp_path), spec.guest)):
        guests = Dumps()
        with ReproSession(replace(spec, guest=guest), KERNEL, options, accel=Accel("tcg"), backend=guests) as s:
            s.run()
        assert guests.requests[0].vmcore is (options.vmcore or guest.vmcore)


def test_the_spec_key_guest_vmcore():
    data = {"name": "x", "source": "repro.c", "image": "ext4-inline-fullbitmap"}
    assert specs.parse(data, ROOT / "reproducers/ext4_inline", "x").guest.vmcore is False
    assert specs.parse({**data, "guest": {"vmcore": True}}, ROOT / "reproducers/ext4_inline", "x").guest.vmcore is True
    with pytest.raises(SpecError, match="vmcore"):
        specs.parse({**data, "guest": {"vmcore": "yes"}}, ROOT / "reproducers/ext4_inline", "x")


def test_a_trial_of_a_c_file_that_runs_until_stopped_ends_at_its_timeout_by_plan(tmp_path):
    from harness.repro.reproducer import guest_plan  # only this test plans a run by hand

    timed, endless = specs.load("ext4_inline"), specs.load("xfs_xlog_cksum_oob")
    assert timed.timed_race and not endless.timed_race
    src = tmp_path / "repro.c"
    assert not guest_plan(timed, tmp_path, src, None, 60, 0.9).timeout_ends_trial  # the race stops itself at D
    assert guest_plan(endless, tmp_path, src, None, 60, 4.75).timeout_ends_trial  # the run step's limit is D
    assert not guest_plan(endless, tmp_path, src, None, 60).timeout_ends_trial  # a full run: a timeout is a timeout
