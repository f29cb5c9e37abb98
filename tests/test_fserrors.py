"""The kernel's own filesystem error reports as outcomes (harness.report.fserrors, verdict's fs_error_rule),
and a reproducer whose exit status is its verdict (``exit_status: verdict``)."""

import pytest

from harness.errors import SpecError
from harness.guest.protocol import GuestOutput
from harness.report import fserrors
from harness.repro import spec as specs
from harness.verdict import EXIT_TITLE, Evidence, Outcome, judge

# Lines as 6.1 prints them (fs/ext4/super.c, fs/ext2/super.c, fs/jbd2/journal.c, fs/xfs/xfs_*.c), with the
# console's timestamps and caller ids where the harness's guests print them.
EXT4_ERROR = ("[   31.204112][  T812] EXT4-fs error (device loop0): ext4_lookup:1808: inode #2: comm syz-executor.0: "
              "deleted inode referenced: 12")
EXT4_RO = "[   31.205990][  T812] EXT4-fs (loop0): Remounting filesystem read-only"
EXT4_STD = "[   31.300000][  T812] EXT4-fs error (device loop0) in ext4_reserve_inode_write:5744: Corrupt filesystem"
EXT4_WARN = "[   31.400000] EXT4-fs warning (device loop0): ext4_dirblock_csum_verify:404: inode #12: comm ls: No space"
EXT2_ERROR = ("[   12.000000] EXT2-fs (loop0): error: ext2_check_page: bad entry in directory #2: : unaligned "
              "directory entry - offset=0, inode=0, rec_len=1, name_len=0")
EXT2_RO = "[   12.000100] EXT2-fs (loop0): error: remounting filesystem read-only"
JBD2_ABORT = "[   40.000000] Aborting journal on device loop0-8."
XFS_CORRUPT = [
    "[   20.100000] XFS (loop0): Metadata corruption detected at xfs_dinode_verify+0x2a4/0x6e0 [xfs], inode 0x83 dinode",
    "[   20.100010] XFS (loop0): Unmount and run xfs_repair",
    "[   20.100020] XFS (loop0): First 128 bytes of corrupted metadata buffer:",
    "[   20.100030] 00000000: 49 4e 41 ed 03 01 00 00 00 00 00 00 00 00 00 00  INA.............",
    "[   20.100040] 00000010: 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00  ................",
]
XFS_INTERNAL = ("[   20.200000] XFS (loop0): Internal error !ino_ok at line 213 of file fs/xfs/libxfs/xfs_dir2.c.  "
                "Caller xfs_dir_ino_validate+0x7e/0xd0 [xfs]")
XFS_SHUTDOWN = [
    "[   20.300000] XFS (loop0): xfs_do_force_shutdown(0x8) called from line 1100 of file fs/xfs/xfs_trans.c. "
    "Return address = xfs_trans_cancel+0x2e1/0x3b0",
    "[   20.300010] XFS (loop0): Corruption of in-memory data (0x8) detected at xfs_trans_cancel+0x2e1/0x3b0 "
    "(fs/xfs/xfs_trans.c:1101).  Shutting down filesystem.",
    "[   20.300020] XFS (loop0): Please unmount the filesystem and rectify the problem(s)",
]
XFS_LOG = "[   20.400000] XFS (loop0): Filesystem has been shut down due to log error (0x2)."


def _titles(lines):
    return [e.title for e in fserrors.parse("\n".join(lines) + "\n")]


def test_ext4_error_titles_name_the_function():
    (err,) = fserrors.parse(EXT4_ERROR + "\n")
    assert err.title == "EXT4-fs error in ext4_lookup"
    assert err.alt_titles == ("EXT4-fs error", "EXT4-fs error in ext4_lookup: deleted inode referenced: NUM")
    assert (err.fs, err.kind, err.device, err.function) == ("ext4", "error", "loop0", "ext4_lookup")
    assert err.type == "FS-ERROR" and err.detail.startswith("ext4 on loop0 reported error in ext4_lookup: inode #2")
    assert _titles([EXT4_STD, EXT4_WARN]) == ["EXT4-fs error in ext4_reserve_inode_write",
                                              "EXT4-fs warning in ext4_dirblock_csum_verify"]


def test_remount_read_only_ext2_and_jbd2():
    assert _titles([EXT4_RO, EXT2_ERROR, EXT2_RO, JBD2_ABORT]) == [
        "EXT4-fs: remounting filesystem read-only", "EXT2-fs error in ext2_check_page",
        "EXT2-fs: remounting filesystem read-only", "JBD2: journal aborted"]


