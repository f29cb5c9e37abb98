"""Integration: fstests tests run by the harness in real guests (issue 17): one on a Debian kernel, one on the lean base.

The fstests tree is ../shared/fstests' snapshot ($HARNESS_FSTESTS), built once on the host into the cache.
generic/184 takes ~30 s under TCG.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parent.parent
TARBALL = next(iter(sorted((ROOT.parent / "shared" / "fstests").glob("fstests-*.tar.gz"))), None)


@pytest.fixture
def fstests_tree():
    tree = os.environ.get("HARNESS_FSTESTS") or (str(TARBALL) if TARBALL else None)
    if not tree:
        if os.environ.get("CI"):
            pytest.fail("no fstests tree: ../shared/fstests/fstests-*.tar.gz or $HARNESS_FSTESTS")
        pytest.skip("no fstests tree ($HARNESS_FSTESTS)")
    return tree


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
