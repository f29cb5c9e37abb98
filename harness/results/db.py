"""Matrix records: one cell's result, the matrix index (matrix.json), and the
history of every cell across matrix runs (SQLite, in the results root).

A cell's truth is its ``run_repro`` folder (``result.json``, ``run-NN/``);
``matrix.json`` indexes those folders, and the history DB keeps one row per
finished cell per matrix run so flaky cells and changes show over time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.errors import HarnessError, UnknownName
from harness.fstests.guest import RESULTS  # RESULT_BASE inside a run folder
from harness.paths import results_dir
from harness.results import write_json
from harness.verdict import Outcome

INDEX = "matrix.json"
DB_NAME = "history.sqlite3"
# the verdicts of cells whose runs never ran the reproducer (``Outcome.is_error``): not judged, counted apart
ERROR_VERDICTS = tuple(o.value for o in Outcome if o.is_error)
_ERRORS_SQL = ", ".join(f"?{i}" for i in range(1, len(ERROR_VERDICTS) + 1))


def folder_time(name: str) -> str | None:
    """ISO time from a run folder name (``20260101-120000-...``), or None."""
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.strptime(name[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return None


@dataclass(frozen=True)
class RunInfo:
    index: int
    verdict: str
    title: str | None = None
    time_to_hit: float | None = None
    wall_seconds: float = 0.0
    detail: str = ""
    path: str = ""  # the run's folder relative to the cell's, when it is not run-NN (a proof's runs)
    side: str = ""  # a proof's run: base or patched
    # an fstests run: {"counts": {pass, fail, notrun, ...}, "failed": [{"name", "out_bad"}]} (paths relative to
    # the run's folder), else empty
    fstests: dict = field(default_factory=dict)


def fstests_info(record: dict | None, run_folder: Path) -> dict:
    """What a cell shows of an fstests run's record (``harness.fstests.results.Results.to_json``)."""
    if not record:
        return {}

    def rel(path: str | None) -> str | None:
        if not path:
            return None
        try:
            return str(Path(path).relative_to(run_folder))
        except ValueError:  # moved since (a merged CI artifact): fstests' own layout under the run folder
            return str(Path(RESULTS) / Path(path).parent.name / Path(path).name)

    failed = [{"name": t.get("name"), "out_bad": rel(t.get("out_bad"))}
              for t in record.get("tests", ()) if t.get("status") == "fail"]
    return {"counts": dict(record.get("counts") or {}), "failed": failed}


def _detail(runs: tuple[RunInfo, ...], verdict: str | None) -> str | None:
    return next((r.detail for r in runs if r.verdict == verdict and r.detail), None)


def _proof(data: dict) -> dict | None:
    """What a proof cell's record shows of the proof (``harness.matrix.proof.proof_record``), else None."""
    if not isinstance(data.get("base"), dict) or not isinstance(data.get("patched"), dict):
        return None
    sides = {side: {k: data[side].get(k) for k in ("runs", "hits", "failed")} | {
        "kernel": (data[side].get("kernel") or {}).get("name")} for side in ("base", "patched")}
    keep = ("statement", "confidence", "fraction", "achieved_confidence", "reason")
    return {**sides, **{k: data.get(k) for k in keep}}


