"""``matrix.yaml`` -> a ``Matrix`` of ``Cell``s; every reproducer and kernel name is checked here.

    name: nightly
    runs: 3                                  # default runs per cell (else each spec's)
    kernels: ['debian:6.1.0-*', debian:6.12.117]
    reproducers:
      - ext4_inline                          # on the top-level kernels
      - {name: xfs_mkwrite_delalloc}         # a spec with variants runs on them (like `harness repro`)
      - {name: ext2_iomap_blkseq, variants: [stock], runs: 1}
      - {name: x, kernels: [{name: 'debian-src:6.1.192', variant: v}]}
      - {name: ext4_inline, kernels: ['debian:6.1', 'debian:6.1-oldest']}   # the newest and the oldest 6.1
      - {name: xfs_mkwrite_delalloc/fstests, variants: [stock], shards: 2}   # fstests over 2 CI jobs
      - name: ext2_iomap_blkseq               # a proof: one cell, one row, both kernels
        prove: {patch: [reproducers/ext2_iomap_blkseq/patches/0002-x.patch], variant: ext2-iomap,
                confidence: 0.95, fraction: 0.1, max_runs: 120, expect: fixed}

A ``prove:`` entry runs ``harness prove`` as one cell: ``patch`` (a path or a
list, relative to the matrix file; ``revert:P`` too), the kernel to patch
(``variant: V`` of the spec or ``base: SOURCE``; neither: as ``harness prove``
picks it), the stopping rule (``confidence``, ``fraction``, ``max_runs``,
``budget`` in minutes) and what the proof must show (``expect``: fixed, the
default, not_fixed, traded or base_clean).

``shards: N`` on an fstests reproducer's entry splits each of its cells over N
CI jobs (``harness matrix export``: its tests by their measured seconds, merged
back into one cell by ``harness matrix merge``); on a ``prove:`` entry, the
proof over N jobs after one base check job (``harness.prove.shards``);
``harness matrix run`` runs the cell whole.
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
from harness.kernels.patches import load_patches
from harness.paths import PROJECT_ROOT
from harness.prove import Policy, ProofVerdict
from harness.repro import spec as specs
from harness.results.db import CellResult
from harness.yamlio import Fields, load_mapping

DEFAULT_SPEC = PROJECT_ROOT / "matrix.yaml"

Available = Callable[[str], list[str]]  # kernel source kind -> the names it offers ([] when it cannot list them)


@dataclass(frozen=True)
class ProveEntry:
    """A matrix entry's ``prove:``: ``harness prove`` as one cell."""

    patches: tuple[str, ...]  # --patch arguments, paths absolute
    variant: str | None = None
    base: str | None = None
    confidence: float = 0.95
    fraction: float = 0.1
    max_runs: int = Policy.max_runs
    budget: float | None = None  # minutes
    expect: str = "fixed"  # the proof verdict that meets the expectation, lower case
    trial: str | float = "auto"  # the trials' length after the base check (harness prove --trial)

    def policy(self) -> Policy:
        return Policy(confidence=self.confidence, fraction=self.fraction, max_runs=self.max_runs, budget=self.budget,
                      trial=self.trial)

    @property
    def label(self) -> str:
        names = [("revert " if p.startswith("revert:") else "") + Path(p.removeprefix("revert:")).stem
                 for p in self.patches]
        return " + ".join(names)


PROVE_KEYS = {"patch", "variant", "base", "confidence", "fraction", "max_runs", "budget", "expect", "trial"}
PROVE_EXPECT = tuple(v.value.lower() for v in ProofVerdict if v is not ProofVerdict.INCONCLUSIVE)


