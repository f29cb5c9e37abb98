"""The step watchdog tells a slow boot or step from a guest that stopped."""

import time

from harness.repro.run import StepWatchdog


def _dog(tmp_path, boot=240, run=60):
    out = tmp_path / "guest.log"
    out.write_text("")
    return StepWatchdog(out, boot, run), out


def _age(dog, seconds):
    dog.since = time.monotonic() - seconds


def test_slow_boot_is_not_killed_before_its_budget(tmp_path):
    dog, _ = _dog(tmp_path, boot=240)
    assert dog() is None
    _age(dog, 200)  # longer than the quiet rule, shorter than the boot budget
    assert dog() is None
    _age(dog, 241)
    assert "within 240 s of boot" in dog()


def test_step_budget_is_its_timeout_plus_grace(tmp_path):
    dog, out = _dog(tmp_path, run=60)
    out.write_text("@@harness guest up 20.0 kernel x\n@@harness step run begin 21.0\n")
    assert dog() is None
    _age(dog, 100)
    assert dog() is None  # 60 s + 45 s grace
    _age(dog, 106)
    assert "step run made no progress" in dog()


def test_quiet_between_steps(tmp_path):
    dog, out = _dog(tmp_path)
    out.write_text("@@harness guest up 20.0 kernel x\n@@harness step sync begin 21.0\n@@harness step sync end 0 22\n")
    assert dog() is None
    _age(dog, 121)
    assert "went quiet" in dog()
