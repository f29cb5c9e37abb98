from pathlib import Path

from harness.guest.protocol import GuestOutput, StepResult, run_started_at, stamp_at
from harness.verdict import Evidence, Outcome, judge

DATA = Path(__file__).parent / "data"
TITLES = ("kernel BUG in ext4_write_inline_data", "kernel BUG in ext4_write_inline_data_end")


def _body(name: str) -> str:
    text = (DATA / "oops" / name).read_text()
    return text.split("\n\n", 1)[1]  # drop the corpus-style header


REAL_CONSOLE = _body("real-ext4-inline-debian-6.1.0-47.log")
REAL_OUTPUT = (DATA / "real-ext4-inline-guest.log").read_text()

UP = "@@harness guest up 20.1 kernel 6.1.0-47-amd64\n"
INFRA_OK = "".join(
    f"@@harness step {s} begin 1.0\n@@harness step {s} end 0 2.0\n" for s in ("setup", "device", "mount", "compile")
)
TAIL_OK = "".join(f"@@harness step {s} begin 3.0\n@@harness step {s} end 0 4.0\n" for s in ("run", "sync", "umount"))


def ev(console="", output="", **kw) -> Evidence:
    return Evidence(console=console, output=output, steps=GuestOutput.parse(output).steps, **kw)


def test_real_run_is_reproduced_with_time_to_hit():
    v = judge(ev(REAL_CONSOLE, REAL_OUTPUT, expected_titles=TITLES, guest_rc=0))
    assert v.outcome is Outcome.REPRODUCED
    assert v.title == "kernel BUG in ext4_write_inline_data"
    assert v.crash_type == "BUG"
    # step run began at [29.536065], the BUG line is at [29.934882]
    assert v.time_to_hit == round(29.934882 - 29.536065, 3)


def test_unexpected_title_is_other_crash():
    v = judge(ev(REAL_CONSOLE, REAL_OUTPUT, expected_titles=("kernel BUG in ext4_writepages",)))
    assert v.outcome is Outcome.OTHER_CRASH
    assert v.title == "kernel BUG in ext4_write_inline_data"


def test_lockdep_instead_of_bug_is_not_clean():
    console = _body("ext4-lockdep-circular-debian61.log")
    v = judge(ev(console, UP + INFRA_OK + TAIL_OK + "@@harness done\n", expected_titles=TITLES))
    assert v.outcome is Outcome.OTHER_CRASH
    assert v.crash_type == "LOCKDEP"


def test_no_guest_steps_is_boot_failure():
    v = judge(ev("[    0.000000] Linux version 6.1.0\n[    0.9] virtme-ng-init: mount failed\n", "", guest_rc=1))
    assert v.outcome is Outcome.BOOT_FAILURE
    assert "before the guest steps started" in v.detail and "mount failed" in v.detail


def test_panic_while_booting_is_boot_failure_with_title():
    console = (
        "[    0.000000] Linux version 6.1.0\n"
        "[    1.200000] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n"
        "[    1.200100] CPU: 0 PID: 1 Comm: swapper/0 Not tainted 6.1.0 #1\n"
        "[    1.200200] Call Trace:\n[    1.200300]  <TASK>\n[    1.200400]  dump_stack_lvl+0x44/0x5c\n"
        "[    1.200500]  panic+0x118/0x2e0\n[    1.200600]  mount_block_root+0x1f2/0x2a0\n"
        "[    1.200700]  prepare_namespace+0x136/0x165\n[    1.200800]  </TASK>\n"
    )
    v = judge(ev(console, "", guest_rc=1))
    assert v.outcome is Outcome.BOOT_FAILURE
    assert v.title and v.title.startswith("kernel panic")


def test_watchdog_kill_before_steps_is_boot_failure():
    v = judge(ev("", "", killed="no guest step started within 240 s of boot", guest_rc=None))
    assert v.outcome is Outcome.BOOT_FAILURE and "240 s" in v.detail


def test_missing_compiler_is_infra_error():
    out = UP + "".join(f"@@harness step {s} begin 1.0\n@@harness step {s} end 0 2.0\n" for s in ("setup", "device", "mount"))
    out += "@@harness step compile begin 3.0\ngcc: not found in the guest\n@@harness step compile end 127 3.1\n"
    v = judge(ev("", out))
    assert v.outcome is Outcome.INFRA_ERROR and v.detail.startswith("gcc: not found in the guest")


def test_mount_failure_is_infra_error():
    out = UP + "@@harness step mount begin 1.0\nmount: wrong fs type\n@@harness step mount end 32 2.0\n"
    v = judge(ev("", out))
    assert v.outcome is Outcome.INFRA_ERROR and "mount" in v.detail and "wrong fs type" in v.detail


def test_run_past_timeout_is_hang_where_the_spec_says_so():
    out = UP + INFRA_OK + "@@harness step run begin 3.0\n@@harness step run end 124 63.0\n@@harness done\n"
    v = judge(ev("", out, timeout_is="hang"))
    assert v.outcome is Outcome.HANG and "60 s" in v.detail