def test_xfs_corruption_internal_error_and_shutdown():
    errors = fserrors.parse("\n".join([*XFS_CORRUPT, XFS_INTERNAL, *XFS_SHUTDOWN, XFS_LOG]) + "\n")
    assert [e.title for e in errors] == [
        "XFS: metadata corruption in xfs_dinode_verify", "XFS: internal error in xfs_dir_ino_validate",
        "XFS: shutdown in xfs_trans_cancel", "XFS: shutdown in xfs_trans_cancel", "XFS: shutdown due to log error"]
    assert errors[0].alt_titles == ("XFS: metadata corruption",)
    assert errors[-1].alt_titles == ("XFS: shutdown",)
    # the report's text keeps its own lines and the hex dump after them, not the next report
    assert errors[0].text.count("\n") == len(XFS_CORRUPT) and "00000010:" in errors[0].text
    assert fserrors.titles(errors) == ("XFS: metadata corruption in xfs_dinode_verify",
                                       "XFS: internal error in xfs_dir_ino_validate",
                                       "XFS: shutdown in xfs_trans_cancel", "XFS: shutdown due to log error")


def test_crc_error_and_corruption_detected_without_function():
    lines = ["XFS (sda): Metadata CRC error detected at xfs_agf_read_verify+0x10/0x90, xfs_agf block 0x1",
             "XFS (sda): Corruption detected. Unmount and run xfs_repair"]
    assert _titles(lines) == ["XFS: metadata crc error in xfs_agf_read_verify", "XFS: corruption detected"]


def test_other_lines_are_no_reports():
    quiet = ["EXT4-fs (loop0): mounted filesystem with ordered data mode. Quota mode: none.",
             "XFS (loop0): Mounting V5 Filesystem", "XFS (loop0): Ending clean mount",
             "EXT4-fs (loop0): unmounting filesystem.", "random line mentioning EXT4-fs error in passing"]
    assert fserrors.parse("\n".join(quiet)) == []
    assert fserrors.parse(b"") == []


def test_is_fs_error_title():
    assert fserrors.is_fs_error_title("EXT4-fs error in ext4_lookup")
    assert fserrors.is_fs_error_title("XFS: shutdown")
    assert not fserrors.is_fs_error_title("kernel BUG in ext4_writepages")


# --- the verdict -------------------------------------------------------------------------------------------------

UP = "@@harness guest up 20.1 kernel 6.1.192\n"
INFRA_OK = "".join(
    f"@@harness step {s} begin 1.0\n@@harness step {s} end 0 2.0\n" for s in ("setup", "device", "mount", "compile"))


def _output(run_rc: int, *, timed_out: bool = False) -> str:
    rc = 124 if timed_out else run_rc
    run = f"@@harness step run begin 3.0\nunexpected inline data flag\n@@harness step run end {rc} 4.0\n"
    tail = "".join(f"@@harness step {s} begin 5.0\n@@harness step {s} end 0 6.0\n" for s in ("sync", "umount"))
    return UP + INFRA_OK + run + tail + "@@harness done\n"


CONSOLE = ("[   31.000000] harness: step run begin 3.0\n" + EXT4_ERROR + "\n" + EXT4_RO + "\n")


def ev(console, output, **kw) -> Evidence:
    return Evidence(console=console, output=output, steps=GuestOutput.parse(output).steps, **kw)


def test_expected_fs_error_is_reproduced_not_a_failed_run():
    """The issue's case: the kernel printed its own error and remounted read-only, the reproducer exited 1."""
    v = judge(ev(CONSOLE, _output(1), expected_titles=("EXT4-fs error in ext4_lookup",)))
    assert v.outcome is Outcome.REPRODUCED and v.title == "EXT4-fs error in ext4_lookup"
    assert v.crash_type == "FS-ERROR" and v.time_to_hit == round(31.204112 - 31.0, 3)
    assert v.reports == ("EXT4-fs error in ext4_lookup", "EXT4-fs: remounting filesystem read-only")
    assert "deleted inode referenced" in v.report_text and "ext4_lookup" in v.detail


