"""Integration: boot a real Debian kernel under QEMU and run ext4_inline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.options import Accel, RunOptions
from harness.repro import spec as specs

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parent.parent


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd, timeout=900
    )


def test_ext4_inline_reproduces_on_debian_61(vm, tmp_path):
    """README command one, on the default kernel: REPRODUCED with the BUG's title."""
    done = harness("repro", "ext4_inline", "--json", "--results", str(tmp_path), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["verdict"] == "REPRODUCED", result
    assert result["title"] in specs.load("ext4_inline").expect.titles
    assert result["kernel"]["name"].startswith("debian:6.1.0-")
    assert result["accel"] in ("kvm", "tcg") and result["accel_reason"]
    assert result["hits"] == 1 and result["expectation_met"] is True
    (run,) = result["results"]
    assert run["time_to_hit"] is not None and 0 <= run["time_to_hit"] < 20
    assert [s["name"] for s in run["steps"]][:5] == ["setup", "device", "mount", "compile", "run"]
    folder = Path(run["folder"])
    console = (folder / "console.log").read_text()
    assert "kernel BUG at fs/ext4/inline.c" in console
    assert "@@harness" not in console  # the guest's own output stays out of the console log
    assert "racing page_mkwrite" in (folder / "guest.log").read_text()
    assert json.loads((folder / "result.json").read_text())["status"] == "done"
    assert json.loads((folder.parent / "result.json").read_text())["status"] == "done"
    assert done.stderr.strip().splitlines()[-1].startswith("REPRODUCED: kernel BUG in ext4_write_inline_data")


def test_missing_compiler_in_guest_is_infra_error(vm, tmp_path):
    repro = tmp_path / "no_cc"
    shutil.copytree(ROOT / "reproducers" / "ext4_inline", repro)
    spec = (repro / "repro.yaml").read_text().replace("source: repro.c", "source: repro.c\ncompiler: no-such-gcc")
    (repro / "repro.yaml").write_text(spec)
    done = harness("repro", str(repro), "--json", "--results", str(tmp_path / "results"), cwd=ROOT)
    assert done.returncode == 7, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["verdict"] == "INFRA_ERROR"
    assert "not found in the guest" in result["results"][0]["detail"]


def test_interrupt_keeps_what_was_recorded(vm, tmp_path):
    """SIGTERM (like Ctrl-C) mid-boot: exit 130, records say 'interrupted', no guest left behind."""
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "repro", "ext4_inline", "--results", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 600
    console = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(tmp_path.glob("*/run-01/console.log"))
        if found and found[0].stat().st_size > 0:
            console = found[0]
            break
        time.sleep(0.5)
    assert console is not None, "the guest never started writing its console"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    run = json.loads((console.parent / "result.json").read_text())
    assert run["status"] == "interrupted" and run["verdict"] == "INFRA_ERROR"
    assert json.loads((console.parent.parent / "result.json").read_text())["status"] == "interrupted"
    assert console.read_text()  # the console captured so far is still there
    left = subprocess.run(["pgrep", "-f", str(console.parent / "disk.img")], capture_output=True, text=True)
    assert left.stdout.strip() == "", "a QEMU of the interrupted run is still running"


# --- source-built 6.1.192 with KASAN + lockdep (ext4_inline/debug) ------------------------------


@pytest.mark.build
def test_debug_build_still_reproduces_and_says_kasan(vm, tmp_path):
    """6.1.192 built with lean+filesystems+debug: the same BUG, under an oops header that names KASAN."""
    from harness.guest.accel import choose_accel
    from harness.repro import run as runner

    spec = specs.load("ext4_inline/debug")
    kernel = spec.variant("debug").recipe().build()
    assert kernel.config_value("KASAN") == "y" and kernel.config_value("PROVE_LOCKING") == "y"
    accel, why = choose_accel("auto", kernel)
    summary = runner.run_repro(spec, kernel, RunOptions(runs=1, results=tmp_path), accel=Accel(accel, why))
    (run,) = summary.runs
    assert run.outcome.value == "REPRODUCED", run.verdict
    assert run.verdict.title in spec.expect.titles and summary.met is True
    console = (run.folder / "console.log").read_text()
    assert "kernel BUG at fs/ext4/inline.c" in console and "SMP KASAN" in console


@pytest.mark.build
def test_convert_at_mmap_trades_the_bug_for_lockdep(vm, tmp_path):
    """The rejected fix: no BUG, but lockdep reports mmap_lock vs inode_lock (ext4_file_mmap) — OTHER_CRASH."""
    from harness.guest.accel import choose_accel
    from harness.repro import run as runner

    spec = specs.load("ext4_inline/debug")
    kernel = spec.variant("debug-mmap-convert").recipe().build()
    accel, why = choose_accel("auto", kernel)
    summary = runner.run_repro(spec, kernel, RunOptions(runs=1, results=tmp_path), accel=Accel(accel, why))
    (run,) = summary.runs
    assert run.outcome.value == "OTHER_CRASH", run.verdict
    assert run.verdict.title.startswith("possible deadlock in") and summary.met is True
    console = (run.folder / "console.log").read_text()
    assert "WARNING: possible circular locking dependency detected" in console
    assert "ext4_file_mmap" in console and "kernel BUG at" not in console
