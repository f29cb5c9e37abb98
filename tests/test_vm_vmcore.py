"""Integration: a --vmcore run of ext4_inline on Debian's 6.1 image, and its core opened with drgn.

The guest is stopped at the BUG, QEMU writes its memory into the run folder,
and ``harness vmcore`` (drgn, with the -dbg package's vmlinux and modules,
fetched on first need) names the task that hit the BUG and prints its stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm
ROOT = Path(__file__).resolve().parent.parent


def harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=1800)


def test_vmcore_of_ext4_inline_opens_in_drgn(vm, tmp_path):
    done = harness("repro", "ext4_inline", "--vmcore", "-n", "1", "--json", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["verdict"] == "REPRODUCED", result
    (run,) = result["results"]
    core = run["guest"]["vmcore"]
    assert "error" not in core, core
    assert core["report"] == result["title"] and core["format"] == "elf"
    assert core["guest"] == "shut down after the dump (it had panicked)"
    path = Path(run["folder"]) / core["path"]
    assert path.stat().st_size == core["bytes"] > 512 * 2**20  # the whole 1 GiB guest...
    assert core["disk_bytes"] < core["bytes"] / 2  # ...without its zero pages on disk

    shown = harness("vmcore", run["folder"], "--eval", "task.comm", "--eval", "prog['init_uts_ns'].name.release")
    assert shown.returncode == 0, shown.stderr[-3000:]
    out = shown.stdout
    print(out)
    assert "crashed task: harness-repro (pid " in out and "the CPU that panicked" in out
    assert "ext4_write_inline_data (fs/ext4/inline.c:" in out  # the BUG's frame, with its line
    assert "ext4_write_inline_data_end (fs/ext4/inline.c:" in out
    assert '"harness-repro"' in out
    assert f'"{result["kernel"]["release"]}"' in out
