"""``matrix.yaml`` -> a ``Matrix`` of ``Cell``s; every reproducer and kernel name is checked here.

    name: nightly
    runs: 3                                  # default runs per cell (else each spec's)
    kernels: ['debian:6.1.0-*', debian:6.12.117]
    reproducers:
      - ext4_inline                          # on the top-level kernels
      - {name: xfs_mkwrite_delalloc}         # a spec with variants runs on them (like `harness repro`)
      - {name: ext2_iomap_blkseq, variants: [stock], runs: 1}
      - {name: x, kernels: [{name: 'debian-src:6.1.192', variant: v}]}
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import kernels
from harness.errors import SpecError, UnknownName
from harness.paths import PROJECT_ROOT
from harness.repro import spec as specs
from harness.results.db import CellResult
from harness.yamlio import Fields, load_mapping

DEFAULT_SPEC = PROJECT_ROOT / "matrix.yaml"

Available = Callable[[str], list[str]]  # kernel source kind -> the names it offers ([] when it cannot list them)


@dataclass(frozen=True)
class Cell:
    kernel: str  # kernel name, e.g. debian:6.1.0-47, debian-src:6.1.192, git:/src/linux@v6.1
    repro: str
    variant: str | None = None  # one of the reproducer spec's variants (source + patch stack + kconfig)
    expectation: str | None = None  # from the reproducer's spec: 'reproduce', 'clean' or None
    runs: int | None = None  # None: the spec's

    @property
    def kernel_id(self) -> str:
        return f"{self.kernel}/{self.variant}" if self.variant else self.kernel

    @property
    def id(self) -> str:
        return f"{self.kernel_id}:{self.repro}"

    def pending(self) -> CellResult:
        return CellResult(cell=self.id, kernel=self.kernel_id, repro=self.repro, expectation=self.expectation)


@dataclass(frozen=True)
class Matrix:
    path: Path
    name: str
    cells: tuple[Cell, ...]
    specs: Mapping[str, specs.Spec] = field(default_factory=dict, compare=False, repr=False)

    def select(self, only: Sequence[str] = ()) -> tuple[Cell, ...]:
        """Cells matching any of ``only`` (globs over KERNEL:REPRO, a kernel or a reproducer)."""
        if not only:
            return self.cells
        chosen: set[Cell] = set()
        for pattern in only:
            hits = {c for c in self.cells if any(fnmatch.fnmatchcase(s, pattern) for s in (c.id, c.kernel_id, c.repro))}
            if not hits:
                raise UnknownName(
                    f"Unknown cell {pattern!r} in {self.path.name}. Available: {', '.join(c.id for c in self.cells)}"
                )
            chosen |= hits
        return tuple(c for c in self.cells if c in chosen)


def _sources_available(kind: str) -> list[str]:
    return kernels.SOURCES.select(kind).available()


def _kernels(value: Any, where: str, available: Available) -> list[tuple[str, str | None]]:
    """Kernel entries: a name, a glob over the source's names, or {name, variant}."""
    if not isinstance(value, list):
        raise SpecError(f"{where}: expected a list of kernel names")
    out: list[tuple[str, str | None]] = []
    for i, entry in enumerate(value):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise SpecError(f"{where}[{i}]: expected a kernel name or a mapping with name and variant")
        f = Fields(entry, f"{where}[{i}]", {"name", "variant"})
        name, variant = f.get("name", str, required=True), f.get("variant", str, None)
        kind, _ = kernels.split_name(name)
        names = available(kind)  # [] when the source cannot list its kernels (git:, dir:)
        if any(ch in name for ch in "*?["):
            matches = [n for n in names if fnmatch.fnmatchcase(n, name)]
            if not matches:
                raise UnknownName(f"Unknown kernel {name!r} (no match). Available: {', '.join(names) or '(none listed)'}")
            out += [(n, variant) for n in matches]
        elif names and name not in names:
            raise UnknownName(f"Unknown kernel {name!r}. Available: {', '.join(names)}")
        else:
            out.append((name, variant))
    return out


def _entry_kernels(e: Fields, spec: specs.Spec, default: list, where: str, avail: Available) -> list:
    """A reproducer entry's kernels: its own, else its spec's variants (like `harness repro`), else the default."""
    if "kernels" in e.data:
        return _kernels(e.get("kernels", list), f"{where}: kernels", avail)
    if "variants" in e.data or spec.variants:
        wanted = e.strings("variants", ("all",))
        chosen = spec.variants if wanted == ("all",) else tuple(spec.variant(v) for v in wanted)
        return [(v.source, v.name) for v in chosen]
    return default


def load_matrix(path: Path | str | None = None, *, available: Available | None = None) -> Matrix:
    """Parse ``matrix.yaml`` (default: the project's)."""
    path = Path(path or DEFAULT_SPEC)
    f = Fields(load_mapping(path), str(path), {"name", "runs", "kernels", "reproducers"})
    avail = functools.cache(available or _sources_available)
    default_kernels = _kernels(f.get("kernels", list, []), f"{path}: kernels", avail)
    default_runs = f.get("runs", int, None)
    cells: dict[str, Cell] = {}
    loaded: dict[str, specs.Spec] = {}
    for i, entry in enumerate(f.get("reproducers", list, required=True)):
        where = f"{path}: reproducers[{i}]"
        e = Fields(entry if isinstance(entry, dict) else {"name": entry}, where, {"name", "kernels", "variants", "runs"})
        name = str(e.get("name", str, required=True))
        spec = loaded[name] = specs.load(name)
        entry_kernels = _entry_kernels(e, spec, default_kernels, where, avail)
        runs = e.get("runs", int, default_runs)
        if not entry_kernels:
            raise SpecError(f"{where}: no kernels (give a top-level kernels: list or the reproducer's own kernels:)")
        if runs is not None and runs < 1:
            raise SpecError(f"{where}: runs must be positive")
        for kernel, variant in entry_kernels:
            if variant and spec.variant(variant).source != kernel:
                raise SpecError(f"{where}: variant {variant} of {name} builds {spec.variant(variant).source}, not {kernel}")
            cell = Cell(kernel, name, variant, None, runs)
            cells[cell.id] = replace(cell, expectation=spec.expect.for_kernel(cell.kernel_id))
    return Matrix(path=path, name=f.get("name", str, path.stem), cells=tuple(cells.values()), specs=loaded)
