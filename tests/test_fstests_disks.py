"""fstests disks: TEST_DEV from a cached host-made image, SCRATCH_DEV blank; both sparse."""

from __future__ import annotations

import subprocess

import pytest

from harness.fstests import config, disks


@pytest.mark.parametrize("fs", config.FILESYSTEMS)
def test_make_disks(tmp_path, fs):
    prof = config.profile(fs)
    test, scratch = disks.make_disks(prof, tmp_path / "run")
    assert (test.serial, scratch.serial) == ("harness-test", "harness-scratch")
    assert test.path.stat().st_size == scratch.path.stat().st_size == 5 << 30
    assert test.path.stat().st_blocks * 512 < 400 << 20  # sparse copies
    assert scratch.path.stat().st_blocks == 0
    found = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", str(test.path)], capture_output=True, text=True).stdout
    assert found.strip() == fs
