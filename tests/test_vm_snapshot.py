"""Integration: the snapshot backend on a real Debian kernel under QEMU.

One boot into the generated initramfs, one save, then every run restores
that state with its own disk and runs the real guest steps over SSH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.bench.figures import trivial_spec

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parent.parent


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=1200, env=os.environ.copy())


def _run_records(done: subprocess.CompletedProcess, n: int) -> tuple[dict, Path, list[dict]]:
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout)
    folder = Path(result["results"][0]["folder"]).parent
    return result, folder, [json.loads((folder / f"run-0{i}" / "result.json").read_text()) for i in range(1, n + 1)]


def test_snapshot_restores_a_fresh_kernel_for_every_oops(vm, tmp_path):
    done = harness("repro", "ext4_inline", "-k", "debian:6.1.0-47", "--backend", "snapshot", "--accel", "tcg",
                   "--runs", "3", "--json", "--results", str(tmp_path))
    result, folder, runs = _run_records(done, 3)
    assert done.returncode == 0, done.stderr[-3000:]
    assert result["hits"] == 3 and result["verdict"] == "REPRODUCED", result
    assert len(list((folder / "guest").glob("snapshot-*"))) == 1  # one boot for three crashes
    for gone in ("state", "initramfs.cpio"):  # the saved memory and the host key go with the session
        assert not (folder / "guest" / "snapshot-01" / gone).exists()
    assert runs[0]["guest"]["booted"] and "booted" not in runs[1]["guest"]
    for i, r in enumerate(runs, 1):
        assert r["verdict"] == "REPRODUCED" and r["time_to_hit"] is not None
        assert r["guest"]["restore_seconds"] > 0
        assert "the guest went down" in r["guest"]["replace"]
        console = (folder / f"run-0{i}" / "console.log").read_text()
        marks = {ln.split("harness: run ")[1].split()[0] for ln in console.splitlines() if "harness: run run-" in ln}
        assert len(marks) == 1 and marks.pop().startswith(f"run-0{i}-")  # its own guest, its own console
        assert "kernel BUG at fs/ext4/inline.c" in console
        assert "Linux version" not in console  # restored, not booted
    assert "kernel BUG" in runs[1]["guest"]["reset_after"]  # what ended the guest before it
    # runs 2 and 3 took a guest restored while the run before them ran: its console and log moved into the
    # run's folder, its disk became the run's disk.img; the one restored for a 4th run left no trace
    assert "restored_ahead" not in runs[0]["guest"]
    for i in (2, 3):
        assert runs[i - 1]["guest"]["restored_ahead"] and runs[i - 1]["guest"]["phases"]["ahead_connect"] > 0
        assert "restored while the previous run ran" in (folder / f"run-0{i}" / "qemu.cmd").read_text()
        assert (folder / f"run-0{i}" / "qemu.log").exists()
    assert not list((folder / "guest").glob("spare-*"))
    log = (folder / "session.log").read_text()
    assert "save a post-boot snapshot" in log and log.count("fresh guest from snapshot 1") == 3
    assert "@@harness session run-02: fresh guest from snapshot 1" in (folder / "run-02" / "guest.log").read_text()


def test_snapshot_runs_that_do_not_crash(vm, tmp_path):
    repro = trivial_spec(tmp_path / "bench_trivial")
    done = harness("repro", str(repro), "-k", "debian:6.1.0-47", "--backend", "snapshot", "--accel", "tcg",
                   "--runs", "2", "--json", "--results", str(tmp_path / "results"))
    result, folder, runs = _run_records(done, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["verdict"] for r in result["results"]] == ["CLEAN"] * 2, result
    for i, r in enumerate(runs, 1):
        assert r["guest"]["replace"] is None and r["guest"]["taint_after"] == "-"
        assert "read back: harness bench" in (folder / f"run-0{i}" / "guest.log").read_text()
    assert not (folder / "run-01" / "disk.img").exists()  # CLEAN: the image copy goes, as with vng
