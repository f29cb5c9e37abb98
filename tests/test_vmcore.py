"""harness vmcore's pure parts: where a run's core is, which kernel made it, what the console names."""

import json

import pytest

from harness.report import vmcore

CONSOLE = """[   15.74] Modules linked in: qemu_fw_cfg ext4 crc16 mbcache jbd2 loop virtio_net
[   15.75] RIP: 0010:ext4_write_inline_data+0xed/0x100 [ext4]
[   15.76] Call Trace:
[   15.76]  <TASK>
[   15.77]  ext4_write_inline_data_end+0x9f/0x2a0 [ext4]
[   15.78]  generic_perform_write+0x12b/0x210
[   15.79]  jbd2__journal_start+0x10/0x200 [jbd2]
"""


def test_the_core_of_a_run_folder_or_of_its_results_folder(tmp_path):
    with pytest.raises(vmcore.VmcoreError, match="no vmcore in it or its run-\\*/ folders \\(run with --vmcore"):
        vmcore.find_core(tmp_path)
    (tmp_path / "run-02").mkdir()
    (tmp_path / "run-02" / "vmcore").write_bytes(b"core")
    (tmp_path / "run-01").mkdir()
    (tmp_path / "run-01" / "vmcore.part").write_bytes(b"half")  # a killed dump: never taken for a core
    assert vmcore.find_core(tmp_path) == tmp_path / "run-02" / "vmcore"
    assert vmcore.find_core(tmp_path / "run-02") == tmp_path / "run-02" / "vmcore"


def test_the_kernel_a_core_came_from(tmp_path):
    core = tmp_path / "run-01" / "vmcore"
    core.parent.mkdir()
    core.write_bytes(b"")
    with pytest.raises(vmcore.VmcoreError, match="give --kernel NAME"):
        vmcore.kernel_name(core)
    (tmp_path / "result.json").write_text(json.dumps({"kernel": {"name": "debian:6.1.0-57"}}))
    assert vmcore.kernel_name(core) == "debian:6.1.0-57"


def test_what_the_console_names():
    assert vmcore.console_modules(CONSOLE) == ["qemu_fw_cfg", "ext4", "crc16", "mbcache", "jbd2", "loop",
                                               "virtio_net"]
    assert vmcore.console_modules("[ 1.0] RIP: 0010:xfs_buf_ioend+0x1/0x2 [xfs]\n") == ["xfs"]
    assert vmcore.console_frames(CONSOLE) == ["ext4_write_inline_data", "ext4_write_inline_data_end",
                                              "generic_perform_write", "jbd2__journal_start"]
