"""Does a patch change the code a kernel runs?  The executable sections of two builds, compared.

A proof of a patch that compiles to the same machine code as the base would
spend its runs measuring noise (#15's comment-only decoy did, and came out
NOT_FIXED by chance).  ``compare`` reads every executable section
(``SHF_EXECINSTR``: ``.text``, ``.init.text``, ``.noinstr.text``, ...) of the
two builds' ``vmlinux`` and of every module both ship, and, for modules
(relocatable objects, whose call sites are zeros until loaded), the
relocations that apply to those sections, by target symbol name.  Equal
everywhere: the patch changes no code this kernel runs.

What is *not* code is left out on purpose: ``__bug_table`` (a BUG_ON's or
WARN_ON's line number lives there, not in the instructions), ``.rodata``
(messages), debug info.  A patch that only moves a ``BUG_ON`` to another line
therefore changes no code; one that changes a message does change code when
the message's new length moves the strings the code addresses.  The builds
must be reproducible for this to mean anything: the build sets
``KBUILD_BUILD_TIMESTAMP`` and ``KBUILD_BUILD_VERSION``, so the version banner
does not differ between two builds of one tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import KernelError
from harness.kernels.kernel import Kernel


@dataclass(frozen=True)
class CodeDiff:
    """What differs between two builds' code: the objects and their sections (empty: the same code)."""

    compared: int  # objects compared (vmlinux and the modules both builds have)
    changed: tuple[str, ...] = ()  # "vmlinux: .text", "fs/ext2/ext2.ko: .text (relocations)", ...
    only_one: tuple[str, ...] = ()  # modules one build has and the other does not
    notes: tuple[str, ...] = field(default=())

    @property
    def same(self) -> bool:
        return not self.changed and not self.only_one

    def describe(self) -> str:
        if self.same:
            modules = f"and {self.compared - 1} modules" if self.compared > 1 else "(it has no modules)"
            return f"the executable sections of vmlinux {modules} are identical"
        what = [*self.changed, *(f"{m} (in one build only)" for m in self.only_one)]
        more = f" and {len(what) - 6} more" if len(what) > 6 else ""
        return "code differs in " + ", ".join(what[:6]) + more


def _elf():
    from elftools.common.exceptions import ELFError  # imported on first use: only prove compares builds
    from elftools.elf.elffile import ELFFile  # (as above)
    from elftools.elf.relocation import RelocationSection  # (as above)

    return ELFFile, RelocationSection, ELFError


SHF_EXECINSTR = 0x4


def code_digests(path: Path) -> dict[str, str]:
    """Section name -> sha256 of every executable section (and, for relocatable objects, of its relocations)."""
    ELFFile, RelocationSection, ELFError = _elf()
    out: dict[str, str] = {}
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            sections = list(elf.iter_sections())
            for sec in sections:
                if sec["sh_flags"] & SHF_EXECINSTR and sec["sh_type"] == "SHT_PROGBITS":
                    out[sec.name] = hashlib.sha256(sec.data()).hexdigest()
            if elf["e_type"] != "ET_REL":
                return out
            for sec in sections:
                if not isinstance(sec, RelocationSection):
                    continue
                target = sections[sec["sh_info"]]
                if target.name not in out:
                    continue
                symtab = sections[sec["sh_link"]]
                h = hashlib.sha256()
                for rel in sec.iter_relocations():
                    sym = symtab.get_symbol(rel["r_info_sym"])
                    name = sym.name
                    if not name and isinstance(sym["st_shndx"], int):  # a section symbol: name its section
                        name = sections[sym["st_shndx"]].name
                    h.update(f"{rel['r_offset']:x} {rel['r_info_type']} {name} {rel['r_addend'] if rel.is_RELA() else 0}\n".encode())
                out[f"{target.name} (relocations)"] = h.hexdigest()
    except (OSError, ELFError) as exc:
        raise KernelError(f"cannot read the code of {path}: {exc}") from None
    return out


def _modules(kernel: Kernel) -> dict[str, Path]:
    """Module path relative to lib/modules/<release>/ -> file (none for a kernel without modules)."""
    if kernel.root is None:
        return {}
    base = kernel.root / "lib" / "modules" / kernel.release
    if not base.is_dir():
        return {}
    return {str(p.relative_to(base)): p for p in sorted(base.rglob("*.ko"))}


def _objects(kernel: Kernel) -> Iterator[tuple[str, Path]]:
    if kernel.vmlinux is None or not Path(kernel.vmlinux).exists():
        raise KernelError(f"{kernel.name} has no vmlinux to compare (a prebuilt kernel cannot be patched)")
    yield "vmlinux", Path(kernel.vmlinux)
    yield from _modules(kernel).items()


def compare(base: Kernel, patched: Kernel) -> CodeDiff:
    """The code of ``patched`` against ``base`` (both source builds)."""
    a, b = dict(_objects(base)), dict(_objects(patched))
    changed = []
    for name in sorted(a.keys() & b.keys(), key=lambda n: (n != "vmlinux", n)):
        da, db = code_digests(a[name]), code_digests(b[name])
        changed += [f"{name}: {sec}" for sec in sorted(da.keys() | db.keys()) if da.get(sec) != db.get(sec)]
    only = sorted(a.keys() ^ b.keys())
    return CodeDiff(len(a.keys() & b.keys()), tuple(changed), tuple(only))
