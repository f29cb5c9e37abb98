"""Running a matrix: each kernel resolved once, cells in bounded parallel guests, published after each cell.

A matrix run is one folder (``<results>/<time>-matrix-<name>/``) holding
``matrix.json`` (the index), one ``run_repro`` folder per cell, ``junit.xml``
and ``index.html``; every finished cell also lands in ``history.sqlite3`` in
the results root (``harness.results.publish``).  The index and the reports
are rewritten as soon as each cell ends, so Ctrl-C or SIGTERM loses no
finished cell, and ``--resume FOLDER`` runs only the cells that did not finish.

Kernels are resolved (fetched/built) once, before any cell starts, and guests
run ``jobs`` at a time, bounded by host CPUs and memory (``pool.plan_jobs``).

Exit codes of ``harness matrix run|merge`` (``exit_code``): OK every cell met
its expectation (or has none); UNMET some cell contradicts it; INFRA no
contradiction, but some cell could not be judged (BOOT_FAILURE, INFRA_ERROR,
BUILD_ERROR, missing); INTERRUPTED (130) Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console

from harness import kernels
from harness.errors import ExitCode, KernelError, SpecError
from harness.guest.accel import choose_accel
from harness.kernels import Kernel
from harness.matrix.pool import INTERRUPTED, in_order, in_processes, memory_bytes, plan_jobs, sigterm_as_interrupt
from harness.matrix.provecell import entry_recipes, run_proof_cell
from harness.matrix.spec import Available, Cell, Matrix, load_matrix
from harness.options import Accel, RunOptions
from harness.paths import results_dir
from harness.prove.record import ProofKernel
from harness.repro.run import RunResult, build_error, run_repro
from harness.repro.spec import Spec
from harness.results import new_run_folder, write_json
from harness.results.db import CellResult, History, MatrixIndex, db_path
from harness.results.publish import publish

DEFAULT_OPTIONS = RunOptions()
Progress = Callable[[str], None]
Resolver = Callable[..., Kernel]  # (cell, spec, progress=[, patched=True for a proof's patched kernel]) -> Kernel


# --- kernels ------------------------------------------------------------------------------------


def resolve_kernel(cell: Cell, spec: Spec, *, progress: Progress | None = None, patched: bool = False) -> Kernel:
    """The one place a matrix cell's kernel becomes a bootable kernel: a variant of the
    reproducer's spec is built (or found in the build cache), any other name is
    fetched/built by its source; a proof cell's base or (``patched``) patched kernel
    is built from its recipe.  Raises KernelError (-> a BUILD_ERROR cell)."""
    if cell.prove:
        base, patched_recipe, _ = entry_recipes(cell.prove, spec)
        return (patched_recipe if patched else base).build(progress=progress)
    if cell.variant:
        return spec.variant(cell.variant).recipe().build(progress=progress)
    return kernels.resolve(cell.kernel, progress=progress)


def kernel_key(cell: Cell) -> str:
    """Cells that share a kernel: a variant belongs to its reproducer (its patches live there)."""
    return cell.id if cell.variant else cell.kernel_id


def resolve_kernels(
    cells: Sequence[Cell], specs: Mapping[str, Spec], accel: str, resolver: Resolver, console: Console
) -> dict[str, tuple[Kernel, Accel] | KernelError]:
    """kernel_key -> (kernel, accelerator), or the KernelError: each kernel once, before any guest."""
    out: dict[str, tuple[Kernel, Accel] | KernelError] = {}
    for key, cell in {kernel_key(c): c for c in cells}.items():
        try:
            kernel = resolver(cell, specs[cell.repro],
                              progress=lambda m, k=cell.kernel_id: console.print(f"[dim]… {k}: {m}[/dim]"))
            chosen = Accel(*choose_accel(accel, kernel))
        except KernelError as exc:
            console.print(f"[red]{cell.kernel_id}: {exc.one_line()}[/red]")
            out[key] = exc
            continue
        out[key] = (kernel, chosen)
        console.print(f"{cell.kernel_id}: {kernel.release} ({kernel.version}), accel {chosen.name}: {chosen.reason}")
    return out


# --- one cell ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellJob:
    """Everything one cell needs; built in the parent, run in a worker."""

    cell: Cell
    spec: Spec
    kernel: Kernel
    accel: Accel
    options: RunOptions  # runs, backend, compile cache, the variant's boot options
    proof: tuple[ProofKernel, ProofKernel] | None = None  # a proof cell: base and patched (kernel is the base)

    @classmethod
    def for_cell(cls, cell: Cell, spec: Spec, kernel: Kernel, accel: Accel, options: RunOptions) -> CellJob:
        """The matrix's options for one cell: its runs unless the command line gave some, its variant's boot options."""
        cmdline = options.cmdline + (spec.variant(cell.variant).cmdline if cell.variant else ())
        return cls(cell, spec, kernel, accel, options.with_(runs=options.runs or cell.runs, cmdline=cmdline))


Runner = Callable[[CellJob, Path, "Progress | None"], Path]


def _run_line(r: RunResult) -> str:
    title = f" · {r.verdict.title}" if r.verdict.title else ""
    return f"run {r.index}: {r.outcome.value}{title} · {r.wall_seconds:.0f} s"


def run_cell(job: CellJob, folder: Path, progress: Progress | None = None) -> Path:
    """Run one cell into ``folder`` (the matrix folder); return its ``run_repro`` (or proof) folder."""
    if job.proof:
        return run_proof_cell(job, folder, progress)
    summary = run_repro(
        job.spec, job.kernel, job.options.with_(results=folder), accel=job.accel, progress=progress,
        on_run=(lambda r: progress(_run_line(r))) if progress else None,
    )
    return summary.folder


def error_cell(cell: Cell, folder: Path, verdict: str, message: str) -> Path:
    """A cell folder (``Summary.to_dict()`` shape, no runs) for a cell that could not run."""
    out = new_run_folder(cell.repro, cell.kernel_id, folder)
    (out / "error.txt").write_text(message + "\n")
    write_json(out / "result.json", {
        "repro": cell.repro, "kernel": {"name": cell.kernel_id}, "accel": None, "accel_reason": "",
        "verdict": verdict, "title": None, "hits": 0, "runs": 0, "expectation": cell.expectation,
        "expectation_met": None, "interrupted": False, "time_to_hit": [], "median_time_to_hit": None,
        "results": [], "error": message, "status": "done",
    })
    return out


# --- the index ----------------------------------------------------------------------------------


def adopt(index: MatrixIndex, names: Mapping[tuple[str, str], str]) -> MatrixIndex:
    """Index the cell folders on disk the index does not know yet (a cell cut short by Ctrl-C,
    or one that finished just before it).  ``names`` maps (repro, kernel name) to a cell id."""
    for result in sorted(index.folder.glob("*/result.json")):
        try:
            data = json.loads(result.read_text())
            key = (data["repro"], data["kernel"]["name"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        cell_id = names.get(key)
        current = index.cell(cell_id) if cell_id else None
        if current is None or current.status == "done" or current.folder == result.parent.name:
            continue
        if data.get("status") == "done" or current.status in ("pending", "interrupted"):
            index = index.with_cell(CellResult.from_folder(cell_id, current.kernel, result.parent, index.folder))
    return index


def exit_code(index: MatrixIndex) -> ExitCode:
    n = index.counts()
    return ExitCode.UNMET if n["unmet"] else ExitCode.INFRA if n["errors"] else ExitCode.OK


def summary_line(index: MatrixIndex) -> str:
    n = index.counts()
    return (f"{n['met']} met, {n['unmet']} not met, {n['errors']} errors, {n['cells'] - n['done']} not run"
            f" of {n['cells']} cells · {index.folder}")


def _line(i: int, n: int, r: CellResult) -> str:
    met = "" if r.is_error else {True: " [green]✓[/green]", False: " [red]✗[/red]"}.get(r.met, "")
    bits = [f"[{i}/{n}] {r.kernel} × {r.repro}: [bold]{r.verdict}[/bold]{met}"]
    if r.title or r.error:
        bits.append(r.title or r.error or "")
    if r.proof:  # both kernels of a proof
        b, p = r.proof.get("base") or {}, r.proof.get("patched") or {}
        bits.append(f"base {b.get('hits')}/{b.get('runs')}, patched {p.get('hits')}/{p.get('runs')} hits")
    else:
        bits.append(f"{r.hits}/{r.runs} hits")
    bits.append(f"{r.wall_seconds:.0f} s")
    return " · ".join(bits)


def open_index(matrix: Matrix, cells: Sequence[Cell], options: RunOptions, only: Sequence[str],
               prior: MatrixIndex | None) -> MatrixIndex:
    """The run's index: ``prior`` (a resumed run) with any cell it lacks, else a new matrix folder."""
    if prior:
        index = replace(prior, status="running")
        for c in cells:
            if index.cell(c.id) is None:
                index = index.with_cell(c.pending())
        return index
    root = Path(options.results) if options.results else results_dir()
    root.mkdir(parents=True, exist_ok=True)
    folder = new_run_folder("matrix", matrix.name, root)
    return MatrixIndex(
        id=folder.name, folder=folder, spec=str(matrix.path.resolve()), name=matrix.name,
        started=time.strftime("%Y-%m-%dT%H:%M:%S"), only=tuple(only), runs=options.runs,
        cells=tuple(c.pending() for c in cells),
    )


