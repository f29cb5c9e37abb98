"""The two disks an fstests guest gets, made on the host for one run.

TEST_DEV: the profile's image recipe (mkfs'd once on the host, cached like every harness
image) copied sparse into the run folder.  SCRATCH_DEV: a blank sparse file (fstests
mkfs's it itself).  The run glue attaches them as virtio-blk disks with these serials.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import images
from harness.fstests.config import SCRATCH_SERIAL, TEST_SERIAL, Profile, test_image


@dataclass(frozen=True)
class FstestsDisk:
    path: Path
    serial: str  # the guest finds the disk by /sys/block/vd*/serial


def make_disks(prof: Profile, run_dir: Path, *, progress=None) -> tuple[FstestsDisk, FstestsDisk]:
    """TEST_DEV and SCRATCH_DEV for one run, in ``run_dir`` (test.img, scratch.img)."""
    cached = images.build(test_image(prof), progress=progress)
    test = images.fresh_copy(cached, run_dir / "test.img")
    scratch = run_dir / "scratch.img"
    scratch.unlink(missing_ok=True)
    with open(scratch, "wb") as fh:
        fh.truncate(prof.scratch_size)
    return FstestsDisk(test, TEST_SERIAL), FstestsDisk(scratch, SCRATCH_SERIAL)
