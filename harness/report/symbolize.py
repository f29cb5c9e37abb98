"""Add ``file:line`` to the stack frames of a report, when the kernel's artifacts are at hand.

``func+0xoff/0xsize`` becomes ``func+0xoff/0xsize file.c:123``; frames the
compiler inlined there get their own ``inlined_func file.c:45 [inline]`` line
first, as syzkaller prints them (``pkg/report/linux.go`` symbolizeLine: call
trace entries are return addresses, looked up one byte back; the RIP as is).
vmlinux frames through its symbols (System.map or ``nm``) and ``addr2line
-afi``; module frames (``[ext4]``) need no load address: ``func`` is looked up
in the .ko's own symbol table (section and offset) and ``addr2line -j
SECTION`` reads the relocatable object (llvm-symbolizer answers ``file:0`` for
those).  Whatever is missing or failing (no file, no DWARF, no tool, a tool
error) leaves those frames as they are.

``symbolize_kernel`` finds the files for a ``Kernel``: a build's vmlinux, a
Debian image's -dbg package (harness.kernels.debian.debug_files), and says in
a note what it could not do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

import harness.report.decodecode as decodecode
from harness.kernels import debian
from harness.kernels.kernel import Kernel
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
              kernel_src: Path | None = None, modules: dict[str, Path] | None = None) -> str:
    """``report_text`` with source locations added to its vmlinux frames and to the frames
    of the ``modules`` given (console name -> .ko with debug info)."""
    lines = report_text.splitlines(keepends=True)
    frames = {i: m for i, ln in enumerate(lines) if (m := FRAME_RE.search(ln)) and not _done(ln, m)}
    core = {i: m for i, m in frames.items() if not m.group(5)}
    locations: dict[int, list[SourceLoc]] = {}
    try:
        if core and vmlinux is not None and Path(vmlinux).is_file():
            faddr2line = Path(kernel_src, "scripts", "faddr2line") if kernel_src else None
            if faddr2line is not None and faddr2line.is_file():
                locations |= _via_faddr2line(faddr2line, Path(vmlinux), lines, core)
            else:
                locations |= _via_addr2line(Path(vmlinux), system_map, lines, core)
        for name, ko in (modules or {}).items():
            mine = {i: m for i, m in frames.items() if m.group(5) == name}
            if mine:
                locations |= _via_module(Path(ko), lines, mine)
    except (OSError, subprocess.SubprocessError, ValueError):
        pass  # what was resolved before the failure is kept
    if not locations:
        return report_text
    src_prefix = str(Path(kernel_src).resolve()) + os.sep if kernel_src else None
    out = []
    for i, ln in enumerate(lines):
        locs = locations.get(i)
        out.append(_annotate(ln, frames[i], locs, src_prefix) if locs else ln)
    return "".join(out)


def _done(line: str, m: re.Match) -> bool:
    """A frame symbolized already (``func+0x1/0x2 file.c:3``) or an ``[inline]`` line."""
    return bool(_ANNOTATED.match(line, m.end(3))) or line.rstrip().endswith("[inline]")


_ANNOTATED = re.compile(r" \S+:\d+")


@dataclass(frozen=True)
class Symbolized:
    """A report with what could be symbolized, and why the rest could not (``note``)."""

    text: str
    note: str = ""

    def for_file(self) -> str:
        """report.txt's text: the report, its Code: line disassembled, then the note as a last line."""
        code = decodecode.decode(self.text)
        return self.text + (f"\n{code}" if code else "") + (f"(symbols: {self.note})\n" if self.note else "")

    @staticmethod
    def bare_of(file_text: str) -> str:
        """The report in a report.txt ``for_file`` wrote: without the disassembly and the note."""
        cuts = [i for marker in (f"\n{decodecode.HEADING}", "(symbols: ") if (i := file_text.find(marker)) >= 0]
        return file_text[:min(cuts)] + ("\n" if cuts and not file_text[:min(cuts)].endswith("\n") else "") \
            if cuts else file_text


def symbolize_kernel(report_text: str, kernel: Kernel, *, fetch: bool = False, progress=None) -> Symbolized:
    """``report_text`` symbolized with ``kernel``'s files: a build's vmlinux (and modules under
    its root), a Debian image's -dbg package (cached; downloaded only with ``fetch``)."""
    names = sorted({m.group(5) for ln in report_text.splitlines() if (m := FRAME_RE.search(ln)) and m.group(5)})
    notes = []
    if kernel.kind == "debian":
        found = debian.debug_files(kernel, names, fetch=fetch, progress=progress)
        vmlinux, modules, system_map = found.vmlinux, found.modules, None
        if vmlinux is not None:
            system_map = _nm_map(vmlinux)
        notes.append(found.note)
    else:
        vmlinux, system_map = kernel.vmlinux, kernel.system_map
        modules = debian.module_files(kernel, names)
    missing = [str(p.name) for p in ([vmlinux] if vmlinux else []) + list(modules.values()) if not has_dwarf(p)]
    if missing:
        notes.append(f"no debug info in {', '.join(missing)} (a build without CONFIG_DEBUG_INFO)")
    if vmlinux is None and not modules and not notes[-1:]:
        notes.append(f"{kernel.name} has no vmlinux to look frames up in")
    if progress and (vmlinux or modules):
        progress(f"symbolizing with {', '.join(p.name for p in [vmlinux, *modules.values()] if p)}")
    text = symbolize(report_text, vmlinux, system_map, kernel.extra.get("source_dir"), modules)
    return Symbolized(text, "; ".join(n for n in notes if n))