class Recorder:
    """A matrix run's state: the index (published after every change), the history DB and the console lines."""

    def __init__(self, index: MatrixIndex, cells: Sequence[Cell], console: Console):
        self.names = {(c.repro, c.kernel_id): c.id for c in cells}  # (repro, kernel name) -> cell id, for adopt
        self.index = adopt(index, self.names)
        self.history = History(db_path(self.index.folder.parent))
        self.console = console
        publish(self.index, self.history)
        self.todo = [c for c in cells if self.index.cell(c.id).status != "done"]
        self.total, self.finished = len(cells), len(cells) - len(self.todo)

    def record(self, result: CellResult) -> None:
        self.index = self.index.with_cell(result)
        publish(self.index, self.history)
        self.finished += 1
        self.console.print(_line(self.finished, self.total, result))

    def record_folder(self, cell: Cell, folder: Path) -> None:
        self.record(CellResult.from_folder(cell.id, cell.kernel_id, folder, self.index.folder))

    def adopt(self) -> None:
        self.index = adopt(self.index, self.names)

    def interrupted(self) -> None:
        self.index = replace(adopt(self.index, self.names), status="interrupted")
        publish(self.index, self.history)
        self.console.print(f"[yellow]interrupted: {self.index.counts()['done']}/{self.total} cells finished; "
                           f"continue with --resume {self.index.folder}[/yellow]")

    def finish(self) -> MatrixIndex:
        done = all(c.status == "done" for c in self.index.cells)
        self.index = replace(self.index, status="done" if done else "partial")
        publish(self.index, self.history)
        return self.index


