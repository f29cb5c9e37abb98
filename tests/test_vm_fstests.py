"""Integration: fstests tests run by the harness in real guests (issue 17): one on a Debian kernel, one on the lean base.

The fstests tree is ../shared/fstests' snapshot (or $HARNESS_FSTESTS: a checkout, a tarball or a folder holding one), built once on the host into the cache.
generic/184 takes ~30 s under TCG.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from shared_data import SETS, require
from shared_data import fstests_tree as fstests_tree_at

from harness.paths import fetched_fstests

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fstests_tree():
    if not SETS["fstests"].here() and fetched_fstests() is not None:  # a clone after `harness setup --fstests`
        return str(fetched_fstests().resolve())
    return str(fstests_tree_at(require("fstests")))


def fstests(*args: str, tree: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "fstests", *args, "--fstests", tree, "--json"],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)


def _one_test(done: subprocess.CompletedProcess, name: str) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    (run,) = result["results"]
    assert result["verdict"] == "CLEAN" and result["backend"] == "vng", result
    (test,) = run["fstests"]["tests"]
    assert test["name"] == name and test["status"] == "pass", run["fstests"]
    folder = Path(run["folder"])
    assert (folder / "local.config").read_text().count("export FSTYP=") == 1
    assert "--exact-order" in (folder / "fstests.sh").read_text()
    assert (folder / "fstests").is_dir()  # RESULT_BASE: in the run folder, the guest's one writable place
    assert not (folder / "test.img").exists() and not (folder / "scratch.img").exists()  # a pass keeps no image
    return run


def test_an_fstests_test_on_a_debian_kernel(vm, fstests_tree, tmp_path):
    run = _one_test(fstests("generic/184", "--fs", "xfs", "-k", "debian:6.1", "--results", str(tmp_path),
                            tree=fstests_tree), "generic/184")
    assert "step compile skipped" in (Path(run["folder"]) / "guest.log").read_text()


@pytest.mark.build
@pytest.mark.ci
def test_an_fstests_test_on_the_lean_base(vm, fstests_tree, tmp_path):
    _one_test(fstests("generic/184", "--fs", "ext4", "-k", "debian-src:6.1.192", "--results", str(tmp_path),
                      tree=fstests_tree), "generic/184")
