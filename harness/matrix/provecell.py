"""A proof as a matrix cell: a ``prove:`` entry's two recipes, and its run into a cell folder (one row, both kernels)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import harness.prove.driver as driver
from harness.errors import HarnessError, KernelError
from harness.kernels.patches import PatchOp
from harness.kernels.recipe import Recipe, load_ops
from harness.matrix.spec import ProveEntry
from harness.prove.driver import Side
from harness.prove.record import proof_info, proof_record, run_proof, runs_of, write_record
from harness.repro.spec import Spec
from harness.results import new_run_folder

Progress = Callable[[str], None]


# --- a proof as a matrix cell -------------------------------------------------------------------------


def entry_recipes(entry: ProveEntry, spec: Spec) -> tuple[Recipe, Recipe, list[PatchOp]]:
    """A matrix ``prove:`` entry's base and patched recipes, and its patches."""
    ops = load_ops(entry.patches)
    base = spec.recipe(variant=entry.variant, base=entry.base)
    return base, base.patched(ops), ops


def _error_record(job, verdict: str, message: str, folder: Path) -> dict:
    """A proof cell that could not be judged (a build, or a kernel that would not run the reproducer)."""
    log = folder / driver.LOG_FILE
    return {
        "repro": job.cell.repro, "kernel": {"name": job.cell.kernel_id}, "accel": job.accel.name,
        "accel_reason": job.accel.reason, "verdict": verdict, "title": None, "hits": 0, "runs": 0,
        "expectation": job.cell.expectation, "expectation_met": None, "interrupted": False, "time_to_hit": [],
        "median_time_to_hit": None, "results": runs_of(folder) if log.exists() else [], "error": message,
        "status": "done",
    }


def run_proof_cell(job, folder: Path, progress: Progress | None = None, *,
                   sides: tuple[Side, Side] | None = None) -> Path:
    """Run the proof of a matrix cell into a cell folder under ``folder``; return that folder.

    ``job`` is a ``harness.matrix.run.CellJob`` whose ``proof`` holds both
    kernels; ``sides`` replaces the two run sessions (the tests' fake kernels).
    """
    cell = job.cell
    base, patched = job.proof
    out = new_run_folder(cell.repro, cell.kernel_id, folder)
    ops = load_ops(cell.prove.patches)
    info = proof_info(job.spec, base, patched, ops, cell.prove.policy(),
                      {"matrix_cell": cell.id, "patches": list(cell.prove.patches)})
    started = time.monotonic()
    try:
        if sides is None:
            result = run_proof(job.spec, base, patched, job.options, out, info=info, progress=progress,
                               on_run=progress)
        else:
            result = driver.prove(*sides, info, out, progress=progress)
    except KeyboardInterrupt:
        record = _error_record(job, "INFRA_ERROR", "interrupted", out)
        write_record(out, {**record, "verdict": None, "status": "interrupted", "interrupted": True})
        raise
    except HarnessError as exc:  # recorded as the cell's verdict; the proof log stays for a look
        verdict = "BUILD_ERROR" if isinstance(exc, KernelError) else "INFRA_ERROR"
        write_record(out, _error_record(job, verdict, exc.one_line(), out))
        return out
    record = proof_record(result, label=cell.kernel_id, expectation=cell.expectation,
                          wall_seconds=time.monotonic() - started)
    write_record(out, {**record, "accel": base.accel.name, "accel_reason": base.accel.reason})
    return out
