"""A variant that does not build is a BUILD_ERROR result, recorded like a run."""

import json

from harness.errors import KernelError
from harness.repro import spec as specs
from harness.repro.run import build_error


class FakePatchFailed(KernelError):
    def __init__(self):
        super().__init__("patch 0001-x.patch (apply) fails on fs/xfs/xfs_iomap.c")
        self.hunk = "@@ -1,3 +1,3 @@\n-old\n+new\n"


def test_build_error_is_recorded(tmp_path):
    spec = specs.load("ext4_inline")
    summary = build_error(spec, "debian-src:6.1.192/unfixed", FakePatchFailed(), tmp_path)
    assert summary.verdict.value == "BUILD_ERROR"
    data = json.loads((summary.folder / "result.json").read_text())
    assert data["verdict"] == "BUILD_ERROR" and data["status"] == "done"
    assert data["kernel"]["name"] == "debian-src:6.1.192/unfixed"
    run = summary.folder / "run-01"
    text = (run / "build-error.txt").read_text()
    assert "fails on fs/xfs/xfs_iomap.c" in text and "+new" in text
    assert json.loads((run / "result.json").read_text())["detail"].startswith("patch 0001-x.patch")


def test_cli_exit_code_for_build_error(tmp_path):
    from harness.cli.repro import exit_code as _exit_code

    spec = specs.load("ext4_inline")
    assert _exit_code(build_error(spec, "x/y", FakePatchFailed(), tmp_path)) == 6
