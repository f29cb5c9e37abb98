"""Fault injection from specs: parsing, kernel checks, and the guest lines run under bash."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.guest.protocol import GuestOutput, GuestPlan, VirtioDisk, script
from harness.kernels import Kernel
from harness.repro import faults

GOOD = {"fail_usercopy": {"probability": 100, "interval": 1, "times": -1}, "tasks": ["writer*"]}


def test_parse_defaults_and_order():
    f = faults.parse(GOOD, "x.yaml: faults")
    assert f.tasks == ("writer*",) and f.fail_nth is None
    (inj,) = f.injectors
    assert (inj.name, inj.probability, inj.interval, inj.times, inj.verbose, inj.task_filter) == (
        "fail_usercopy", 100, 1, -1, 0, True)
    assert inj.settings()[-1] == ("probability", "100")  # armed last
    assert ("task-filter", "Y") in inj.settings()
    assert f.configs == ("FAULT_INJECTION", "FAULT_INJECTION_DEBUG_FS", "FAULT_INJECTION_USERCOPY")
    assert f.to_dict()["injectors"]["fail_usercopy"]["times"] == "-1"


def test_parse_none_and_extras():
    assert faults.parse(None, "w") is None and faults.parse({}, "w") is None
    f = faults.parse({"failslab": {"ignore-gfp-wait": False, "probability": 5}, "fail_nth": 2, "tasks": "w?"}, "w")
    (inj,) = f.injectors
    assert inj.knobs == (("ignore-gfp-wait", "N"),) and inj.probability == 5
    assert f.fail_nth == 2 and f.tasks == ("w?",)
    assert faults.parse({"fail_usercopy": {"task_filter": False}}, "w").tasks == ()  # global injection


@pytest.mark.parametrize(
    "data, message",
    [
        ({"fail_usercopy": {"probability": 101}, "tasks": ["w"]}, "probability: 101 out of range"),
        ({"fail_usercopy": {"interval": 0}, "tasks": ["w"]}, "interval: 0 out of range"),
        ({"fail_usercopy": {"times": -2}, "tasks": ["w"]}, "times: -2 out of range"),
        ({"fail_usercopy": {"probabilty": 1}, "tasks": ["w"]}, "unknown key(s) probabilty"),
        ({"fail_usercopy": {}}, "tasks: required"),
        ({"fail_usercopy": {}, "tasks": ["writer; reboot"]}, "a comm glob"),
        ({"fail_usercopy": {}, "tasks": ["w"], "fail_nth": 0}, "fail_nth: 0"),
        ({"tasks": ["w"]}, "names no fault to inject"),
        ({"fail_usercopy": {"ignore-gfp-wait": 1}, "tasks": ["w"]}, "unknown key(s) ignore-gfp-wait"),
        ({"failslab": {"ignore-gfp-wait": "a b"}, "tasks": ["w"]}, "plain word"),
        ({"fail_usercopy": "on", "tasks": ["w"]}, "expected a mapping of knobs"),
        (["fail_usercopy"], "expected a mapping"),
        ({"fail_usercopy": {"verbose": True}, "tasks": ["w"]}, "verbose: expected int"),
    ],
)
def test_parse_errors_are_one_line(data, message):
    with pytest.raises(SpecError) as err:
        faults.parse(data, "r/repro.yaml: faults")
    text = err.value.one_line()
    assert message in text and text.startswith("r/repro.yaml: faults") and "\n" not in text


def _kernel(tmp_path: Path, config: str | None) -> Kernel:
    cfg = None
    if config is not None:
        cfg = tmp_path / "config"
        cfg.write_text(config)
    return Kernel(name="debian-src:6.1.192/fixed", release="6.1.192", version="6.1.192", image=tmp_path / "bz",
                  config=cfg)


def test_kernel_support_from_its_config(tmp_path):
    f = faults.parse(GOOD, "w")
    full = "CONFIG_FAULT_INJECTION=y\nCONFIG_FAULT_INJECTION_DEBUG_FS=y\nCONFIG_FAULT_INJECTION_USERCOPY=y\n"
    assert faults.unsupported(f, _kernel(tmp_path, full)) is None
    assert faults.unsupported(None, _kernel(tmp_path, "")) is None
    assert faults.unsupported(f, _kernel(tmp_path, None)) is None  # unknown config: the guest step decides
    why = faults.unsupported(f, _kernel(tmp_path, "CONFIG_FAULT_INJECTION=y\n# CONFIG_FAULT_INJECTION_USERCOPY is not set\n"))
    assert "CONFIG_FAULT_INJECTION_DEBUG_FS, CONFIG_FAULT_INJECTION_USERCOPY" in why and "'faults'" in why
    with pytest.raises(SpecError, match="xfs: faults: kernel debian-src:6.1.192/fixed lacks"):
        faults.check_kernel(f, _kernel(tmp_path, "CONFIG_FAULT_INJECTION=y\n"), "xfs: faults")


# --- the guest lines, run for real under bash on a fake /proc and debugfs -----------------------


def _fake_guest(tmp_path: Path, *, with_attr: bool = True) -> tuple[Path, Path]:
    debugfs, proc = tmp_path / "debug", tmp_path / "proc"
    attr = debugfs / "fail_usercopy"
    if with_attr:
        attr.mkdir(parents=True)
        for knob, value in (("probability", "0"), ("interval", "1"), ("times", "1"), ("space", "0"),
                            ("verbose", "2"), ("task-filter", "N")):
            (attr / knob).write_text(value + "\n")
    else:
        debugfs.mkdir()
    proc.mkdir()
    (proc / "mounts").write_text(f"debugfs {debugfs} debugfs rw,relatime 0 0\n")
    (proc / "self").mkdir()
    (proc / "self" / "make-it-fail").write_text("0\n")
    for pid, tid, comm, mark in ((100, 100, "harness-repro", 0), (100, 101, "writer0", 0),
                                 (100, 102, "storer", 0), (200, 200, "writer", 1)):
        task = proc / str(pid) / "task" / str(tid)
        task.mkdir(parents=True)
        (task / "comm").write_text(comm + "\n")
        (task / "make-it-fail").write_text(f"{mark}\n")
        (task / "fail-nth").write_text("0\n")
    return debugfs, proc


def _helpers() -> str:
    """up(), mark() and step() from the real guest script."""
    plan = GuestPlan("t", "xfs", "", "/r.c", (), (), 10, None)
    return script(plan, VirtioDisk("s")).split("setup() {")[0]


def _run(tmp_path, fault, debugfs, proc, middle="sleep 0.4") -> subprocess.CompletedProcess:
    body = "\n".join([
        _helpers(),
        *faults.setup_lines(fault, debugfs=str(debugfs), proc=str(proc)),
        middle,
        *faults.teardown_lines(fault, debugfs=str(debugfs)),
        "echo END",
    ])
    return subprocess.run(["bash", "-c", body], capture_output=True, text=True, timeout=30, cwd=tmp_path)


def test_guest_lines_configure_mark_and_disarm(tmp_path):
    fault = faults.parse({**GOOD, "fail_nth": 3}, "w")
    debugfs, proc = _fake_guest(tmp_path)
    attr = debugfs / "fail_usercopy"
    # the reproducer's run step, seen from inside: is the knob armed while it runs?
    done = _run(tmp_path, fault, debugfs, proc, middle=f"sleep 0.4; echo \"armed=$(cat {attr}/probability)\"")
    out = done.stdout
    assert "END" in out, done.stderr
    (step,) = [s for s in GuestOutput.parse(out).steps if s.name == faults.STEP]
    assert step.rc == 0
    assert "armed=100" in out
    assert "harness-faults: fail_usercopy interval=1 times=-1 space=0 verbose=0 task-filter=Y probability=100" in out
    task = proc / "100" / "task"
    assert (task / "101" / "make-it-fail").read_text().strip() == "1"  # writer0
    assert (task / "101" / "fail-nth").read_text().strip() == "3"
    assert (task / "100" / "make-it-fail").read_text().strip() == "0"  # the main thread is left alone
    assert (task / "102" / "make-it-fail").read_text().strip() == "0"
    assert "marked 100/task/101 (writer0)" in out
    assert "200/task/200" not in out  # already marked (inherited): not touched
    assert (attr / "probability").read_text().strip() == "0"  # disarmed after the run
    assert "harness-faults: fail_usercopy off; times left -1 (set -1)" in out


def test_marker_catches_tasks_born_during_the_run(tmp_path):
    fault = faults.parse(GOOD, "w")
    debugfs, proc = _fake_guest(tmp_path)
    late = proc / "300" / "task" / "301"
    born = f"sleep 0.2; mkdir -p {late}; echo writer7 > {late}/comm; echo 0 > {late}/make-it-fail; sleep 0.6"
    t0 = time.monotonic()
    out = _run(tmp_path, fault, debugfs, proc, middle=born).stdout
    assert (late / "make-it-fail").read_text().strip() == "1", out
    assert "marked 300/task/301 (writer7)" in out
    assert time.monotonic() - t0 < 10  # the marker was stopped


def test_missing_attribute_fails_the_faults_step_and_stops(tmp_path):
    fault = faults.parse(GOOD, "w")
    debugfs, proc = _fake_guest(tmp_path, with_attr=False)
    out = _run(tmp_path, fault, debugfs, proc).stdout
    (step,) = [s for s in GuestOutput.parse(out).steps if s.name == faults.STEP]
    assert step.rc == 1
    assert "fail_usercopy missing: kernel without CONFIG_FAULT_INJECTION_USERCOPY" in out
    assert "END" not in out  # `|| exit 0`: the reproducer never runs half-configured


def test_no_faults_no_lines():
    assert faults.setup_lines(None) == () and faults.teardown_lines(None) == ()


def test_lines_fit_the_guest_script():
    fault = faults.parse(GOOD, "w")
    plan = GuestPlan("t", "xfs", "", "/r.c", (), ("{mnt}",), 60, ("xfs_repair", "-n", "{dev}"),
                     pre_run=faults.setup_lines(fault), post_run=faults.teardown_lines(fault))
    text = script(plan, VirtioDisk("s"))
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)
    assert text.index("step faults 0 harness_faults_setup") < text.index("step run ") < text.index(
        "harness-faults: fail_usercopy off")
    assert "/sys/kernel/debug/fail_usercopy" in text
