from pathlib import Path

from harness.guest.snapshot.dump import choose_format, dump_arguments


def test_kdump_zlib_is_chosen_when_offered():
    assert choose_format({"formats": ["elf", "kdump-zlib", "kdump-lzo"]}) == "kdump-zlib"


def test_elf_when_no_kdump_format():
    assert choose_format({"formats": ["elf", "win-dmp"]}) == "elf"
    assert choose_format({}) == "elf"


def test_dump_arguments():
    assert dump_arguments(Path("/r/vmcore"), "elf") == {"paging": False, "protocol": "file:/r/vmcore", "format": "elf"}
