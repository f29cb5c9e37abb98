"""The --vmcore dump: QMP's arguments, when a report is complete, and the watch's stop/dump/quit-or-continue."""

from pathlib import Path

import pytest

from harness.errors import GuestError
from harness.guest.snapshot import dump

BUG = """[   15.70] ------------[ cut here ]------------
[   15.70] kernel BUG at fs/ext4/inline.c:236!
[   15.71] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI
[   15.72] RIP: 0010:ext4_write_inline_data+0xed/0x100 [ext4]
[   15.73] Call Trace:
[   15.73]  <TASK>
[   15.74]  ext4_write_inline_data_end+0x9f/0x2a0 [ext4]
[   15.75]  generic_perform_write+0x12b/0x210
[   15.76]  </TASK>
[   15.77] ---[ end trace 0000000000000000 ]---
"""
PANIC = "[   15.79] Kernel panic - not syncing: Fatal exception\n"
PANIC_END = "[   15.80] ---[ end Kernel panic - not syncing: Fatal exception ]---\n"
WARNING = """[    9.10] ------------[ cut here ]------------
[    9.10] WARNING: CPU: 1 PID: 137 at fs/jbd2/journal.c:1113 jbd2_journal_update_sb_log_tail+0x8e/0xc0
[    9.11] RIP: 0010:jbd2_journal_update_sb_log_tail+0x8e/0xc0
[    9.12] Call Trace:
[    9.12]  <TASK>
[    9.13]  jbd2_journal_flush+0x1e1/0x2a0
[    9.14]  </TASK>
[    9.15] ---[ end trace 0000000000000000 ]---
"""


def test_dump_arguments_and_the_sparse_command():
    assert dump.dump_arguments(Path("/r/vmcore")) == {"paging": False, "protocol": "file:/r/vmcore", "format": "elf"}
    assert dump.sparse_argv(Path("/r/vmcore")) == ["fallocate", "--dig-holes", "/r/vmcore"]
    assert dump.qemu_options() == ["-device", "vmcoreinfo"]


@pytest.mark.parametrize("text, quiet, since, done", [
    (BUG + PANIC, 0.5, 0.5, False),  # the panic is still printing
    (BUG + PANIC + PANIC_END, 0.0, 0.1, True),  # its end line: complete at once
    (BUG + PANIC, 2.0, 2.0, True),  # a panic whose end never came: two quiet seconds
    (WARNING, 0.5, 0.5, False),
    (WARNING, 1.0, 1.0, True),  # a WARNING: one quiet second
    (WARNING, 0.0, dump.MAX_WAIT_SECONDS, True),  # a console that never stops: the cap
])
def test_report_complete(text, quiet, since, done):
    assert dump.report_complete(text, quiet, since) is done


class FakeQmp:
    def __init__(self, log: list, fail: str | None = None):
        self.log, self.fail = log, fail

    def command(self, name, **arguments):
        self.log.append(name)
        if name == self.fail:
            raise GuestError(f"QMP {name}: failed")
        if name == "dump-guest-memory":
            Path(arguments["protocol"].removeprefix("file:")).write_bytes(b"\0" * 8192 + b"core")
        return {}

    def close(self):
        self.log.append("close")


class FakeMachine:
    def __init__(self, fail: str | None = None):
        self.console, self.log, self.fail = "", [], fail

    def text(self):
        return self.console

    def qmp(self, timeout):
        if self.fail == "connect":
            raise GuestError("QEMU's QMP socket did not answer in 20 s")
        return FakeQmp(self.log, self.fail)

    def stop(self, reason):
        self.log.append(f"stop QEMU: {reason}")


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _watch(tmp_path, fail=None):
    machine, clock = FakeMachine(fail), Clock()
    kills = []
    watch = dump.CoreWatch(machine, tmp_path, lambda: kills[0] if kills else None, clock=clock)
    return watch, machine, clock, kills


def test_a_panic_is_dumped_once_complete_then_the_guest_is_shut_down(tmp_path):
    watch, machine, clock, _ = _watch(tmp_path)
    assert watch() is None and machine.log == []  # no report: nothing
    machine.console = "[    1.0] booted\n" + BUG + PANIC
    assert watch() is None and machine.log == []  # the report began: wait for its end
    machine.console += PANIC_END
    clock.now += 0.5
    watch()
    assert machine.log == ["stop", "dump-guest-memory", "quit", "close"]
    rec = watch.record
    assert rec["report"] == "kernel BUG in ext4_write_inline_data" and rec["format"] == "elf"
    assert rec["bytes"] == 8196 and (tmp_path / "vmcore").stat().st_mode & 0o644 == 0o644
    assert rec["guest"] == "shut down after the dump (it had panicked)" and "error" not in rec
    watch()
    assert machine.log.count("stop") == 1  # once a run


def test_a_warning_is_dumped_after_a_quiet_second_and_the_guest_goes_on(tmp_path):
    watch, machine, clock, _ = _watch(tmp_path)
    machine.console = WARNING
    watch()
    clock.now += 0.5
    watch()
    assert machine.log == []
    clock.now += 0.6
    watch()
    assert machine.log == ["stop", "dump-guest-memory", "cont", "close"]
    assert watch.record["guest"] == "continued after the dump"


def test_a_failed_dump_is_recorded_continues_the_guest_and_leaves_no_half_core(tmp_path):
    watch, machine, clock, _ = _watch(tmp_path, fail="dump-guest-memory")
    machine.console = WARNING
    watch()
    clock.now += 2
    watch()
    assert machine.log == ["stop", "dump-guest-memory", "cont", "close"]
    assert watch.record["error"].startswith("the dump failed: QMP dump-guest-memory: failed")
    assert not (tmp_path / "vmcore").exists() and not (tmp_path / "vmcore.part").exists()


def test_the_inner_watchdog_still_decides(tmp_path):
    watch, machine, clock, kills = _watch(tmp_path)
    kills.append("step run made no progress")
    assert watch() == "step run made no progress"


def test_a_panicked_guest_whose_qmp_is_gone_is_stopped_not_left_halted(tmp_path):
    watch, machine, clock, _ = _watch(tmp_path, fail="connect")
    machine.console = BUG + PANIC + PANIC_END
    watch()
    assert machine.log == ["stop QEMU: the dump's QMP did not answer"]
    assert watch.record["error"].startswith("QMP did not answer")
