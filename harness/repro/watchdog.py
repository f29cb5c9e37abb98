"""The step watchdog: kills a guest that makes no progress (past boot, or a step past its budget).

The run driver gives one to every run's backend call, and the C reproducer's
compile boot has its own; it reads the guest's output (guest.log) as it grows.
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.guest.protocol import GuestOutput

STEP_GRACE = 45.0  # host seconds past a guest step's own timeout before we call it hung
STEP_BUDGETS = {"faults": 30, "environment": 60, "syz-cleanup": 120, "setup": 30, "device": 30, "mount": 60,
                "compile": 300, "sync": 120, "umount": 120, "check": 300}


class StepWatchdog:
    """Kills the guest when it makes no progress: past boot, or a step past its budget."""

    def __init__(self, output: Path, boot_timeout: float, run_timeout: float):
        self.output = output
        self.budgets = {**STEP_BUDGETS, "run": run_timeout}
        self.boot_timeout = boot_timeout
        self.started = time.monotonic()
        self.current: str | None = None
        self.since = self.started
        self.reason: str | None = None

    def _state(self) -> str:
        try:
            text = self.output.read_text(errors="replace")
        except OSError:
            return "boot"
        return GuestOutput.parse(text).state

    def __call__(self) -> str | None:
        state = self._state()
        now = time.monotonic()
        if state != self.current:
            self.current, self.since = state, now
        waited = now - self.since
        if state == "boot":  # booting has its own, longer budget
            if waited > self.boot_timeout:
                self.reason = f"no guest step started within {self.boot_timeout:.0f} s of boot"
        elif state.endswith(":begin"):
            step = state.split(":")[0]
            budget = self.budgets.get(step, 120) + STEP_GRACE
            if waited > budget:
                self.reason = f"step {step} made no progress for {waited:.0f} s (budget {budget:.0f} s)"
        elif waited > 120:
            self.reason = f"the guest went quiet for {waited:.0f} s after {state}"
        return self.reason