@dataclass(frozen=True)
class CellResult:
    """One kernel × reproducer cell of a matrix run (pending until it ran)."""

    cell: str  # "debian:6.1.0-47:ext4_inline"
    kernel: str
    repro: str
    expectation: str | None = None  # 'reproduce', 'clean' or None
    status: str = "pending"  # pending | done | interrupted
    verdict: str | None = None
    title: str | None = None
    hits: int = 0
    runs: int = 0
    met: bool | None = None
    folder: str | None = None  # relative to the matrix folder
    started: str | None = None
    error: str | None = None
    results: tuple[RunInfo, ...] = ()
    proof: dict | None = None  # a proof cell: base/patched kernel, runs and hits, the statement

    @property
    def time_to_hit(self) -> tuple[float, ...]:
        return tuple(r.time_to_hit for r in self.results if r.time_to_hit is not None)

    @property
    def is_error(self) -> bool:
        return self.verdict in ERROR_VERDICTS

    @property
    def wall_seconds(self) -> float:
        return sum(r.wall_seconds for r in self.results)

    def to_dict(self) -> dict:
        return {
            "cell": self.cell, "kernel": self.kernel, "repro": self.repro, "expectation": self.expectation,
            "status": self.status, "verdict": self.verdict, "title": self.title, "hits": self.hits,
            "runs": self.runs, "met": self.met, "folder": self.folder, "started": self.started,
            "error": self.error, "results": [vars(r) for r in self.results],
            **({"proof": self.proof} if self.proof else {}),
        }

    def run_dir(self, run: RunInfo) -> str:
        """A run's folder relative to the matrix folder."""
        return str(Path(self.folder or ".") / (run.path or f"run-{run.index:02d}"))

    @classmethod
    def from_dict(cls, d: dict) -> CellResult:
        runs = tuple(RunInfo(**r) for r in d.get("results", ()))
        return cls(**{**d, "results": runs})

    @classmethod
    def from_folder(cls, cell: str, kernel: str, folder: Path, base: Path) -> CellResult:
        """Read a ``run_repro`` folder's summary ``result.json`` (the ``Summary.to_dict()`` shape)."""
        try:
            data = json.loads((folder / "result.json").read_text())
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{folder}/result.json: unreadable cell result: {exc}") from None
        status = data.get("status", "done")
        # a cell cut short before its first run has no verdict (Summary says CLEAN for no runs)
        verdict = data.get("verdict") if status == "done" or data.get("results") else None
        runs = tuple(
            RunInfo(
                index=r.get("run", i + 1),
                verdict=r.get("verdict", "INFRA_ERROR"),
                title=r.get("title"),
                time_to_hit=r.get("time_to_hit"),
                wall_seconds=r.get("wall_seconds") or 0.0,
                detail=r.get("detail") or "",
                path=r.get("path") or "",
                side=r.get("side") or "",
                fstests=fstests_info(r.get("fstests"), folder / (r.get("path") or f"run-{r.get('run', i + 1):02d}")),
            )
            for i, r in enumerate(data.get("results", ()))
        )
        return cls(
            cell=cell,
            kernel=kernel,
            repro=data.get("repro", ""),
            expectation=data.get("expectation"),
            status="done" if status == "done" else "interrupted",
            verdict=verdict,
            title=data.get("title"),
            hits=data.get("hits", 0),
            runs=data.get("runs", len(runs)),
            met=data.get("expectation_met"),
            folder=str(folder.relative_to(base)) if folder.is_relative_to(base) else str(folder),
            started=folder_time(folder.name),
            error=data.get("error") or (_detail(runs, verdict) if verdict in ERROR_VERDICTS else None),
            results=runs,
            proof=_proof(data),
        )


