"""The Code: line disassembled like scripts/decodecode (harness.report.decodecode), with binutils."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.report import Symbolized, parse
from harness.report.decodecode import HEADING, code_bytes, decode

LOG = Path(__file__).parent / "data" / "symbolize" / "ext4-inline-debian-6.1.0-57.log"  # a real run's console
needs_objdump = pytest.mark.skipif(shutil.which("objdump") is None, reason="needs binutils (harness setup)")


def test_the_kernel_code_line_not_the_user_one():
    data, mark = code_bytes(parse(LOG.read_text())[0].text)
    assert data[mark:mark + 2] == b"\x0f\x0b"  # <0f> 0b: the BUG()'s ud2
    assert data[:2] == b"\x41\x5e" and len(data) == 64
    user_only = "RIP: 0033:0x7fa1d3c5180a\nCode: c3 0f 1f 80 00 <48> 3d 01 f0\n"
    assert code_bytes(user_only) is None and decode(user_only) == ""


@needs_objdump
def test_the_trapping_instruction_is_marked():
    out = decode(parse(LOG.read_text())[0].text)
    marked = [row for row in out.splitlines() if "<-- trapping instruction" in row]
    assert len(marked) == 1 and marked[0].lstrip().startswith("2a:*") and "ud2" in marked[0], out
    tail = out.split("Code starting with the faulting instruction\n", 1)[1].splitlines()
    assert tail[1].split("\t")[-1].strip() == "ud2"  # from the mark on, the first instruction is the faulting one


@needs_objdump
def test_report_file_carries_it_once():
    text = parse(LOG.read_text())[0].text
    written = Symbolized(text, "a note").for_file()
    assert written.count(HEADING) == 1 and written.endswith("(symbols: a note)\n")
    assert Symbolized.bare_of(written) == text
    assert Symbolized(Symbolized.bare_of(written)).for_file().count(HEADING) == 1
