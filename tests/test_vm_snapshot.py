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


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=1200, env={**os.environ, **(env or {})})


def _run_records(done: subprocess.CompletedProcess, n: int) -> tuple[dict, Path, list[dict]]:
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout)
    folder = Path(result["results"][0]["folder"]).parent
    return result, folder, [json.loads((folder / f"run-0{i}" / "result.json").read_text()) for i in range(1, n + 1)]


def test_snapshot_restores_a_fresh_kernel_for_every_oops(vm, tmp_path):
    store = {"HARNESS_SNAPSHOT_CACHE": str(tmp_path / "snapshots")}  # a store of its own: the first run boots
    done = harness("repro", "ext4_inline", "-k", "debian:6.1.0-47", "--backend", "snapshot", "--accel", "tcg",
                   "--runs", "3", "--json", "--results", str(tmp_path / "first"), env=store)
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
    assert "save a post-boot snapshot" in log and log.count("fresh guest from saved guest ") == 3
    assert "@@harness session run-02: fresh guest from saved guest " in (folder / "run-02" / "guest.log").read_text()
    key = runs[0]["guest"]["snapshot_key"]
    assert [r["guest"]["boot"] for r in runs] == [1, 1, 1] and {r["guest"]["snapshot_key"] for r in runs} == {key}
    assert (tmp_path / "snapshots" / key / "boot-1" / "state").exists()  # kept for the next session

    # a second session on the same kernel starts with a restore, not a boot; with boots=2 its second run
    # boots the second saved guest, and its third is restored ahead from the first again
    done = harness("repro", "ext4_inline", "-k", "debian:6.1.0-47", "--backend", "snapshot:boots=2", "--accel",
                   "tcg", "--runs", "3", "--json", "--results", str(tmp_path / "second"), env=store)
    result, folder, runs = _run_records(done, 3)
    assert done.returncode == 0 and result["hits"] == 3, done.stderr[-3000:]
    log = (folder / "session.log").read_text()
    assert f"restored the saved guest {key}/boot-1 (made " in log
    assert "booted" not in runs[0]["guest"] and runs[1]["guest"]["booted"]
    assert [r["guest"]["boot"] for r in runs] == [1, 2, 1] and runs[2]["guest"]["restored_ahead"]
    assert len(list((folder / "guest").glob("snapshot-*"))) == 1  # the second boot only
    assert (tmp_path / "snapshots" / key / "boot-2" / "state").exists()


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