@dataclass(frozen=True)
class MatrixIndex:
    """``matrix.json``: what a matrix run is and where each cell's folder is."""

    id: str
    folder: Path
    spec: str = ""
    name: str = ""
    status: str = "running"  # running | done | interrupted
    started: str | None = None
    only: tuple[str, ...] = ()
    runs: int | None = None
    cells: tuple[CellResult, ...] = ()
    extra: dict = field(default_factory=dict, compare=False)

    def with_cell(self, result: CellResult) -> MatrixIndex:
        cells = tuple(result if c.cell == result.cell else c for c in self.cells)
        if result.cell not in {c.cell for c in self.cells}:
            cells += (result,)
        return replace(self, cells=cells)

    def cell(self, cell_id: str) -> CellResult | None:
        return next((c for c in self.cells if c.cell == cell_id), None)

    @property
    def kernels(self) -> list[str]:
        return list(dict.fromkeys(c.kernel for c in self.cells))

    @property
    def repros(self) -> list[str]:
        return list(dict.fromkeys(c.repro for c in self.cells))

    def counts(self) -> dict[str, int]:
        done = [c for c in self.cells if c.status == "done"]
        return {
            "cells": len(self.cells),
            "done": len(done),
            "met": sum(c.met is True for c in done),
            "unmet": sum(c.met is False and not c.is_error for c in done),
            "errors": sum(c.is_error for c in done) + sum(c.status == "missing" for c in self.cells),
        }

    def to_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "spec": self.spec, "status": self.status,
            "started": self.started, "only": list(self.only), "runs": self.runs,
            "counts": self.counts(), **self.extra, "cells": [c.to_dict() for c in self.cells],
        }

    def write(self) -> None:
        write_json(self.folder / INDEX, self.to_dict())

    @classmethod
    def load(cls, folder: Path) -> MatrixIndex:
        path = Path(folder) / INDEX
        try:
            d = json.loads(path.read_text())
        except OSError:
            raise UnknownName(f"{folder} is not a matrix folder (no {INDEX})") from None
        except ValueError as exc:
            raise HarnessError(f"{path}: broken JSON: {exc}") from None
        known = {"id", "name", "spec", "status", "started", "only", "runs", "cells", "counts"}
        return cls(
            id=d["id"], folder=Path(folder), spec=d.get("spec", ""), name=d.get("name", ""),
            status=d.get("status", "running"), started=d.get("started"), only=tuple(d.get("only", ())),
            runs=d.get("runs"), cells=tuple(CellResult.from_dict(c) for c in d.get("cells", ())),
            extra={k: v for k, v in d.items() if k not in known},
        )


