"""The backend contract (tests/backend_contract.py) against a fake backend: the suite itself, without a VM.

The fake plays a guest that obeys the guest protocol: it writes the marks the
steps would, the console a kernel would, and honours the watchdog like a
real backend's process loop; which run it plays comes from the contract
program's first line (``// contract: NAME``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from backend_contract import BackendContract

from harness.guest.machine import Backend, GuestRequest, GuestRun, RunSignals
from harness.kernels import Kernel

STEPS = ("setup", "device", "mount", "compile")


class FakeBackend(Backend):
    name = "fake"
    persistent = True

    def __init__(self) -> None:
        super().__init__()
        self.crashed = False  # the fake guest's kernel state: a crash sticks until replace()
        self.replaced: list[str] = []

    def replace(self, reason: str) -> None:
        self.replaced.append(reason)
        self.crashed = False

    def run(self, req: GuestRequest, *, watchdog=None, timeout=None) -> GuestRun:
        run_dir = req.run_dir
        (run_dir / "guest.sh").write_text("# the fake guest runs no script\n")
        program = Path(req.plan.source).read_text().splitlines()[0].removeprefix("// contract: ")
        out, console = run_dir / "guest.log", run_dir / "console.log"
        taint = 128 if self.crashed else 0
        lines = ["@@harness guest up 1.0 kernel fake", f"@@harness taint before {taint}"]
        for i, s in enumerate(STEPS):
            lines += [f"@@harness step {s} begin {i + 1}.0", f"@@harness step {s} end 0 {i + 1}.5"]
        lines += ["@@harness binary prebuilt", "@@harness step run begin 5.0"]
        out.write_text("\n".join(lines) + "\n")
        console.write_text("[    5.0] harness: step run begin 5.0\n" + ("[    4.0] Kernel panic (stale)\n" if self.crashed else ""))
        return getattr(self, f"_{program}")(req, out, console, watchdog)

    def _finish(self, out: Path, text: str, rc: int = 0) -> None:
        with open(out, "a") as fh:
            fh.write(text + f"@@harness step run end {rc} 6.0\n@@harness step sync begin 6.0\n"
                     "@@harness step sync end 0 6.1\n@@harness taint after 0\n@@harness done\n")

    def _clean(self, req, out, console, watchdog) -> GuestRun:
        self._finish(out, "contract: wrote /tmp/harness-mnt/contract\n")
        return GuestRun(0, 0.1, console, out, signals=RunSignals(0, 0))

    def _escape(self, req, out, console, watchdog) -> GuestRun:
        said = "".join(f"contract: write {a}: Read-only file system\n" for a in req.plan.args)
        self._finish(out, said)
        return GuestRun(0, 0.1, console, out, signals=RunSignals(0, 0))

    def _crash(self, req, out, console, watchdog) -> GuestRun:
        with open(console, "a") as fh:
            fh.write("[    6.0] sysrq: Trigger a crash\n[    6.0] Kernel panic - not syncing: sysrq triggered crash\n")
        self.crashed = True
        return GuestRun(None, 0.1, console, out, detail="the guest went down during the run",
                        signals=RunSignals(0, None, lost=True, reports=("kernel panic: sysrq triggered crash",)))

    def _hang(self, req, out, console, watchdog) -> GuestRun:
        with open(out, "a") as fh:
            fh.write("contract: writing to a frozen filesystem\n")
        while not (why := watchdog()):
            time.sleep(0.05)
        return GuestRun(None, 0.1, console, out, detail=why, signals=RunSignals(0, None, killed=why))


class TestFakeBackend(BackendContract):
    stuck_after = 0.5

    @pytest.fixture
    def kernel(self):
        return Kernel("fake:1", "1", "1", Path("/fake/bzImage"))

    def make_backend(self):
        return FakeBackend()
