"""A compile boot that leaves no binary: an INFRA_ERROR the runs record, in the guest's own words."""

from __future__ import annotations

from pathlib import Path

from harness.guest.machine import GuestRun
from harness.kernels import Kernel
from harness.repro import spec as specs
from harness.repro.binaries import _compile_failed
from harness.verdict import Outcome

KERNEL = Kernel(name="debian:6.1.0-47", release="6.1.0-47-amd64", version="6.1.170", image=Path("/nonexistent"))


def _run(tmp_path: Path, output: str, console: str = "", rc: int | None = 0, detail: str | None = None) -> GuestRun:
    (tmp_path / "guest.log").write_text(output)
    (tmp_path / "console.log").write_text(console)
    return GuestRun(rc, 3.0, tmp_path / "console.log", tmp_path / "guest.log", detail=detail)


def test_missing_compiler_says_so(tmp_path):
    out = ("@@harness guest up 1.0 kernel 6.1.0-47-amd64\n@@harness step compile begin 1.1\n"
           "no-such-gcc: not found in the guest\n@@harness step compile end 127 1.2\n")
    exc = _compile_failed(specs.load("ext4_inline"), KERNEL, tmp_path, _run(tmp_path, out))
    assert exc.verdict.outcome is Outcome.INFRA_ERROR
    assert "no-such-gcc: not found in the guest" in exc.verdict.detail and "guest.log" in exc.verdict.detail
    assert exc.one_line().startswith("compiling repro.c in a vng guest of debian:6.1.0-47 failed: no-such-gcc")


def test_guest_that_never_came_up(tmp_path):
    exc = _compile_failed(specs.load("ext4_inline"), KERNEL, tmp_path,
                          _run(tmp_path, "", "Kernel panic - not syncing: VFS: Unable to mount root fs\n", rc=1))
    assert exc.verdict.outcome is Outcome.INFRA_ERROR  # the runs never started: infrastructure, not the kernel
    assert "exited 1 before the guest steps started" in exc.verdict.detail