# --- history --------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE IF NOT EXISTS matrices (
    id TEXT PRIMARY KEY, time TEXT, name TEXT, spec TEXT, folder TEXT, status TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    matrix TEXT NOT NULL, cell TEXT NOT NULL, time TEXT, kernel TEXT, repro TEXT, verdict TEXT,
    title TEXT, hits INTEGER, runs INTEGER, expectation TEXT, met INTEGER, folder TEXT,
    PRIMARY KEY (matrix, cell)
);
CREATE INDEX IF NOT EXISTS cells_by_cell ON cells (cell, time);
"""


@dataclass(frozen=True)
class CellRow:
    matrix: str
    cell: str
    time: str | None
    kernel: str
    repro: str
    verdict: str
    title: str | None
    hits: int
    runs: int
    expectation: str | None
    met: bool | None
    folder: str


@dataclass(frozen=True)
class MatrixRow:
    id: str
    time: str | None
    name: str
    status: str
    folder: str
    cells: int
    met: int
    unmet: int
    errors: int


@dataclass(frozen=True)
class Flaky:
    cell: str
    verdicts: tuple[str, ...]  # distinct verdicts seen, oldest first
    rows: int  # matrix runs that ran the cell
    partial: int  # of which 0 < hits < runs


@dataclass(frozen=True)
class Change:
    cell: str
    before: str | None  # verdict in the first matrix run (None: not in it)
    after: str | None


def db_path(root: Path | None = None) -> Path:
    return (root or results_dir()) / DB_NAME


class History:
    """Every finished cell of every matrix run, in ``history.sqlite3``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A short-lived connection (nothing held across a fork or a Ctrl-C); commits on success."""
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    def _rows(self, sql: str, args: Iterable = ()) -> list[tuple]:
        with self._connect() as db:
            return db.execute(sql, tuple(args)).fetchall()

    def record(self, index: MatrixIndex) -> None:
        """Upsert the matrix run and its finished cells (safe to call after every cell)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO matrices VALUES (?, ?, ?, ?, ?, ?)",
                (index.id, index.started, index.name, index.spec, str(index.folder.resolve()), index.status),
            )
            for c in index.cells:
                if c.status != "done" or c.verdict is None:
                    continue
                folder = str((index.folder / c.folder).resolve()) if c.folder else ""
                db.execute(
                    "INSERT OR REPLACE INTO cells VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (index.id, c.cell, c.started or index.started, c.kernel, c.repro, c.verdict, c.title,
                     c.hits, c.runs, c.expectation, None if c.met is None else int(c.met), folder),
                )

    @staticmethod
    def _cell_row(t: tuple) -> CellRow:
        met = None if t[10] is None else bool(t[10])
        return CellRow(*t[:10], met, t[11])

    def recent(self, limit: int = 20) -> list[MatrixRow]:
        rows = self._rows(
            f"""SELECT m.id, m.time, m.name, m.status, m.folder, count(c.cell),
                       coalesce(sum(c.met = 1 AND NOT c.verdict IN ({_ERRORS_SQL})), 0),
                       coalesce(sum(c.met = 0 AND NOT c.verdict IN ({_ERRORS_SQL})), 0),
                       coalesce(sum(c.verdict IN ({_ERRORS_SQL})), 0)
                FROM matrices m LEFT JOIN cells c ON c.matrix = m.id
                GROUP BY m.id ORDER BY m.time DESC, m.id DESC LIMIT ?{len(ERROR_VERDICTS) + 1}""",
            (*ERROR_VERDICTS, limit),
        )
        return [MatrixRow(*r) for r in rows]

    def cells(self, cell: str | None = None, matrix: str | None = None) -> list[CellRow]:
        where, args = [], []
        if cell:
            where.append("cell = ?")
            args.append(cell)
        if matrix:
            where.append("matrix = ?")
            args.append(matrix)
        sql = "SELECT * FROM cells" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY time, matrix"
        return [self._cell_row(r) for r in self._rows(sql, args)]

    def flaky(self) -> list[Flaky]:
        """Cells whose verdict differs across matrix runs, or that hit in only some runs."""
        out = []
        for cell in dict.fromkeys(r.cell for r in self.cells()):
            rows = self.cells(cell)
            verdicts = tuple(dict.fromkeys(r.verdict for r in rows))
            partial = sum(0 < r.hits < r.runs for r in rows)
            if len(verdicts) > 1 or partial:
                out.append(Flaky(cell, verdicts, len(rows), partial))
        return out

    def changes(self, cell: str) -> list[CellRow]:
        """The rows where the cell's verdict changed (its first row included)."""
        rows = self.cells(cell)
        if not rows:
            known = sorted({r.cell for r in self.cells()})
            raise UnknownName(f"Unknown cell {cell!r} in {self.path}. Available: {', '.join(known) or '(none)'}")
        return [r for i, r in enumerate(rows) if i == 0 or r.verdict != rows[i - 1].verdict]

    def matrix_id(self, ref: str) -> str:
        """A matrix run by id, unique id prefix, or ``latest`` / ``previous``."""
        ids = [r[0] for r in self._rows("SELECT id FROM matrices ORDER BY time DESC, id DESC")]
        if ref in ("latest", "previous") and len(ids) > (ref == "previous"):
            return ids[ref == "previous"]
        hits = [i for i in ids if i == ref] or [i for i in ids if i.startswith(ref)]
        if len(hits) != 1:
            what = "Ambiguous" if hits else "Unknown"
            raise UnknownName(f"{what} matrix run {ref!r}. Available: {', '.join(ids[:10]) or '(none)'}")
        return hits[0]

    def compare(self, a: str, b: str) -> list[Change]:
        """Cells whose verdict differs between matrix runs ``a`` and ``b``."""
        a, b = self.matrix_id(a), self.matrix_id(b)
        before = {r.cell: r.verdict for r in self.cells(matrix=a)}
        after = {r.cell: r.verdict for r in self.cells(matrix=b)}
        cells = list(dict.fromkeys([*before, *after]))
        return [Change(c, before.get(c), after.get(c)) for c in cells if before.get(c) != after.get(c)]
