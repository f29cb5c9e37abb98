"""Kernels × reproducers: ``matrix.yaml`` -> cells -> one ``run_repro`` folder per cell.

A matrix run is one folder (``<results>/<time>-matrix-<name>/``) holding
``matrix.json`` (the index), one ``run_repro`` folder per cell, ``junit.xml``
and ``index.html``; every finished cell also lands in ``history.sqlite3`` in
the results root.  The index and the reports are rewritten (atomically) as
soon as each cell ends, so Ctrl-C or SIGTERM loses no finished cell, and
``--resume FOLDER`` runs only the cells that did not finish.

Kernels are resolved (fetched/built) once, before any cell starts, and guests
run ``jobs`` at a time, bounded by host CPUs (2 vCPUs a guest) and memory.

Exit codes of ``harness matrix run|merge``: 0 every cell met its expectation
(or has none); 1 some cell contradicts it; 7 no contradiction, but some cell
could not be judged (BOOT_FAILURE, INFRA_ERROR, BUILD_ERROR, missing);
130 interrupted.
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import json
import multiprocessing as mp
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from harness.errors import HarnessError, KernelError, SpecError, UnknownName
from harness.paths import PROJECT_ROOT, results_dir
from harness.results import html as html_report
from harness.results import junit as junit_report
from harness.results import new_run_folder, write_json
from harness.results.db import CellResult, History, MatrixIndex, db_path
from harness.yamlio import Fields, load_mapping

if TYPE_CHECKING:
    from harness.kernels import Kernel
    from harness.repro.spec import Spec

DEFAULT_SPEC = PROJECT_ROOT / "matrix.yaml"
GiB = 1 << 30
GUEST_OVERHEAD = 256 << 20  # QEMU's own memory next to the guest's
INTERRUPTED = "interrupted"
EXIT_OK, EXIT_UNMET, EXIT_ERRORS = 0, 1, 7

Progress = Callable[[str], None]
Available = Callable[[str], list[str]]


# --- the matrix -----------------------------------------------------------------------------


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
    specs: Mapping[str, Spec] = field(default_factory=dict, compare=False, repr=False)

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
    from harness import kernels

    return kernels.SOURCES.select(kind).available()


def _kernels(value: Any, where: str, available: Available) -> list[tuple[str, str | None]]:
    """Kernel entries: a name, a glob over the source's names, or {name, variant}."""
    from harness.kernels import split_name

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
        kind, _ = split_name(name)
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


def load_matrix(path: Path | str | None = None, *, available: Available | None = None) -> Matrix:
    """Parse ``matrix.yaml``; every reproducer and kernel name is checked here."""
    from harness.repro import spec as specs

    path = Path(path or DEFAULT_SPEC)
    f = Fields(load_mapping(path), str(path), {"name", "runs", "kernels", "reproducers"})
    avail = functools.cache(available or _sources_available)
    default_kernels = _kernels(f.get("kernels", list, []), f"{path}: kernels", avail)
    default_runs = f.get("runs", int, None)
    cells: dict[str, Cell] = {}
    loaded: dict[str, Spec] = {}
    for i, entry in enumerate(f.get("reproducers", list, required=True)):
        where = f"{path}: reproducers[{i}]"
        e = Fields(entry if isinstance(entry, dict) else {"name": entry}, where, {"name", "kernels", "variants", "runs"})
        name = str(e.get("name", str, required=True))
        spec = loaded[name] = specs.load(name)
        if "kernels" in e.data:
            kernels = _kernels(e.get("kernels", list), f"{where}: kernels", avail)
        elif "variants" in e.data or spec.variants:  # like `harness repro`: a spec with variants runs on them
            wanted = e.strings("variants", ("all",))
            chosen = spec.variants if wanted == ("all",) else tuple(spec.variant(v) for v in wanted)
            kernels = [(v.source, v.name) for v in chosen]
        else:
            kernels = default_kernels
        runs = e.get("runs", int, default_runs)
        if not kernels:
            raise SpecError(f"{where}: no kernels (give a top-level kernels: list or the reproducer's own kernels:)")
        if runs is not None and runs < 1:
            raise SpecError(f"{where}: runs must be positive")
        for kernel, variant in kernels:
            if variant and spec.variant(variant).source != kernel:
                raise SpecError(f"{where}: variant {variant} of {name} builds {spec.variant(variant).source}, not {kernel}")
            cell = Cell(kernel, name, variant, None, runs)
            cells[cell.id] = replace(cell, expectation=spec.expect.for_kernel(cell.kernel_id))
    return Matrix(path=path, name=f.get("name", str, path.stem), cells=tuple(cells.values()), specs=loaded)