_RUNNING = re.compile(r"(?:Not tainted|Tainted: [A-Z ]*?) +(\S+) #\S+(?: +Debian (\S+))?")


def kernel_mismatch(console: str, kernel: Kernel) -> str:
    """Why the kernel that printed ``console`` is not ``kernel`` ("" when it may be): the
    ``CPU: ... Not tainted RELEASE #N Debian VERSION`` line against the kernel's release
    (and Debian version).  Another build's files would give wrong lines."""
    m = _RUNNING.search(console)
    if m is None:
        return ""
    release, version = m.group(1), m.group(2)
    ours = kernel.extra.get("debian_version")
    if release != kernel.release or version and ours and version != ours:
        return (f"the log's kernel is {release}{f' (Debian {version})' if version else ''}, {kernel.name} is "
                f"{kernel.release}{f' (Debian {ours})' if ours else ''}: their build IDs differ, the report stays bare")
    return ""


def symbolize_run(folder: Path, kernel: Kernel, *, fetch: bool = True, no_symbols: bool = False,
                  progress=None) -> list[tuple[Path, str]]:
    """Every ``run-*/report.txt`` of a run folder rewritten symbolized (debug info fetched with
    ``fetch``): (path, note) each.  A report.txt written before keeps only its report part."""
    done = []
    for path in sorted(Path(folder).glob("run-*/report.txt")):
        bare = Symbolized.bare_of(path.read_text())
        console = path.with_name("console.log")
        why = "--no-symbols" if no_symbols else kernel_mismatch(
            console.read_text(errors="replace") if console.exists() else "", kernel)
        result = Symbolized(bare, why) if why else symbolize_kernel(bare, kernel, fetch=fetch, progress=progress)
        path.write_text(result.for_file())
        done.append((path, result.note))
    return done


def has_dwarf(path: Path) -> bool:
    """Whether an ELF file carries DWARF line tables (.debug_line)."""
    try:
        with open(path, "rb") as f:
            return ELFFile(f).get_section_by_name(".debug_line") is not None
    except (OSError, ELFError):
        return False


def _nm_map(vmlinux: Path) -> Path | None:
    """A System.map made from vmlinux's symbols once, beside it (Debian's boot/System.map is a stub)."""
    out = vmlinux.with_name(vmlinux.name + ".map")
    if not out.exists() and (nm := shutil.which("nm")):
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(_run([nm, "-n", str(vmlinux)]))
        tmp.rename(out)
    return out if out.exists() else None


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


@dataclass(frozen=True)
class _ModuleSymbol:
    section: str
    value: int
    size: int


def module_symbols(ko: Path) -> dict[str, list[_ModuleSymbol]]:
    """A .ko's function symbols: section name, offset in it, size (pyelftools)."""
    found: dict[str, list[_ModuleSymbol]] = {}
    with open(ko, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        if not isinstance(symtab, SymbolTableSection):
            return found
        for sym in symtab.iter_symbols():
            shndx = sym["st_shndx"]
            if sym["st_info"]["type"] == "STT_FUNC" and isinstance(shndx, int):
                found.setdefault(sym.name, []).append(
                    _ModuleSymbol(elf.get_section(shndx).name, sym["st_value"], sym["st_size"]))
    return found


def _via_module(ko: Path, lines: list[str], frames: dict[int, re.Match]) -> dict[int, list[SourceLoc]]:
    """Module frames: ``func+off`` is an offset in func's section of the .ko, no load address needed."""
    tool = shutil.which("addr2line")
    if tool is None or not ko.is_file():
        return {}
    symbols = module_symbols(ko)
    by_section: dict[str, dict[int, int]] = {}
    for i, m in frames.items():
        candidates = symbols.get(m.group(1))
        if not candidates:
            continue
        size = int(m.group(3), 16)
        sym = next((c for c in candidates if c.size == size), candidates[0])
        pc = sym.value + int(m.group(2), 16)
        by_section.setdefault(sym.section, {})[i] = pc if RIP_FRAME.search(lines[i]) else pc - 1
    located: dict[int, list[SourceLoc]] = {}
    for section, pcs in by_section.items():
        output = _run([tool, "-a", "-f", "-i", "-j", section, "-e", str(ko), *(hex(pc) for pc in sorted(set(pcs.values())))])
        by_pc = _parse_addr2line(output)
        located |= {i: by_pc[pc] for i, pc in pcs.items() if by_pc.get(pc)}
    return located


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


#: The kernel tree's top folders: a path is cut to start at the first of them
#: (Debian's DWARF names debian/build/build_amd64_none_amd64/fs/ext4/inline.c).
_TREE_TOP = re.compile(r"(?:^|/)((?:arch|block|certs|crypto|drivers|fs|include|init|io_uring|ipc|kernel|lib|mm|"
                       r"net|rust|samples|scripts|security|sound|usr|virt)/.*)$")


def _clean_path(path: str, src_prefix: str | None) -> str:
    if src_prefix and path.startswith(src_prefix):
        path = path[len(src_prefix):]
    while path.startswith("./"):
        path = path[2:]
    if (path.startswith("/") or not _TREE_TOP.match(path)) and (m := _TREE_TOP.search(path)):
        path = m.group(1)
    return path