# --- the matrix run -----------------------------------------------------------------------------


def proof_job(cell: Cell, spec: Spec, options: RunOptions, resolver: Resolver,
              console: Console) -> CellJob | KernelError:
    """A proof cell's job: its base and patched kernels built (through ``resolver``), each with its accelerator."""
    pair = []
    try:
        base, patched, _ = entry_recipes(cell.prove, spec)
        for recipe in (base, patched):
            kernel = resolver(cell, spec, patched=recipe is patched,
                              progress=lambda m, k=recipe.name: console.print(f"[dim]… {k}: {m}[/dim]"))
            pair.append(ProofKernel(recipe, kernel, Accel(*choose_accel(options.accel, kernel))))
    except (KernelError, SpecError) as exc:  # a patch gone or that does not apply: this cell's BUILD_ERROR
        console.print(f"[red]{cell.kernel_id}: {exc.one_line()}[/red]")
        return exc if isinstance(exc, KernelError) else KernelError(exc.one_line())
    console.print(f"{cell.kernel_id}: {pair[0].kernel.release} and {pair[1].kernel.release}, accel {pair[0].accel.name}")
    return CellJob(cell, spec, pair[0].kernel, pair[0].accel, options, proof=(pair[0], pair[1]))


def _jobs(matrix: Matrix, options: RunOptions, resolver: Resolver, rec: Recorder) -> list[CellJob]:
    """Resolve each kernel once; a kernel that fails to fetch or build is a BUILD_ERROR cell right away
    (as `harness repro` records it); every other cell becomes a job."""
    resolved = resolve_kernels([c for c in rec.todo if not c.prove], matrix.specs, options.accel, resolver,
                               rec.console)
    work = []
    for c in rec.todo:
        spec = matrix.specs[c.repro]
        got = proof_job(c, spec, options, resolver, rec.console) if c.prove else resolved[kernel_key(c)]
        if isinstance(got, CellJob):
            work.append(got)
            continue
        if isinstance(got, KernelError):
            rec.record_folder(c, build_error(spec, c.kernel_id, got, rec.index.folder).folder)
            continue
        kernel, accel = got
        rec.names[(c.repro, kernel.name)] = c.id  # run_repro names its folder after the resolved kernel
        work.append(CellJob.for_cell(c, spec, kernel, accel, options))
    return work