def _prove_entry(data: Any, spec: specs.Spec, folder: Path, where: str) -> ProveEntry:
    """``prove: {patch, variant | base, confidence, fraction, max_runs, budget, expect, trial}``, checked."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping with patch: and variant: or base:")
    f = Fields(data, where, PROVE_KEYS)
    raw = f.get("patch", (str, list), required=True)
    patches = tuple(_patch_arg(str(p), folder) for p in ([raw] if isinstance(raw, str) else raw))
    if not patches:
        raise SpecError(f"{where}: patch: names no patch")
    for arg in patches:
        load_patches(arg)  # a missing or malformed patch: one line now, not when the cell runs
    variant, base = f.get("variant", str, None), f.get("base", str, None)
    if variant and base:
        raise SpecError(f"{where}: variant: and base: both name the kernel to patch: give one")
    if variant:
        spec.variant(variant)
    expect = f.get("expect", str, "fixed")
    if expect not in PROVE_EXPECT:
        raise SpecError(f"{where}: expect: {expect!r}: use one of {', '.join(PROVE_EXPECT)}")
    entry = ProveEntry(patches, variant, base, f.get("confidence", float, 0.95), f.get("fraction", float, 0.1),
                       f.get("max_runs", int, Policy.max_runs), f.get("budget", float, None), expect,
                       f.get("trial", (str, int, float), "auto"))
    try:
        entry.policy()
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None
    return entry


def _patch_arg(arg: str, folder: Path) -> str:
    prefix = "revert:" if arg.startswith("revert:") else ""
    return prefix + str((folder / Path(arg.removeprefix("revert:")).expanduser()).resolve())


@dataclass(frozen=True)
class Cell:
    kernel: str  # kernel name, e.g. debian:6.1.0-47, debian-src:6.1.192, git:/src/linux@v6.1
    repro: str
    variant: str | None = None  # one of the reproducer spec's variants (source + patch stack + kconfig)
    expectation: str | None = None  # from the reproducer's spec: 'reproduce', 'clean' or None
    runs: int | None = None  # None: the spec's
    prove: ProveEntry | None = None  # a proof: ``kernel``/``variant`` are the base, the row shows both kernels
    shards: int = 1  # CI jobs an fstests cell is split over (``harness matrix export``)

    @property
    def kernel_id(self) -> str:
        kernel = f"{self.kernel}/{self.variant}" if self.variant else self.kernel
        return f"{kernel} + {self.prove.label}" if self.prove else kernel

    @property
    def id(self) -> str:
        return f"{self.kernel_id}:{self.repro}"

    def matches(self, pattern: str) -> bool:
        """``--only``: a glob over KERNEL:REPRO, the kernel or the reproducer."""
        return any(fnmatch.fnmatchcase(s, pattern) for s in (self.id, self.kernel_id, self.repro))

    def pending(self) -> CellResult:
        return CellResult(cell=self.id, kernel=self.kernel_id, repro=self.repro, expectation=self.expectation)


@dataclass(frozen=True)
class Matrix:
    path: Path
    name: str
    cells: tuple[Cell, ...]
    specs: Mapping[str, specs.Spec] = field(default_factory=dict, compare=False, repr=False)

    def with_cells_named(self, only: Sequence[str], available: Available | None = None) -> Matrix:
        """The matrix plus a cell for every ``KERNEL:REPRO`` in ``only`` that names no cell of it but a
        kernel and a reproducer that exist (a reproducer just made by ``harness new``, on any kernel)."""
        avail = functools.cache(available or _sources_available)
        cells, loaded = dict((c.id, c) for c in self.cells), dict(self.specs)
        for pattern in only:
            if any(ch in pattern for ch in "*?[") or ":" not in pattern or any(c.matches(pattern) for c in self.cells):
                continue
            kernel, name = pattern.rsplit(":", 1)
            try:
                spec = loaded.get(name) or specs.load(name)
            except UnknownName:  # not KERNEL:REPRO (a kernel alone, a typo): select() says "Unknown cell ..."
                continue
            loaded[name] = spec
            source, _, variant = kernel.partition("/")
            if variant and variant in {v.name for v in spec.variants}:
                cell = Cell(source, name, variant)
            elif variant:  # a named build (SOURCE/NAME): the resolver finds it in the cache, or says how to build it
                cell = Cell(kernel, name)
            else:
                ((kernel, variant),) = _kernels([kernel], f"--only {pattern}", avail)  # an unknown kernel: one line
                cell = Cell(kernel, name, variant)
            cells[cell.id] = replace(cell, expectation=spec.expect.for_kernel(_judged_as(cell, avail)))
        return replace(self, cells=tuple(cells.values()), specs=loaded)

    def select(self, only: Sequence[str] = ()) -> tuple[Cell, ...]:
        """Cells matching any of ``only`` (globs over KERNEL:REPRO, a kernel or a reproducer)."""
        if not only:
            return self.cells
        chosen: set[Cell] = set()
        for pattern in only:
            hits = {c for c in self.cells if c.matches(pattern)}
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
        kind, rest = kernels.split_name(name)
        names = available(kind)  # [] when the source cannot list its kernels (git:, dir:)
        if any(ch in name for ch in "*?["):
            matches = [n for n in names if fnmatch.fnmatchcase(n, name)]
            if not matches:
                raise UnknownName(f"Unknown kernel {name!r} (no match). Available: {', '.join(names) or '(none listed)'}")
            out += [(n, variant) for n in matches]
        elif names and name not in names and not _concrete(kind, rest, names):
            raise UnknownName(f"Unknown kernel {name!r}. Available: {', '.join(names)}")
        else:
            out.append((name, variant))
    return out


def _concrete(kind: str, rest: str, names: list[str]) -> str | None:
    """``debian:6.1`` (the newest), ``debian:6.1-oldest``: the kernel the alias names today, or None.
    A cell keeps the alias (its id and its history do not go stale); the spec's expectation (globs
    over kernel names) judges it by the kernel it names today."""
    alias = getattr(kernels.SOURCES.select(kind), "alias", None)
    concrete = alias(rest, names) if alias is not None and names else None
    return f"{kind}:{concrete}" if concrete else None


def _judged_as(cell: Cell, available: Available) -> str:
    """The kernel id a cell's expectation is looked up for: an alias stands for its kernel of today."""
    if cell.variant:
        return cell.kernel_id
    kind, rest = kernels.split_name(cell.kernel)
    return _concrete(kind, rest, available(kind)) or cell.kernel_id


