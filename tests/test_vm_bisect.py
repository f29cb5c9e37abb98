"""Integration: a tiny real version-list bisection over Debian 6.1 images (guests, no builds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.repro import spec as specs

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parent.parent
IMAGES = ["debian:6.1.0-54", "debian:6.1.0-55", "debian:6.1.0-56"]


def bisect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.bisect", "bisect", "ext4_inline", "--runs", "1", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=1800)


def steps(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "steps.jsonl").read_text().splitlines()]


def test_version_list_bisect_over_debian_61(vm, tmp_path):
    """Every 6.1 image reproduces: trusting the ends, the middle one is the first 'bad'; then resume; then the
    ends check catches that the 'fixed' end reproduces too."""
    folder = tmp_path / "b1"
    done = bisect("--good", IMAGES[0], "--bad", IMAGES[2], "--trust-ends", "--rate", "0.9", "--json",
                  "--folder", str(folder))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["status"] == "found" and result["first"] == IMAGES[1] and result["last_old"] == IMAGES[0]
    assert result["confidence"] == 1.0  # no clean verdict to doubt
    (rec,) = steps(folder)
    assert rec["candidate"] == IMAGES[1] and rec["verdict"] == "reproduces" and rec["term"] == "bad"
    assert rec["titles"][0] in specs.load("ext4_inline").expect.titles
    assert rec["kernel"] == IMAGES[1] and len(rec["runs"]) == 1 and rec["seconds"] > 0
    run_folder = Path(rec["runs"][0]["folder"])
    assert run_folder.is_relative_to(folder) and (run_folder / "console.log").exists()
    assert (folder / "report.txt").read_text().startswith(f"first bad kernel: {IMAGES[1]}")

    # the same command again: the finished step is reused, no guest boots
    again = bisect("--good", IMAGES[0], "--bad", IMAGES[2], "--trust-ends", "--rate", "0.9", "--json",
                   "--folder", str(folder))
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)
    assert result["first"] == IMAGES[1] and result["steps_run"] == 0 and len(steps(folder)) == 1

    # looking for a fix between two images that both reproduce: the ends check says so, exit 1
    folder2 = tmp_path / "b2"
    done = bisect("--good", IMAGES[1], "--bad", IMAGES[2], "--fix", "--json", "--folder", str(folder2))
    assert done.returncode == 1, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["status"] == "ends" and "reproduces too" in result["message"]
    recs = steps(folder2)
    assert [(r["role"], r["term"]) for r in recs] == [("repro-end", "broken"), ("clean-end", "broken")]
