"""What a matrix's CI pipeline runs: each kernel once, the cells (and their shards), one merge.

``plan(matrix)`` is a pure function of the matrix (and, for shards, of the
measured seconds it is given): the exports (``harness.matrix.ci``) write it as
YAML and ``harness matrix export`` prints ``Plan.describe()`` first.

- **kernels**: every distinct kernel the cells need, once.  A source build is
  a *recipe* (source, patch stack, kconfig fragments: ``artifact.recipe_id``),
  so two cells (or two reproducers' variants) that ask for the same build share
  one build job; a Debian image is one fetch job per name.  The job's artifact
  is ``kernels/<job>.tar`` (``harness kernel export``).
- **cells**: one job per cell (a sharded fstests cell: one per shard), which
  imports its kernels' artifacts (``harness matrix run --kernels DIR``) and
  keeps its results folder as its own artifact.
- **merge**: one job reading every cell's artifact (``harness matrix merge``).

A proof cell with ``shards: N`` is a base check job (``harness prove ... --plan
--shards N``: the plan) and N shard jobs that need its artifact (``harness prove
--shard I/N --from-check``); the merge folds them into one proof
(``harness.prove.shards``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness import kernels
from harness.kernels import artifact
from harness.kernels.build import Variant
from harness.matrix.shards import Shard
from harness.matrix.spec import Cell, Matrix
from harness.paths import PROJECT_ROOT
from harness.repro.spec import Spec

KERNELS_DIR = "kernels"  # where a cell job finds its kernels' artifacts
RESULTS_DIR = "out"  # a cell job's results root: out/<job>/


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "es" if noun.endswith(("h", "s")) else "s")


def job_id(prefix: str, name: str) -> str:
    """An id both engines take as a job and an artifact name: letters, digits, _ and -."""
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")


@dataclass(frozen=True)
class KernelJob:
    """One kernel, made once: a build (``recipe``) or a Debian image's fetch."""

    job: str
    name: str  # the kernel's name (what `harness kernel export` is given)
    recipe: str | None  # a build's recipe id; None: a Debian image
    build: tuple[str, ...] = ()  # `harness kernel build` arguments (a build)
    cells: tuple[str, ...] = ()  # the cells that use it

    @property
    def file(self) -> str:
        return f"{KERNELS_DIR}/{self.job}.tar"

    @property
    def verb(self) -> str:
        return "build" if self.recipe else "fetch"


@dataclass(frozen=True)
class ProofPart:
    """A job of a proof cell split over shards: its base check (``index`` 0), or shard ``index`` of ``of``."""

    index: int
    of: int
    check: str  # the base check's job, whose artifact holds the plan
    argv: tuple[str, ...] = ()  # the base check's `harness prove` arguments

    def describe(self) -> str:
        return f"proof base check, plan of {self.of} shards" if not self.index else f"proof shard {self.index}/{self.of}"


@dataclass(frozen=True)
class PlannedCell:
    """One cell's job (or one shard of it)."""

    job: str
    cell: str  # the cell id (`--only`)
    kernels: tuple[str, ...]  # KernelJob.job of each kernel it needs
    shard: Shard | None = None
    proof: ProofPart | None = None

    @property
    def results(self) -> str:
        return f"{RESULTS_DIR}/{self.job}"


@dataclass(frozen=True)
class Plan:
    spec: str  # the matrix file, as the jobs name it (relative to the project)
    name: str
    kernels: tuple[KernelJob, ...]
    cells: tuple[PlannedCell, ...]
    in_cell: tuple[tuple[str, str], ...] = ()  # (cell, why its kernel is resolved in the cell's own job)
    cell_count: int = 0
    shards: Mapping[str, tuple[Shard, ...]] = field(default_factory=dict)

    def kernel(self, job: str) -> KernelJob:
        return next(k for k in self.kernels if k.job == job)

    def describe(self) -> str:
        """What the pipeline will do, before it is written (``harness matrix export``)."""
        builds = [k for k in self.kernels if k.recipe]
        fetches = [k for k in self.kernels if not k.recipe]
        uses = sum(len(k.cells) for k in builds)
        lines = [f"pipeline of {self.spec} ({self.name}): {len(self.kernels)} kernel jobs, "
                 f"{len(self.cells)} cell jobs for {self.cell_count} cells, 1 merge job"]
        lines.append(f"  kernels: {plural(len(builds), 'build')}, {plural(len(fetches), 'Debian fetch')}, each once, handed to the "
                     "cells as artifacts" + (f" ({plural(uses, 'cell kernel')} from {plural(len(builds), 'build')})" if builds else ""))
        for k in self.kernels:
            what = f"recipe {k.recipe}" if k.recipe else "Debian image"
            lines.append(f"    {k.verb:<5} {k.name}  ({what}) -> {len(k.cells)} cell(s)  [{k.job}]")
        proofs = {c.cell for c in self.cells if c.proof}
        lines.append("  cells:")
        for c in self.cells:
            kern = ", ".join(c.kernels) or "its own kernel"
            part = f" · {c.shard.describe()}" if c.shard else (f" · {c.proof.describe()}" if c.proof else "")
            lines.append(f"    {c.cell}{part}  <- {kern}  [{c.job}]")
        for cell, why in self.in_cell:
            lines.append(f"    ({cell}: {why})")
        lines.append("  merge: every cell's folder -> one matrix folder (matrix.json, junit.xml, index.html)"
                     + (f"; {len(self.shards)} sharded cell(s) merged into one result each" if self.shards else "")
                     + (f"; {len(proofs)} proof(s) over shards merged into one proof each" if proofs else ""))
        return "\n".join(lines) + "\n"


# --- kernels --------------------------------------------------------------------------------------


