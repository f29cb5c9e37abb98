"""Add ``file:line`` to the stack frames of a report, when the kernel's artifacts are at hand.

``func+0xoff/0xsize`` becomes ``func+0xoff/0xsize file.c:123``; frames the
compiler inlined there get their own ``inlined_func file.c:45 [inline]`` line
first, as syzkaller prints them.  Frames of modules (``[ext4]``) are left as
they are: only vmlinux is looked up.  Whatever is missing or failing (no
vmlinux, no tool, a tool error) leaves the text unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from harness.report.oopses import RIP_FRAME

#: ``[<pc>] func+0xoff/0xsize [module buildid]`` as in syzkaller's linuxSymbolizeRe.
FRAME_RE = re.compile(
    r"(?:\[<(?:(?:0x)?[0-9a-f]+)>\])?[ \t]+\(?(?:[0-9]+:)?([a-zA-Z0-9_.]+)\+0x([0-9a-f]+)/0x([0-9a-f]+)"
    r"( ?\[([a-zA-Z0-9_.]+)( .*)?\])?\)?")
_TEXT_TYPES = frozenset("tTwW")
_TIMEOUT = 120


@dataclass(frozen=True)
class SourceLoc:
    """Where a pc is: the function (possibly inlined there) and its source line."""

    func: str
    file: str
    line: int


@dataclass(frozen=True)
class SymbolTable:
    """Text symbols of a kernel image: starts by name, and all starts sorted."""

    by_name: dict[str, list[int]]
    starts: list[int]

    @classmethod
    def parse(cls, text: str) -> SymbolTable:
        """From System.map or ``nm`` output (``address type name`` rows)."""
        by_name: dict[str, list[int]] = {}
        for row in text.splitlines():
            parts = row.split()
            if len(parts) >= 3 and parts[1] in _TEXT_TYPES:
                try:
                    by_name.setdefault(parts[2], []).append(int(parts[0], 16))
                except ValueError:
                    continue
        return cls(by_name, sorted(a for addrs in by_name.values() for a in addrs))

    def start_of(self, name: str, size: int) -> int | None:
        """Where ``name`` starts; among same-named (static) symbols, the one of ``size`` bytes."""
        candidates = self.by_name.get(name)
        if not candidates:
            return None
        for start in candidates:
            i = bisect_right(self.starts, start)
            if i < len(self.starts) and self.starts[i] - start == size:
                return start
        return candidates[0]


def load_system_map(path: Path) -> SymbolTable:
    """The text symbols of a System.map."""
    return SymbolTable.parse(Path(path).read_text(errors="replace"))


def frame_pc(line: str, symbols: SymbolTable) -> int | None:
    """The pc of a ``func+0xoff/0xsize`` frame, or None if ``func`` is unknown.

    Call trace entries are return addresses, so the pc is one byte back, inside
    the call; the ``RIP:`` line is the faulting pc itself.
    """
    m = FRAME_RE.search(line)
    if m is None:
        return None
    start = symbols.start_of(m.group(1), int(m.group(3), 16))
    if start is None:
        return None
    pc = start + int(m.group(2), 16)
    return pc if RIP_FRAME.search(line) else pc - 1


def symbolize(report_text: str, vmlinux: Path | None, system_map: Path | None,
              kernel_src: Path | None = None) -> str:
    """``report_text`` with source locations added to its vmlinux frames."""
    if vmlinux is None or not Path(vmlinux).is_file():
        return report_text
    lines = report_text.splitlines(keepends=True)
    frames = {i: m for i, ln in enumerate(lines) if (m := FRAME_RE.search(ln)) and not m.group(5)}
    if not frames:
        return report_text
    try:
        faddr2line = Path(kernel_src, "scripts", "faddr2line") if kernel_src else None
        if faddr2line is not None and faddr2line.is_file():
            locations = _via_faddr2line(faddr2line, Path(vmlinux), lines, frames)
        else:
            locations = _via_addr2line(Path(vmlinux), system_map, lines, frames)
    except (OSError, subprocess.SubprocessError, ValueError):
        return report_text
    src_prefix = str(Path(kernel_src).resolve()) + os.sep if kernel_src else None
    out = []
    for i, ln in enumerate(lines):
        locs = locations.get(i)
        out.append(_annotate(ln, frames[i], locs, src_prefix) if locs else ln)
    return "".join(out)


# --- resolving ----------------------------------------------------------------

def _via_addr2line(vmlinux: Path, system_map: Path | None, lines: list[str],
                   frames: dict[int, re.Match]) -> dict[int, list[SourceLoc]]:
    tool = shutil.which("addr2line")
    if tool is None:
        return {}
    if system_map is not None and Path(system_map).is_file():
        symbols = load_system_map(Path(system_map))
    elif nm := shutil.which("nm"):
        symbols = SymbolTable.parse(_run([nm, "-n", str(vmlinux)]))
    else:
        return {}
    pcs = {i: pc for i in frames if (pc := frame_pc(lines[i], symbols)) is not None}
    if not pcs:
        return {}
    unique = sorted(set(pcs.values()))
    output = _run([tool, "-a", "-f", "-i", "-e", str(vmlinux), *(hex(pc) for pc in unique)])
    by_pc = _parse_addr2line(output)
    return {i: by_pc[pc] for i, pc in pcs.items() if by_pc.get(pc)}


def _via_faddr2line(script: Path, vmlinux: Path, lines: list[str],
                    frames: dict[int, re.Match]) -> dict[int, list[SourceLoc]]:
    specs = {i: f"{m.group(1)}+0x{m.group(2)}/0x{m.group(3)}" for i, m in frames.items()}
    output = _run([str(script), str(vmlinux), *dict.fromkeys(specs.values())], cwd=script.parent.parent)
    by_spec = _parse_faddr2line(output)
    return {i: by_spec[spec] for i, spec in specs.items() if by_spec.get(spec)}


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=_TIMEOUT,
                          cwd=cwd, check=True)
    return proc.stdout


_LOCATION = re.compile(r"^(.*):(\d+)(?: \(discriminator \d+\))?$")


def _parse_addr2line(output: str) -> dict[int, list[SourceLoc]]:
    """``addr2line -a -f -i`` output: an address line, then func/location pairs."""
    result: dict[int, list[SourceLoc]] = {}
    current: list[SourceLoc] | None = None
    rows = output.splitlines()
    i = 0
    while i < len(rows):
        row = rows[i].strip()
        if row.startswith("0x") and " " not in row:
            current = result.setdefault(int(row, 16), [])
            i += 1
            continue
        if current is not None and i + 1 < len(rows):
            loc = _LOCATION.match(rows[i + 1].strip())
            if loc and not loc.group(1).startswith("??") and row != "??":
                current.append(SourceLoc(row, loc.group(1), int(loc.group(2))))
            i += 2
            continue
        i += 1
    return result


_FADDR_HEAD = re.compile(r"^(\S+\+0x[0-9a-f]+/0x[0-9a-f]+):$")
_FADDR_LOC = re.compile(r"^(?:\(inlined by\) )?(\S+) at (.*):(\d+)(?: \(discriminator \d+\))?$")


def _parse_faddr2line(output: str) -> dict[str, list[SourceLoc]]:
    """``faddr2line`` output: ``func+0x1/0x2:`` then ``f at file:line`` lines."""
    result: dict[str, list[SourceLoc]] = {}
    current: list[SourceLoc] | None = None
    for row in output.splitlines():
        row = row.strip()
        if head := _FADDR_HEAD.match(row):
            current = result.setdefault(head.group(1), [])
        elif current is not None and (loc := _FADDR_LOC.match(row)):
            current.append(SourceLoc(loc.group(1), loc.group(2), int(loc.group(3))))
    return result


# --- rendering ----------------------------------------------------------------

def _annotate(line: str, m: re.Match, locs: list[SourceLoc], src_prefix: str | None) -> str:
    """One output line per location: inlined callees first, the function itself last."""
    out = []
    for n, loc in enumerate(locs):
        where = f" {_clean_path(loc.file, src_prefix)}:{loc.line}"
        if n < len(locs) - 1:
            out.append(line[:m.start(1)] + loc.func + where + " [inline]" + line[m.end(3):])
        else:
            out.append(line[:m.end(3)] + where + line[m.end(3):])
    return "".join(ln if ln.endswith("\n") else ln + "\n" for ln in out[:-1]) + out[-1]


def _clean_path(path: str, src_prefix: str | None) -> str:
    if src_prefix and path.startswith(src_prefix):
        path = path[len(src_prefix):]
    while path.startswith("./"):
        path = path[2:]
    return path