def _plan(work: Sequence[CellJob], jobs: int | None, console: Console) -> int:
    if not work:
        return 1
    guest_cpus = max(j.spec.guest.cpus for j in work)
    guest_mem = max(memory_bytes(j.spec.guest.memory) for j in work)
    jobs, why = plan_jobs(jobs, guest_cpus=guest_cpus, guest_memory=guest_mem)
    console.print(f"guests: {why}")
    return min(jobs, len(work))


def _run_jobs(work: Sequence[CellJob], jobs: int, runner: Runner, rec: Recorder) -> None:
    folder, console = rec.index.folder, rec.console

    def fn(job: CellJob) -> Path:
        return runner(job, folder, lambda msg: console.print(f"[dim]… {job.cell.id}: {msg}[/dim]"))

    def on_start(job: CellJob) -> None:
        console.print(f"[dim]… {job.cell.id}: start ({job.kernel.release}, {job.accel.name})[/dim]")

    stream = in_order(work, fn, on_start) if jobs == 1 else in_processes(work, jobs, fn, on_start)
    with closing(stream):
        for job, out in stream:
            if out == INTERRUPTED:  # a worker stopped by Ctrl-C: its partial folder is indexed
                rec.adopt()
            elif isinstance(out, Path):
                rec.record_folder(job.cell, out)
            else:
                rec.record_folder(job.cell, error_cell(job.cell, folder, "INFRA_ERROR", str(out)))


def run_matrix(
    spec_path: Path | str | None = None,
    options: RunOptions = DEFAULT_OPTIONS,
    *,
    only: Sequence[str] = (),
    jobs: int | None = None,
    resume: Path | str | None = None,
    console: Console | None = None,
    available: Available | None = None,
    resolver: Resolver = resolve_kernel,
    runner: Runner = run_cell,
) -> MatrixIndex:
    """Run the matrix (or the ``only`` cells) with ``options`` (results: the results root); return its
    index.  KeyboardInterrupt (Ctrl-C, SIGTERM) propagates after the index is saved as ``interrupted``."""
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)  # one line stays one line in logs
    prior = MatrixIndex.load(Path(resume)) if resume else None
    if prior:
        spec_path, only = spec_path or prior.spec, only or prior.only
        options = options.with_(runs=options.runs or prior.runs)
    matrix = load_matrix(spec_path, available=available).with_cells_named(only, available)
    cells = matrix.select(only)
    rec = Recorder(open_index(matrix, cells, options, only, prior), cells, console)
    console.print(f"[bold]matrix {rec.index.id}[/bold]: {rec.total} cells, {len(rec.todo)} to run · {rec.index.folder}")
    with sigterm_as_interrupt():
        try:
            work = _jobs(matrix, options, resolver, rec)
            _run_jobs(work, _plan(work, jobs, console), runner, rec)
        except KeyboardInterrupt:
            rec.interrupted()
            raise
    return rec.finish()
