"""Integration: published syzkaller reproducers, unmodified, on Debian's 6.1.0-47 (issue 19).

01 needs syzbot's USB raw-gadget and 802.15.4 setup: it exits 1 at once, and the verdict says what it lacked.
04 mounts its ext3 image, wants fault injection (Debian's kernel has none) and exits 1, leaving its mounts
under its working directory: the harness's later steps (cleanup, sync) still run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import require

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parent.parent


def repro(name: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    source = require("syzkaller-repros") / name
    done = subprocess.run([sys.executable, "-m", "harness", "repro", str(source), "-k", "debian:6.1.0-47",
                           "--timeout", "120", "--json", "--results", str(tmp_path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert done.stdout.strip(), done.stderr[-3000:]
    return done, json.loads(done.stdout.strip().splitlines()[-1])


def test_a_reproducer_that_needs_syzbots_usb_setup_says_so(vm, tmp_path):
    done, result = repro("01-ext4-writepages-inline-v6.1.c", tmp_path)
    assert done.returncode == 7, done.stderr[-2000:]  # INFRA_ERROR: it tested nothing
    (run,) = result["results"]
    assert run["verdict"] == "INFRA_ERROR" and "USB raw-gadget" in run["detail"], run
    assert result["mode"] == "syzkaller" and result["environment"]["loop_devices"] >= 8
    steps = {s["name"]: s["rc"] for s in run["steps"]}
    assert steps["environment"] == 0 and steps["run"] == 1
    log = (Path(run["folder"]) / "guest.log").read_text()
    assert "harness-syz: loop0..loop7 and loop-control ready" in log


def test_leftover_mounts_do_not_break_the_harness_steps(vm, tmp_path):
    done, result = repro("04-ext3-swap-boot-lock-two-nondirs.c", tmp_path)
    (run,) = result["results"]
    assert run["verdict"] == "INFRA_ERROR" and "fault injection" in run["detail"], run
    steps = {s["name"]: s["rc"] for s in run["steps"]}
    assert steps["run"] == 1 and steps["syz-cleanup"] == 0 and steps["sync"] == 0, steps
    log = (Path(run["folder"]) / "guest.log").read_text()
    assert "harness-syz: unmounting" in log and "harness-syz: cleanup done" in log  # its mounts under the scratch went
