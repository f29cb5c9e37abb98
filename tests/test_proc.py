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


def test_missing_program():
    with pytest.raises(MissingTool, match="no-such-tool-xyz not found"):
        proc.run(["no-such-tool-xyz"])