def test_a_timeout_is_not_a_hang():
    """Stopped by its time limit, the steps after it ran: the kernel stayed healthy (issue 19)."""
    out = UP + INFRA_OK + "@@harness step run begin 3.0\n@@harness step run end 124 63.0\n" + TAIL_OK[-80:]
    v = judge(ev("", out + "@@harness done\n"))
    assert v.outcome is Outcome.CLEAN and "ran 60 s, its time limit, with no report" in v.detail
    # ... but a guest that never got past it (the host had to kill it) is a hang
    v = judge(ev("", UP + INFRA_OK + "@@harness step run begin 3.0\n@@harness step run end 124 63.0\n",
                 killed="step sync made no progress for 165 s", guest_rc=None))
    assert v.outcome is Outcome.HANG


def test_processes_sigkill_left_in_d_state_are_a_hang():
    """A writer blocked on a frozen filesystem: the time limit's SIGKILL cannot end it (the steps name it)."""
    out = (UP + INFRA_OK + "@@harness step run begin 3.0\n@@harness step run end 137 18.0\n"
           "@@harness stuck 212 chaos_freeze percpu_rwsem_wait\n" + TAIL_OK[-80:] + "@@harness done\n")
    v = judge(ev("", out))
    assert v.outcome is Outcome.HANG
    assert v.detail == ("the reproducer stopped at its time limit (15 s) and SIGKILL left 1 of its processes "
                        "in D state: 212 chaos_freeze in percpu_rwsem_wait")


def test_host_kill_in_run_is_hang():
    out = UP + INFRA_OK + "@@harness step run begin 3.0\n"
    v = judge(ev("", out, killed="step run made no progress for 110 s", guest_rc=None))
    assert v.outcome is Outcome.HANG and "step run" in v.detail


def test_hung_task_report_is_a_crash_not_a_plain_hang():
    console = (
        "[  142.1] INFO: task harness-repro:171 blocked for more than 20 seconds.\n"
        "[  142.1]       Not tainted 6.1.0-47-amd64 #1 Debian 6.1.170-3\n"
        '[  142.1] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.\n'
        "[  142.1] task:harness-repro   state:D stack:0     pid:171   ppid:1      flags:0x00004002\n"
        "[  142.1] Call Trace:\n[  142.1]  <TASK>\n[  142.1]  __schedule+0x34d/0x9e0\n"
        "[  142.1]  schedule+0x5a/0xd0\n[  142.1]  rwsem_down_write_slowpath+0x2f4/0x5a0\n"
        "[  142.1]  xfs_ilock+0x87/0xb0 [xfs]\n[  142.1]  xfs_file_buffered_write+0x4a/0x2c0 [xfs]\n"
        "[  142.1]  vfs_write+0x2b4/0x3f0\n[  142.1]  ksys_write+0x5f/0xe0\n[  142.1]  do_syscall_64+0x55/0xb0\n"
        "[  142.1]  </TASK>\n"
    )
    out = UP + INFRA_OK + "@@harness step run begin 3.0\n"
    v = judge(ev(console, out, killed="step run made no progress", guest_rc=None))
    assert v.outcome is Outcome.OTHER_CRASH
    assert v.crash_type == "HANG" and v.title.startswith("INFO: task hung in")


def test_lost_markers_are_data_loss():
    out = UP + INFRA_OK + "@@harness step run begin 3.0\n@@lost page 7 offset 28672\n@@lost page 9 offset 36864\n"
    out += "@@first-loss-after 3.25\n@@harness step run end 0 13.0\n" + TAIL_OK[-80:] + "@@harness done\n"
    v = judge(ev("", out))
    assert v.outcome is Outcome.DATA_LOSS
    assert v.lost == ("page 7 offset 28672", "page 9 offset 36864")
    assert v.time_to_hit == 3.25 and "2 lost" in v.detail


def test_checker_complaint_is_fs_corrupt():
    out = UP + INFRA_OK + TAIL_OK + "@@harness step check begin 5.0\nblock bitmap differences\n@@harness step check end 4 6.0\n@@harness done\n"
    v = judge(ev("", out))
    assert v.outcome is Outcome.FS_CORRUPT and "exit 4" in v.detail


def test_clean():
    out = UP + INFRA_OK + TAIL_OK + "@@harness step check begin 5.0\n@@harness step check end 0 6.0\n@@harness done\n"
    assert judge(ev("[    1.0] EXT4-fs (vda): mounted filesystem\n", out)).outcome is Outcome.CLEAN


def test_stamps():
    console = "[   29.536065] harness: step run begin 29.55\nno stamp here\n[   30.100000] x\n"
    assert run_started_at(console) == 29.536065
    assert stamp_at(console, console.index("x")) == 30.1
    assert stamp_at(console, console.index("no stamp")) is None


def test_step_result_properties():
    assert StepResult("run", 137, 1.0, 2.0).timed_out
    assert not StepResult("run", 0, 1.0, 2.5).timed_out
    assert StepResult("run", 0, 1.0, 2.5).seconds == 1.5


def test_reproducer_that_fails_by_itself_is_not_clean():
    out = UP + INFRA_OK + "@@harness step run begin 3.0\nno write failed: nothing tested\n@@harness step run end 3 4.0\n"
    out += "@@harness done\n"
    v = judge(ev("", out))
    assert v.outcome is Outcome.INFRA_ERROR and "exited 3" in v.detail and "nothing tested" in v.detail