def _wanted(cell: Cell, spec: Spec) -> list[tuple[str, Variant | None, tuple[str, ...]]] | str:
    """(kernel name, its recipe or None for a Debian image, build arguments) for each kernel the cell
    needs, or why its job resolves the kernel itself."""
    if cell.prove:  # its base and patched recipes come with the proof's redesign; until then they build here
        return "a proof cell builds its base and patched kernels in its own job"
    if cell.variant:
        return [(cell.kernel_id, spec.variant(cell.variant).build, (cell.repro, "--variant", cell.variant))]
    kind, rest = kernels.split_name(cell.kernel)
    if kind == "debian":
        return [(cell.kernel, None, ())]
    if "/" in rest:
        return "a named build of a local cache: its job looks for it in its own cache"
    if hasattr(kernels.SOURCES.select(kind), "checkout"):
        return [(cell.kernel, Variant(source=cell.kernel), (cell.kernel,))]
    return f"{kind}: kernels are resolved by the cell's job"


def recipe_for(cell: Cell, spec: Spec) -> Variant | None:
    """The build recipe the cell's kernel is made from; None: a Debian image, or a kernel the cell's job
    resolves itself."""
    wanted = _wanted(cell, spec)
    return None if isinstance(wanted, str) else wanted[0][1]


def _kernel_jobs(cells: Sequence[Cell], specs: Mapping[str, Spec]) -> tuple[list[KernelJob], dict, list]:
    """The distinct kernels (first use names the job), each cell's kernel jobs, the cells left to resolve theirs."""
    by_key: dict[str, KernelJob] = {}
    per_cell: dict[str, list[str]] = {}
    in_cell: list[tuple[str, str]] = []
    taken: set[str] = set()
    for cell in cells:
        wanted = _wanted(cell, specs[cell.repro])
        if isinstance(wanted, str):
            in_cell.append((cell.id, wanted))
            per_cell[cell.id] = []
            continue
        jobs = []
        for name, variant, args in wanted:
            key = artifact.variant_recipe(variant) if variant else f"debian {name}"
            if key not in by_key:
                job = job_id("build" if variant else "fetch", name)
                if job in taken:  # another recipe under the same name (two specs' "stock" variants)
                    job = f"{job}-{key[:6]}"
                taken.add(job)
                by_key[key] = KernelJob(job, name, key if variant else None, args)
            k = by_key[key]
            by_key[key] = KernelJob(k.job, k.name, k.recipe, k.build, (*k.cells, cell.id))
            jobs.append(by_key[key].job)
        per_cell[cell.id] = list(dict.fromkeys(jobs))
    return list(by_key.values()), per_cell, in_cell


def plan(matrix: Matrix, spec: str, *, cells: Sequence[Cell] | None = None,
         shards: Mapping[str, tuple[Shard, ...]] | None = None) -> Plan:
    """The pipeline of ``matrix`` (or of ``cells``): ``spec`` is the matrix file as the jobs name it;
    ``shards``: cell id -> its shards (``shards.split``), for the cells the matrix splits."""
    cells = tuple(cells if cells is not None else matrix.cells)
    shards = dict(shards or {})
    kernel_jobs, per_cell, in_cell = _kernel_jobs(cells, matrix.specs)
    jobs = []
    for cell in cells:
        base = job_id("cell", cell.id)
        if cell.id in shards:
            jobs += [PlannedCell(f"{base}-{s.index}of{s.of}", cell.id, tuple(per_cell[cell.id]), s) for s in shards[cell.id]]
        elif cell.prove and cell.shards > 1:
            check = ProofPart(0, cell.shards, f"{base}-check", prove_argv(cell))
            jobs.append(PlannedCell(check.check, cell.id, tuple(per_cell[cell.id]), proof=check))
            jobs += [PlannedCell(f"{base}-{i}of{cell.shards}", cell.id, tuple(per_cell[cell.id]),
                                 proof=replace(check, index=i)) for i in range(1, cell.shards + 1)]
        else:
            jobs.append(PlannedCell(base, cell.id, tuple(per_cell[cell.id])))
    seen: dict[str, int] = {}
    unique = []
    for j in jobs:  # two cell ids that differ only in characters a job id cannot hold
        n = seen[j.job] = seen.get(j.job, 0) + 1
        unique.append(j if n == 1 else replace(j, job=f"{j.job}-{n}"))
    return Plan(spec, matrix.name, tuple(kernel_jobs), tuple(unique), tuple(in_cell), len(cells), shards)


def needed(plan_: Plan, cell: str) -> list[KernelJob]:
    """The kernel jobs one cell's job imports."""
    jobs = next((c.kernels for c in plan_.cells if c.cell == cell), ())
    return [plan_.kernel(j) for j in jobs]


def _project_path(path: str) -> str:
    """A patch path as a CI job's checkout names it (relative to the project when it is inside)."""
    prefix, bare = ("revert:", path[7:]) if path.startswith("revert:") else ("", path)
    if os.path.isabs(bare) and Path(bare).is_relative_to(PROJECT_ROOT):
        bare = os.path.relpath(bare, PROJECT_ROOT)
    return prefix + bare


def prove_argv(cell: Cell) -> tuple[str, ...]:
    """The `harness prove` arguments of a proof cell (its kernel, patches and rule), for its base check job."""
    e = cell.prove
    argv = ["harness", "prove", cell.repro, *(("--variant", e.variant) if e.variant else ()),
            *(("--base", e.base) if e.base else ())]
    for patch in e.patches:
        argv += ["--patch", _project_path(patch)]
    argv += ["--confidence", f"{e.confidence:g}", "--fraction", f"{e.fraction:g}", "--trial", str(e.trial)]
    return tuple(argv)