def _entry_kernels(e: Fields, spec: specs.Spec, default: list, where: str, avail: Available) -> list:
    """A reproducer entry's kernels: its own, else its spec's variants (like `harness repro`), else the default."""
    if "kernels" in e.data:
        return _kernels(e.get("kernels", list), f"{where}: kernels", avail)
    if "variants" in e.data or spec.variants:
        wanted = e.strings("variants", ("all",))
        chosen = spec.variants if wanted == ("all",) else tuple(spec.variant(v) for v in wanted)
        return [(v.source, v.name) for v in chosen]
    return default


def _prove_cell(e: Fields, spec: specs.Spec, folder: Path, where: str) -> Cell:
    """The one cell of a ``prove:`` entry (its own kernels: the base, and the base patched)."""
    if "kernels" in e.data or "variants" in e.data or "runs" in e.data:
        raise SpecError(f"{where}: a prove: entry names its kernel inside prove: (variant: or base:) "
                        "and runs until the proof settles (max_runs:); drop kernels:/variants:/runs:")
    entry = _prove_entry(e.data["prove"], spec, folder, f"{where}: prove")
    variant = entry.variant or (spec.variants[0].name if len(spec.variants) == 1 and not entry.base else None)
    if variant:
        kernel = spec.variant(variant).source
    elif entry.base or not spec.variants:
        kernel = entry.base or spec.kernel
    else:
        raise SpecError(f"{where}: prove: {spec.name} has the variants {', '.join(v.name for v in spec.variants)}: "
                        "say which one the patches go on (variant: V), or give base: SOURCE")
    return Cell(kernel, spec.name, variant, entry.expect, None, replace(entry, variant=variant))


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
        e = Fields(entry if isinstance(entry, dict) else {"name": entry}, where,
                   {"name", "kernels", "variants", "runs", "prove", "shards"})
        name = str(e.get("name", str, required=True))
        spec = loaded[name] = specs.load(name)
        shards = e.get("shards", int, 1)
        if shards < 1:
            raise SpecError(f"{where}: shards: {shards}: give a positive number of CI jobs")
        if shards > 1 and spec.fstests is None and "prove" not in e.data:
            raise SpecError(f"{where}: shards: only an fstests reproducer's cells are split over CI jobs, and proofs "
                            f"({name} runs a C reproducer: drop shards:, or prove: a fix with it)")
        if "prove" in e.data:
            cell = replace(_prove_cell(e, spec, path.parent, where), shards=shards)  # a proof over N CI jobs
            cells[cell.id] = cell
            continue
        entry_kernels = _entry_kernels(e, spec, default_kernels, where, avail)
        runs = e.get("runs", int, default_runs)
        if not entry_kernels:
            raise SpecError(f"{where}: no kernels (give a top-level kernels: list or the reproducer's own kernels:)")
        if runs is not None and runs < 1:
            raise SpecError(f"{where}: runs must be positive")
        for kernel, variant in entry_kernels:
            if variant and spec.variant(variant).source != kernel:
                raise SpecError(f"{where}: variant {variant} of {name} builds {spec.variant(variant).source}, not {kernel}")
            cell = Cell(kernel, name, variant, None, runs, shards=shards)
            cells[cell.id] = replace(cell, expectation=spec.expect.for_kernel(_judged_as(cell, avail)))
    return Matrix(path=path, name=f.get("name", str, path.stem), cells=tuple(cells.values()), specs=loaded)