def test_fs_error_matches_by_kind_or_message_and_read_only():
    for title in ("EXT4-fs error", "EXT4-fs error in ext4_lookup: deleted inode referenced: NUM",
                  "EXT4-fs: remounting filesystem read-only"):
        assert judge(ev(CONSOLE, _output(0), expected_titles=(title,))).outcome is Outcome.REPRODUCED, title


def test_unexpected_fs_error_decides_nothing():
    assert judge(ev(CONSOLE, _output(0), expected_titles=("kernel BUG in ext4_writepages",))).outcome is Outcome.CLEAN
    failed = judge(ev(CONSOLE, _output(1), expected_titles=("kernel BUG in ext4_writepages",)))
    assert failed.outcome is Outcome.INFRA_ERROR
    # ... but the failed run says what the kernel reported and how to expect it
    assert ("stopped by itself, after the kernel's own report 'EXT4-fs error in ext4_lookup' (and 1 more: "
            "EXT4-fs: remounting filesystem read-only): if that is the bug, expect it (--expect "
            "'EXT4-fs error in ext4_lookup'") in failed.detail
    assert "unexpected inline data flag" in failed.detail
    assert fserrors.hint("nothing here\n") is None
    # any_crash counts crash reports, not the filesystem's own words
    assert judge(ev(CONSOLE, _output(0), any_crash=True)).outcome is Outcome.CLEAN


def test_a_crash_wins_over_an_expected_fs_error():
    oops = ("[   32.000000] ------------[ cut here ]------------\n"
            "[   32.000001] kernel BUG at fs/ext4/inode.c:2764!\n"
            "[   32.000002] invalid opcode: 0000 [#1] PREEMPT SMP\n"
            "[   32.000003] RIP: 0010:ext4_writepages+0x8f2/0x8f0\n"
            "[   32.000004] Call Trace:\n[   32.000005]  <TASK>\n[   32.000006]  do_writepages+0xd0/0x1c0\n"
            "[   32.000007]  </TASK>\n")
    v = judge(ev(CONSOLE + oops, _output(0), expected_titles=("EXT4-fs error in ext4_lookup",)))
    assert v.outcome is Outcome.OTHER_CRASH and v.title == "kernel BUG in ext4_writepages"


def test_xfs_shutdown_expected():
    console = "[   20.000000] harness: step run begin 3.0\n" + "\n".join(XFS_SHUTDOWN) + "\n"
    v = judge(ev(console, _output(0), expected_titles=("XFS: shutdown",)))
    assert v.outcome is Outcome.REPRODUCED and v.title == "XFS: shutdown in xfs_trans_cancel"
    assert v.time_to_hit == 0.3


# --- exit_status: verdict ----------------------------------------------------------------------------------------

def test_exit_status_verdict():
    hit = judge(ev("", _output(1), exit_status="verdict"))
    assert hit.outcome is Outcome.REPRODUCED and hit.title == EXIT_TITLE
    assert "exited 1" in hit.detail and "unexpected inline data flag" in hit.detail
    assert judge(ev("", _output(0), exit_status="verdict")).outcome is Outcome.CLEAN
    broken = judge(ev("", _output(2), exit_status="verdict"))
    assert broken.outcome is Outcome.INFRA_ERROR and "exited 2" in broken.detail
    assert judge(ev("", _output(0, timed_out=True), exit_status="verdict")).outcome is Outcome.CLEAN
    # without the key an exit 1 is what it always was: a run that tested nothing
    assert judge(ev("", _output(1))).outcome is Outcome.INFRA_ERROR


def _folder(tmp_path, extra: str):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "repro.c").write_text("int main(void) { return 1; }\n")
    (folder / "repro.yaml").write_text("image: {fs: ext4, size: 64M}\n" + extra)
    return folder


def test_spec_exit_status(tmp_path):
    s = specs.load(str(_folder(tmp_path, "exit_status: verdict\nexpect: {reproduce: ['*'], any_crash: true}\n")))
    assert s.exit_status == "verdict" and s.expect.is_hit(Outcome.REPRODUCED)
    assert specs.load(str(tmp_path / "r")).exit_status == "verdict"


def test_spec_exit_status_default_and_bad_value(tmp_path):
    assert specs.load(str(_folder(tmp_path, ""))).exit_status == "error"
    (tmp_path / "r" / "repro.yaml").write_text("image: {fs: ext4, size: 64M}\nexit_status: bug\n")
    with pytest.raises(SpecError, match="exit_status: 'bug': use verdict"):
        specs.load(str(tmp_path / "r"))
