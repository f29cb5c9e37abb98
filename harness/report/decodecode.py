"""A report's ``Code:`` line disassembled, as the kernel's scripts/decodecode does.

The bytes around the faulting instruction (``<0f>`` marks its first byte) go
through binutils ``objdump -D -b binary -mi386:x86-64`` twice: all of them
(the first instructions may be cut: the line starts mid-code), with the
instruction at the mark flagged ``<-- trapping instruction``, and from the
mark on, which starts at an instruction for sure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

_CODE = re.compile(r"^Code: ((?:(?:<[0-9a-f]{2}>|\([0-9a-f]{4}\)|[0-9a-f]{2}) ?)+)\s*$")
_KERNEL_RIP = re.compile(r"RIP: 0010:")
_INSN = re.compile(r"^\s*([0-9a-f]+):\t")
_TIMEOUT = 30
HEADING = "Code: disassembled (scripts/decodecode)"


def code_bytes(report_text: str) -> tuple[bytes, int] | None:
    """The kernel-mode ``Code:`` line's bytes and the offset of the marked one, or None
    (no such line, no mark, user-mode code only)."""
    lines = report_text.splitlines()
    for i, line in enumerate(lines):
        m = _CODE.match(line.strip())
        if m is None or "<" not in line:
            continue
        rip = next((lines[j] for j in range(i - 1, max(-1, i - 4), -1) if lines[j].startswith("RIP: ")), "")
        if rip and not _KERNEL_RIP.search(rip):
            continue  # RIP: 0033: the user-space code at a syscall's return
        data, mark = bytearray(), None
        for token in m.group(1).split():
            if token.startswith(("<", "(")):
                mark = len(data)
            data += bytes.fromhex(token.strip("<>()"))
        if mark is not None:
            return bytes(data), mark
    return None


def decode(report_text: str) -> str:
    """The disassembly section for report.txt ("" when there is nothing to decode or no objdump)."""
    found = code_bytes(report_text)
    tool = shutil.which("objdump")
    if found is None or tool is None:
        return ""
    data, mark = found
    try:
        whole = _disassemble(tool, data)
        tail = _disassemble(tool, data[mark:])
    except (OSError, subprocess.SubprocessError):
        return ""
    marked = []
    for row in whole:
        m = _INSN.match(row)
        if m and int(m.group(1), 16) == mark:
            row = row.replace(":\t", ":*\t", 1) + "\t\t<-- trapping instruction"
        marked.append(row)
    return "\n".join([HEADING, "All code", "========", *marked,
                      "", "Code starting with the faulting instruction",
                      "===========================================", *tail]) + "\n"


def _disassemble(tool: str, data: bytes) -> list[str]:
    """objdump's instruction rows for raw x86-64 bytes."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        Path(f.name).write_bytes(data)
        done = subprocess.run([tool, "-D", "-b", "binary", "-mi386:x86-64", f.name], capture_output=True,
                              text=True, timeout=_TIMEOUT, check=True)
    return [row for row in done.stdout.splitlines() if _INSN.match(row)]
