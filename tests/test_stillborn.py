"""A guest that dies at once without a byte of console is run again, once; the first attempt is kept."""

from __future__ import annotations

import json

from harness.guest.machine import Backend, GuestRun
from harness.kernels import Kernel
from harness.options import Accel, RunOptions
from harness.repro import reproducer
from harness.repro import run as runner
from harness.repro import spec as specs
from harness.verdict import Outcome


class Flaky(Backend):
    """First boot: exit 255 after no time and no output.  Later boots: a clean run's logs."""

    name = "flaky"

    def __init__(self, dead: int = 1):
        super().__init__()
        self.dead = dead
        self.calls = 0

    def run(self, req, *, timeout=None, watchdog=None) -> GuestRun:
        self.calls += 1
        run_dir = req.run_dir
        console, output = run_dir / "console.log", run_dir / "guest.log"
        if self.calls <= self.dead:
            console.write_text("")
            output.write_text("")
            return GuestRun(255, 0.1, console, output)
        console.write_text("[    1.0] harness: step run begin 1.0\n")
        lines = ["@@harness guest up 1.0 kernel 6.1.192"]
        for i, name in enumerate(("setup", "device", "mount", "compile", "run", "sync", "umount", "check")):
            lines += [f"@@harness step {name} begin {i + 1}.0", f"@@harness step {name} end 0 {i + 1}.5"]
        output.write_text("\n".join(lines + ["@@harness done"]) + "\n")
        return GuestRun(0, 0.2, console, output)


def _run(tmp_path, monkeypatch, backend):
    spec = specs.load("ext4_inline")
    monkeypatch.setattr(reproducer.images, "build", lambda recipe, progress=None: tmp_path / "base.img")
    (tmp_path / "base.img").write_bytes(b"\0" * 4096)
    monkeypatch.setattr(runner, "choose_backend", lambda name, kernel, **kw: ("flaky", "test"))
    monkeypatch.setattr(runner, "make_backend", lambda name: backend)
    monkeypatch.setattr(reproducer, "binary_key", lambda spec, kernel: "k")
    kernel = Kernel(name="debian:6.1.0-56", release="6.1.0-56-amd64", version="6.1.192", image=tmp_path / "bz")
    seen: list[str] = []
    return runner.run_repro(spec, kernel, RunOptions(runs=2, results=tmp_path / "res"), accel=Accel("tcg"),
                            progress=seen.append), seen


def test_stillborn_guest_is_run_again_once(tmp_path, monkeypatch):
    backend = Flaky(dead=1)
    summary, seen = _run(tmp_path, monkeypatch, backend)
    assert backend.calls == 3 and [r.outcome for r in summary.runs] == [Outcome.CLEAN, Outcome.CLEAN]
    kept = summary.folder / "run-01.stillborn"
    assert json.loads((kept / "result.json").read_text())["verdict"] == "BOOT_FAILURE"
    assert any("without a byte of console" in line for line in seen)


def test_twice_stillborn_is_a_boot_failure(tmp_path, monkeypatch):
    summary, _ = _run(tmp_path, monkeypatch, Flaky(dead=2))
    assert summary.runs[0].outcome is Outcome.BOOT_FAILURE  # reported, not retried forever


def test_what_is_not_stillborn(tmp_path):
    from harness.verdict import Verdict

    d = tmp_path / "run-01"
    d.mkdir()
    (d / "console.log").write_text("")
    silent = Verdict(Outcome.BOOT_FAILURE, detail="vng exited 255 before the guest steps started; last console line: no console output")
    assert runner.stillborn(runner.RunResult(1, d, silent, (), 2.0, None))
    assert not runner.stillborn(runner.RunResult(1, d, silent, (), 200.0, None))  # slow: a real boot problem
    killed = Verdict(Outcome.BOOT_FAILURE, detail="boot took longer than 240 s; last console line: no console output")
    assert not runner.stillborn(runner.RunResult(1, d, killed, (), 2.0, None))
    (d / "console.log").write_text("Kernel panic - not syncing: VFS")
    assert not runner.stillborn(runner.RunResult(1, d, silent, (), 2.0, None))
    assert not runner.stillborn(runner.RunResult(1, d, Verdict(Outcome.CLEAN), (), 2.0, None))


class Compiling(Flaky):
    """A backend whose guests compile (vng): run 1 compiles the reproducer."""

    name = "compiling"
    compiles = True

    def __init__(self, probe):
        super().__init__(dead=0)
        self.probe, self.held = probe, []

    def run(self, req, *, timeout=None, watchdog=None) -> GuestRun:
        self.held.append(self.probe())
        return super().run(req, timeout=timeout, watchdog=watchdog)


def test_binary_lock_is_held_until_run_1_compiled(tmp_path, monkeypatch):
    """Two harnesses, one cache: the one that did not get the lock waits for run 1's binary (no second compile)."""
    import filelock

    from harness.repro.binaries import BinaryCache

    def held() -> bool:  # another process's view: a second lock object on the same file
        other = BinaryCache().lock("ext4_inline", "k")
        try:
            other.acquire(timeout=0)
        except filelock.Timeout:
            return True
        other.release()
        return False

    backend = Compiling(held)
    summary, _ = _run(tmp_path, monkeypatch, backend)
    assert [r.outcome for r in summary.runs] == [Outcome.CLEAN, Outcome.CLEAN]
    assert backend.held == [True, False]  # held through run 1 (which compiles), released after it
    assert not held()
