"""Integration: ext2_iomap_blkseq on its source-built kernels, one run each.

The three variants of the spec go through the build cache (one lean 6.1.192
base; the patched variants rebuild fs/ext2 and relink), plus the conversion
patch alone in the reproducer's integrity mode.  Accelerator: $HARNESS_ACCEL
or TCG (these hosts' KVM hangs stock kernels).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from harness.guest.accel import choose_accel
from harness.options import Accel, RunOptions
from harness.repro import spec as specs
from harness.repro.run import run_repro
from harness.repro.spec import VariantSpec
from harness.verdict import Outcome

pytestmark = [pytest.mark.vm, pytest.mark.build, pytest.mark.ci]  # CI: shares the lean base build

SPEC = "ext2_iomap_blkseq"


def _accel(kernel) -> str:
    return choose_accel(os.environ.get("HARNESS_ACCEL") or "tcg", kernel)[0]


def _run(spec, variant: VariantSpec, tmp_path: Path):
    kernel = variant.recipe().build()
    summary = run_repro(spec, kernel, RunOptions(runs=1, cmdline=variant.cmdline, results=tmp_path), accel=Accel(_accel(kernel)))
    (run,) = summary.runs
    guest_log = (run.folder / "guest.log").read_text(errors="replace")
    return summary, run, guest_log


def test_unfixed_loses_data(vm, tmp_path):
    spec = specs.load(SPEC)
    summary, run, log = _run(spec, spec.variant("ext2-iomap"), tmp_path)
    assert run.outcome in (Outcome.DATA_LOSS, Outcome.FS_CORRUPT), (run.verdict, log[-3000:])
    assert summary.met is True
    if run.outcome is Outcome.DATA_LOSS:
        assert run.verdict.time_to_hit is not None
        assert any(" holds " in line for line in run.verdict.lost), run.verdict.lost
        assert (run.folder / "disk.img").exists()  # kept as the evidence


@pytest.mark.parametrize("variant", ["ext2-iomap-blkseq", "stock"])
def test_clean(vm, tmp_path, variant):
    spec = specs.load(SPEC)
    summary, run, log = _run(spec, spec.variant(variant), tmp_path)
    assert run.outcome is Outcome.CLEAN, (run.verdict, log[-3000:])
    assert summary.met is True
    stats = [line for line in log.splitlines() if line.startswith("@@stats ")]
    assert stats and int(stats[0].split("rounds=")[1].split()[0]) >= 3, stats
    if variant == "ext2-iomap-blkseq":
        assert "map_delay_count=0" not in stats[0]  # the debug delay was really taken


def test_conversion_alone_passes_integrity(vm, tmp_path):
    """Patch 0001 alone (no fix, no debug knob): the data-integrity mode, then e2fsck -fn."""
    spec = specs.load(SPEC)
    integrity = dataclasses.replace(spec, args=("{mnt}", "-m", "integrity", "-d", "{dev}"), timeout=300)
    conversion = VariantSpec(
        name="conversion",
        source="debian-src:6.1.192",
        patches=(spec.variant("ext2-iomap-blkseq").patches[0],),
        kconfig=spec.variant("ext2-iomap-blkseq").kconfig,
    )
    summary, run, log = _run(integrity, conversion, tmp_path)
    assert run.outcome is Outcome.CLEAN, (run.verdict, log[-3000:])
    checked = [line for line in log.splitlines() if line.startswith("integrity: ")]
    assert len(checked) >= 3 and all(line.endswith(": ok") for line in checked), checked
    assert [s.name for s in run.steps][-1] == "check" and run.steps[-1].rc == 0  # e2fsck -fn clean
