import time

import pytest

from harness import proc
from harness.errors import MissingTool


def test_streams_into_log_and_captures(tmp_path):
    log = tmp_path / "cmd.log"
    done = proc.run(["sh", "-c", "echo out; echo err >&2"], log_path=log, capture=True)
    assert done.ok and "out" in done.output and "err" in done.output
    text = log.read_text()
    assert text.startswith("$ sh -c 'echo out; echo err >&2'\n") and "# exit 0" in text


def test_direct_files_are_written_as_output_arrives(tmp_path):
    out = tmp_path / "o.log"

    def watchdog():
        return "saw it" if "first" in out.read_text() else None

    done = proc.run(["sh", "-c", "echo first; sleep 30; echo never"], stdout_path=out, stderr_path=tmp_path / "e",
                    watchdog=watchdog, check=False)
    assert done.timed_out and done.seconds < 10
    assert out.read_text() == "first\n"


def test_timeout_kills_the_whole_group(tmp_path):
    start = time.monotonic()
    done = proc.run(["sh", "-c", "sleep 30 & sleep 30; wait"], timeout=1, check=False)
    assert done.timed_out and time.monotonic() - start < 10


def test_failure_raises_with_last_line():
    with pytest.raises(proc.CommandFailed, match=r"mkfs for x failed \(exit 3\): bad option"):
        proc.run(["sh", "-c", "echo bad option >&2; exit 3"], what="mkfs for x")


def test_a_full_disk_is_exit_12_whatever_tool_said_it(tmp_path):
    """mkfs, tar or make out of space: the disk is full, not the tool broken (exit 12, one line saying so)."""
    from harness.errors import ExitCode

    with pytest.raises(proc.CommandFailed) as caught:
        proc.run(["sh", "-c", "echo 'mke2fs: No space left on device while writing out and closing file system' >&2; "
                  "exit 1"], what="mkfs for image x", log_path=tmp_path / "mkfs.log")
    assert caught.value.exit_code == ExitCode.NO_SPACE
    assert caught.value.one_line().startswith("mkfs for image x failed (exit 1): mke2fs: No space left")
    assert "; no space left on device" in caught.value.one_line() and "harness kernel evict" in caught.value.one_line()
    with pytest.raises(proc.CommandFailed) as other:
        proc.run(["sh", "-c", "echo bad option >&2; exit 3"], what="mkfs for x")
    assert other.value.exit_code == ExitCode.HARNESS


def test_missing_program():
    with pytest.raises(MissingTool, match="no-such-tool-xyz not found"):
        proc.run(["no-such-tool-xyz"])