# --- resources ----------------------------------------------------------------------------------


def memory_bytes(text: str | int) -> int:
    """QEMU-style sizes: ``1G``, ``512M``, a bare number is MiB."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.I)
    if not m:
        raise SpecError(f"memory size {text!r}: expected e.g. 1G or 512M")
    scale = {"": 1 << 20, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * scale)


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        m = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo.read_text(), re.M)
    except OSError:
        return None
    return int(m.group(1)) * 1024 if m else None


def plan_jobs(
    requested: int | None,
    *,
    guest_cpus: int = 2,
    guest_memory: int = GiB,
    cpu_count: int | None = None,
    available_memory: int | None = None,
) -> tuple[int, str]:
    """(jobs, why): at most one guest per ``guest_cpus`` host CPUs and per guest's memory."""
    cpus = cpu_count or os.cpu_count() or 1
    by_cpu = max(1, cpus // max(1, guest_cpus))
    free = available_memory if available_memory is not None else mem_available()
    by_mem = max(1, free // (guest_memory + GUEST_OVERHEAD)) if free else by_cpu
    cap = min(by_cpu, by_mem)
    why = f"{cpus} CPUs / {guest_cpus} vCPUs a guest -> {by_cpu}; {(free or 0) / GiB:.1f} GiB free -> {by_mem}"
    if requested is None:
        return cap, f"{cap} at a time ({why})"
    if requested < 1:
        raise HarnessError(f"--jobs must be positive, not {requested}")
    if requested > cap:
        return cap, f"--jobs {requested} capped to {cap} ({why})"
    return requested, f"{requested} at a time (--jobs)"


# --- one cell ---------------------------------------------------------------------------------


def resolve_kernel(cell: Cell, spec: Spec, *, progress: Progress | None = None) -> Kernel:
    """The one place a matrix cell's kernel becomes a bootable kernel: a variant of the
    reproducer's spec is built (or found in the build cache), any other name is
    fetched/built by its source.  Raises KernelError (-> a BUILD_ERROR cell)."""
    from harness import kernels
    from harness.repro.run import build_variant

    if cell.variant:
        return build_variant(spec.variant(cell.variant), progress=progress)
    return kernels.resolve(cell.kernel, progress=progress)


def kernel_key(cell: Cell) -> str:
    """Cells that share a kernel: a variant belongs to its reproducer (its patches live there)."""
    return cell.id if cell.variant else cell.kernel_id


def resolve_kernels(
    cells: Sequence[Cell], specs: Mapping[str, Spec], accel: str, resolver: Callable[..., Kernel], console: Console
) -> dict[str, tuple[Kernel, str, str] | KernelError]:
    """kernel_key -> (kernel, accel, why), or the KernelError: each kernel once, before any guest."""
    from harness.guest.vng import choose_accel

    out: dict[str, tuple[Kernel, str, str] | KernelError] = {}
    for key, cell in {kernel_key(c): c for c in cells}.items():
        try:
            kernel = resolver(cell, specs[cell.repro],
                              progress=lambda m, k=cell.kernel_id: console.print(f"[dim]… {k}: {m}[/dim]"))
            accel_used, why = choose_accel(accel, kernel)
        except KernelError as exc:
            console.print(f"[red]{cell.kernel_id}: {exc.one_line()}[/red]")
            out[key] = exc
            continue
        out[key] = (kernel, accel_used, why)
        console.print(f"{cell.kernel_id}: {kernel.release} ({kernel.version}), accel {accel_used}: {why}")
    return out


@dataclass(frozen=True)
class CellJob:
    """Everything one cell needs; built in the parent, run in a worker."""

    cell: Cell
    spec: Spec
    kernel: Kernel
    accel: str
    accel_reason: str = ""
    runs: int | None = None
    backend: str = "vng"
    compile_cache: bool = True
    cmdline: tuple[str, ...] = ()  # the variant's extra boot options


Runner = Callable[[CellJob, Path, "Progress | None"], Path]


def run_cell(job: CellJob, folder: Path, progress: Progress | None = None) -> Path:
    """Run one cell into ``folder`` (the matrix folder); return its ``run_repro`` folder."""
    from harness.options import Accel, RunOptions
    from harness.repro.run import run_repro

    options = RunOptions(backend=job.backend, runs=job.runs, results=folder, fresh_compile=not job.compile_cache,
                         cmdline=job.cmdline)
    summary = run_repro(
        job.spec,
        job.kernel,
        options,
        accel=Accel(job.accel, job.accel_reason),
        progress=progress,
        on_run=(lambda r: progress(f"run {r.index}: {r.outcome.value}{f' · {r.verdict.title}' if r.verdict.title else ''}"
                                   f" · {r.wall_seconds:.0f} s")) if progress else None,
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


# --- running cells ------------------------------------------------------------------------------


def _child(fn: Callable[[Any], Any], task: Any, conn) -> None:
    os.setsid()  # the parent forwards exactly one SIGINT; the terminal's Ctrl-C goes to the parent only
    try:
        out = fn(task)
    except KeyboardInterrupt:
        out = INTERRUPTED
    except HarnessError as exc:
        out = exc.one_line()
    except Exception as exc:  # a bug: keep the matrix going, show the traceback
        traceback.print_exc()
        out = f"{type(exc).__name__}: {exc}"
    conn.send(out)
    conn.close()


def _stop(procs: list, grace: float = 60.0) -> None:
    """SIGINT each worker (each ends its guest and records its partial cell), then wait."""
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join()


def in_processes(
    tasks: Sequence[Any], jobs: int, fn: Callable[[Any], Any], on_start: Callable[[Any], None] | None = None
) -> Iterator[tuple[Any, Any]]:
    """Yield (task, fn(task)) as workers finish, ``jobs`` forked workers at a time.

    fn's exceptions come back as one-line strings, a worker that died as
    "worker died ..."; interrupting the consumer (Ctrl-C, SIGTERM, close())
    stops every worker cleanly.
    """
    ctx = mp.get_context("fork")  # workers share the parent's resolved kernels, specs, runner
    todo = list(tasks)
    live: dict[int, tuple[Any, Any, Any]] = {}
    try:
        while todo or live:
            while todo and len(live) < jobs:
                task = todo.pop(0)
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(fn, task, writer), daemon=False)
                if on_start:
                    on_start(task)
                proc.start()
                writer.close()
                live[proc.sentinel] = (task, proc, reader)
            for sentinel in mp_wait(list(live)):
                task, proc, reader = live.pop(sentinel)
                proc.join()
                try:
                    out = reader.recv()
                except EOFError:  # it died before it could answer
                    out = f"worker died (exit code {proc.exitcode})"
                reader.close()
                yield task, out
    except BaseException:
        _stop([proc for _, proc, _ in live.values()])
        raise


def in_order(
    tasks: Sequence[Any], fn: Callable[[Any], Any], on_start: Callable[[Any], None] | None = None
) -> Iterator[tuple[Any, Any]]:
    """The jobs=1 path: in this process, so Ctrl-C reaches the run directly."""
    for task in tasks:
        if on_start:
            on_start(task)
        try:
            out = fn(task)
        except HarnessError as exc:
            out = exc.one_line()
        yield task, out


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a matrix run like Ctrl-C does (finished cells stay recorded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


# --- the matrix run ----------------------------------------------------------------------------


def publish(index: MatrixIndex, history: History | None = None) -> None:
    """matrix.json, junit.xml, index.html and the DB rows: after every cell."""
    index.write()
    junit_report.write(index)
    html_report.write(index)
    (history or History(db_path(index.folder.parent))).record(index)


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


def exit_code(index: MatrixIndex) -> int:
    n = index.counts()
    return EXIT_UNMET if n["unmet"] else EXIT_ERRORS if n["errors"] else EXIT_OK


def _line(i: int, n: int, r: CellResult) -> str:
    met = "" if r.is_error else {True: " [green]✓[/green]", False: " [red]✗[/red]"}.get(r.met, "")
    bits = [f"[{i}/{n}] {r.kernel} × {r.repro}: [bold]{r.verdict}[/bold]{met}"]
    if r.title or r.error:
        bits.append(r.title or r.error or "")
    bits.append(f"{r.hits}/{r.runs} hits")
    bits.append(f"{r.wall_seconds:.0f} s")
    return " · ".join(bits)


def run_matrix(
    spec_path: Path | str | None = None,
    *,
    only: Sequence[str] = (),
    jobs: int | None = None,
    runs: int | None = None,
    results_root: Path | None = None,
    resume: Path | str | None = None,
    accel: str = "auto",
    backend: str = "vng",
    compile_cache: bool = True,
    console: Console | None = None,
    available: Available | None = None,
    resolver: Callable[..., Kernel] = resolve_kernel,  # (cell, spec, progress=) -> Kernel
    runner: Runner = run_cell,
) -> MatrixIndex:
    """Run the matrix (or the ``only`` cells); return its index.  KeyboardInterrupt propagates
    after the index is saved with status ``interrupted``."""
    from harness.repro.run import build_error

    console = console or Console(stderr=True, highlight=False, soft_wrap=True)  # one line stays one line in logs
    prior = MatrixIndex.load(Path(resume)) if resume else None
    if prior:
        spec_path, only, runs = spec_path or prior.spec, only or prior.only, runs or prior.runs
    matrix = load_matrix(spec_path, available=available)
    cells = matrix.select(only)

    if prior:
        index = replace(prior, status="running")
        for c in cells:
            if index.cell(c.id) is None:
                index = index.with_cell(c.pending())
    else:
        root = Path(results_root) if results_root else results_dir()
        root.mkdir(parents=True, exist_ok=True)
        folder = new_run_folder("matrix", matrix.name, root)
        index = MatrixIndex(
            id=folder.name, folder=folder, spec=str(matrix.path.resolve()), name=matrix.name,
            started=time.strftime("%Y-%m-%dT%H:%M:%S"), only=tuple(only), runs=runs,
            cells=tuple(c.pending() for c in cells),
        )
    names = {(c.repro, c.kernel_id): c.id for c in cells}
    index = adopt(index, names)
    history = History(db_path(index.folder.parent))
    publish(index, history)
    todo = [c for c in cells if index.cell(c.id).status != "done"]
    n, finished = len(cells), len(cells) - len(todo)
    console.print(f"[bold]matrix {index.id}[/bold]: {n} cells, {len(todo)} to run · {index.folder}")

    def progress_for(cell: Cell) -> Progress:
        return lambda msg: console.print(f"[dim]… {cell.id}: {msg}[/dim]")

    def record(result: CellResult) -> None:
        nonlocal index, finished
        index = index.with_cell(result)
        publish(index, history)
        finished += 1
        console.print(_line(finished, n, result))

    with sigterm_as_interrupt():
        try:
            resolved = resolve_kernels(todo, matrix.specs, accel, resolver, console)
            for c in todo:
                got = resolved[kernel_key(c)]
                if isinstance(got, KernelError):  # fetch or build failed: a result, as `harness repro` records it
                    summary = build_error(matrix.specs[c.repro], c.kernel_id, got, index.folder)
                    record(CellResult.from_folder(c.id, c.kernel_id, summary.folder, index.folder))
                else:
                    names[(c.repro, got[0].name)] = c.id

            work = [
                CellJob(c, matrix.specs[c.repro], *resolved[kernel_key(c)], runs=runs or c.runs, backend=backend,
                        compile_cache=compile_cache,
                        cmdline=matrix.specs[c.repro].variant(c.variant).cmdline if c.variant else ())
                for c in todo if not isinstance(resolved[kernel_key(c)], KernelError)
            ]
            if work:
                guest_cpus = max(j.spec.guest.cpus for j in work)
                guest_mem = max(memory_bytes(j.spec.guest.memory) for j in work)
                jobs, why = plan_jobs(jobs, guest_cpus=guest_cpus, guest_memory=guest_mem)
                jobs = min(jobs, len(work))
                console.print(f"guests: {why}")

            def fn(job: CellJob) -> Path:
                return runner(job, index.folder, progress_for(job.cell))

            def on_start(job: CellJob) -> None:
                console.print(f"[dim]… {job.cell.id}: start ({job.kernel.release}, {job.accel})[/dim]")

            stream = in_order(work, fn, on_start) if not work or jobs == 1 else in_processes(work, jobs, fn, on_start)
            with closing(stream):
                for job, out in stream:
                    if out == INTERRUPTED:
                        index = adopt(index, names)
                    elif isinstance(out, Path):
                        record(CellResult.from_folder(job.cell.id, job.cell.kernel_id, out, index.folder))
                    else:
                        failed = error_cell(job.cell, index.folder, "INFRA_ERROR", str(out))
                        record(CellResult.from_folder(job.cell.id, job.cell.kernel_id, failed, index.folder))
        except KeyboardInterrupt:
            index = replace(adopt(index, names), status="interrupted")
            publish(index, history)
            done = index.counts()["done"]
            console.print(f"[yellow]interrupted: {done}/{n} cells finished; "
                          f"continue with --resume {index.folder}[/yellow]")
            raise
    index = replace(index, status="done" if all(c.status == "done" for c in index.cells) else "partial")
    publish(index, history)
    return index


# --- CLI ----------------------------------------------------------------------------------------


def _summary_line(index: MatrixIndex) -> str:
    n = index.counts()
    return (f"{n['met']} met, {n['unmet']} not met, {n['errors']} errors, {n['cells'] - n['done']} not run"
            f" of {n['cells']} cells · {index.folder}")


def cmd_matrix_run(args: argparse.Namespace) -> int:
    index = run_matrix(
        args.spec, only=args.only, jobs=args.jobs, runs=args.runs,
        results_root=Path(args.results) if args.results else None, resume=args.resume,
        accel=args.accel, backend=args.backend, compile_cache=not args.fresh_compile,
    )
    print(_summary_line(index))
    return exit_code(index)


def cmd_matrix_export(args: argparse.Namespace) -> int:
    from harness.results import export

    matrix = load_matrix(args.spec)
    spec = args.spec or "matrix.yaml"
    text = export.gitlab(matrix.cells, spec) if args.gitlab else export.github_actions(matrix.cells, spec)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        print(f"{len(matrix.cells)} cells -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_matrix_merge(args: argparse.Namespace) -> int:
    from harness.results import export

    index = export.merge([Path(d) for d in args.dirs], results_root=Path(args.results) if args.results else None,
                         spec=args.spec)
    print(_summary_line(index))
    return exit_code(index)


def _history(args: argparse.Namespace) -> History:
    path = db_path(Path(args.results) if args.results else None)
    if not path.exists():
        raise UnknownName(f"no matrix history at {path} (run `harness matrix run` first, or pass --results ROOT)")
    return History(path)


def _emit(args: argparse.Namespace, rows: list, columns: Callable[[Any], Sequence[Any]]) -> int:
    if args.json:
        print(json.dumps([vars(r) for r in rows], default=str))
    for r in rows if not args.json else ():
        print("\t".join("-" if v is None else str(v) for v in columns(r)))
    return EXIT_OK


def cmd_results(args: argparse.Namespace) -> int:
    h = _history(args)
    if args.results_command == "list":
        return _emit(args, h.recent(args.limit),
                     lambda r: (r.id, r.time, r.status, f"{r.cells} cells", f"{r.met} met", f"{r.unmet} not met",
                                f"{r.errors} errors", r.folder))
    if args.results_command == "flaky":
        return _emit(args, h.flaky(),
                     lambda r: (r.cell, " / ".join(r.verdicts), f"{r.rows} runs", f"{r.partial} partial"))
    if args.results_command == "history":
        rows = h.cells(args.cell) if args.all else h.changes(args.cell)
        if args.all and not rows:
            h.changes(args.cell)  # raises the "Unknown cell" error
        return _emit(args, rows, lambda r: (r.time, r.matrix, r.verdict, f"{r.hits}/{r.runs}", r.title, r.folder))
    return _emit(args, h.compare(args.a, args.b), lambda r: (r.cell, f"{r.before or '(absent)'} -> {r.after or '(absent)'}"))


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """``harness matrix run|export|merge`` and ``harness results list|flaky|history|compare``."""
    m = sub.add_parser("matrix", help="run kernels × reproducers; export it to a CI engine; merge its cells")
    msub = m.add_subparsers(dest="matrix_command", required=True)

    r = msub.add_parser("run", help="run the matrix (bounded parallel guests); resumable")
    r.add_argument("spec", nargs="?", help=f"matrix file (default {DEFAULT_SPEC.name} in the project)")
    r.add_argument("--only", action="append", default=[], metavar="KERNEL:REPRO",
                   help="only these cells (globs over KERNEL:REPRO, a kernel or a reproducer); repeatable")
    r.add_argument("-j", "--jobs", type=int, help="guests at a time (default and cap: host CPUs/2 and free memory)")
    r.add_argument("-n", "--runs", type=int, help="runs per cell (default: matrix.yaml's, else the spec's)")
    r.add_argument("--results", help="results root (default ./results or $HARNESS_RESULTS)")
    r.add_argument("--resume", metavar="FOLDER", help="a matrix folder: run only its unfinished cells")
    r.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    r.add_argument("--backend", default="vng")
    r.add_argument("--fresh-compile", action="store_true", help="compile the reproducer in every guest")
    r.set_defaults(func=cmd_matrix_run)

    e = msub.add_parser("export", help="write the matrix as a CI engine's parallel job definition")
    e.add_argument("spec", nargs="?", help="matrix file (default matrix.yaml)")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--github-actions", action="store_true", help="a GitHub Actions workflow (strategy.matrix)")
    which.add_argument("--gitlab", action="store_true", help="a GitLab CI pipeline (parallel: matrix:)")
    e.add_argument("-o", "--output", help="write here instead of stdout")
    e.set_defaults(func=cmd_matrix_export)

    g = msub.add_parser("merge", help="merge cell folders (CI artifacts) into one matrix folder")
    g.add_argument("dirs", nargs="+", metavar="DIR", help="folders holding cell folders (searched recursively)")
    g.add_argument("--spec", help="matrix file: its cells without a folder show as missing")
    g.add_argument("--results", help="results root for the merged folder and the DB")
    g.set_defaults(func=cmd_matrix_merge)

    res = sub.add_parser("results", help="matrix history: recent runs, flaky cells, changes, comparisons")
    rsub = res.add_subparsers(dest="results_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results", help="results root holding history.sqlite3")
    common.add_argument("--json", action="store_true")
    lst = rsub.add_parser("list", parents=[common], help="recent matrix runs")
    lst.add_argument("-n", "--limit", type=int, default=20)
    rsub.add_parser("flaky", parents=[common], help="cells whose verdict differs across runs, or 0 < hits < runs")
    hist = rsub.add_parser("history", parents=[common], help="when a cell's verdict changed")
    hist.add_argument("cell", metavar="KERNEL:REPRO")
    hist.add_argument("--all", action="store_true", help="every run of the cell, not only the changes")
    cmp_ = rsub.add_parser("compare", parents=[common], help="cells whose verdict differs between two matrix runs")
    cmp_.add_argument("a", help="matrix run id (or unique prefix, latest, previous)")
    cmp_.add_argument("b")
    res.set_defaults(func=cmd_results)
