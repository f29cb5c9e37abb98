"""An fstests cell over N CI jobs: its tests split by their measured seconds, its shards merged back into one cell.

Split (``split``): greedy longest-processing-time, the tests taken longest
first, each to the shard with the least seconds so far (Graham's LPT: within
4/3 of the best split).  A test's seconds are the median of what the results
history measured for it in that cell (``measured_seconds``: every run of
every matrix run the history holds); a test the history never measured
counts as the median of the measured ones (60 s when none is), so a new test
does not land on one shard with all the others.

Merge (``combine``): the shards' folders go into one cell folder
(``shard-I/``), with one ``result.json``: every shard's runs (``shard I/N run
K``), one fstests table of every test any shard ran (``fstests.txt``, and
``fstests`` in the JSON), and one verdict.  A shard that failed (its job died,
its cell is interrupted, BOOT_FAILURE, INFRA_ERROR...) or never reported is
named in ``error`` and ``shards``, and its share is never counted as clean:
without a finding elsewhere the cell is INFRA_ERROR, and a cell that must stay
clean is judged only when every shard ran.
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness.errors import SpecError
from harness.fstests import guest
from harness.fstests.results import Status, TestResult, summary_table
from harness.repro.spec import Spec
from harness.results import write_json
from harness.results.db import ERROR_VERDICTS, History

DEFAULT_SECONDS = 60.0
MARKER = "shard.json"  # in a shard job's results root: which cell, which shard, which tests
TABLE = "fstests.txt"
FINDINGS = ("REPRODUCED", "OTHER_CRASH", "DATA_LOSS", "FS_CORRUPT", "TEST_FAILED", "HANG")  # first wins


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    of: int
    tests: tuple[str, ...]
    seconds: float  # what the history says it costs (unmeasured tests at the default)
    measured: int  # how many of its tests the history measured

    @property
    def label(self) -> str:
        return f"{self.index}/{self.of}"

    def describe(self) -> str:
        return f"shard {self.label}: {len(self.tests)} tests, ~{self.seconds:.0f} s ({self.measured} measured)"

    def to_dict(self) -> dict:
        return {"index": self.index, "of": self.of, "tests": list(self.tests), "seconds": self.seconds,
                "measured": self.measured}


def split(tests: Sequence[str], seconds: Mapping[str, float], n: int) -> tuple[Shard, ...]:
    """``tests`` over ``n`` shards (fewer when there are fewer tests), as evenly as ``seconds`` allows."""
    if n < 1:
        raise SpecError(f"shards: {n}: give a positive number")
    tests = list(dict.fromkeys(tests))
    if not tests:
        raise SpecError("shards: the cell has no tests to split")
    n = min(n, len(tests))
    known = [seconds[t] for t in tests if t in seconds]
    default = statistics.median(known) if known else DEFAULT_SECONDS
    cost = {t: float(seconds.get(t, default)) for t in tests}
    bins: list[list[str]] = [[] for _ in range(n)]
    totals = [0.0] * n
    for test in sorted(tests, key=lambda t: (-cost[t], t)):  # longest first; ties by name: one answer
        i = min(range(n), key=lambda k: (totals[k], k))
        bins[i].append(test)
        totals[i] += cost[test]
    return tuple(Shard(i + 1, n, tuple(sorted(b)), round(totals[i], 1), sum(t in seconds for t in b))
                 for i, b in enumerate(bins))


def cell_tests(spec: Spec) -> tuple[str, ...]:
    """The tests an fstests cell runs, in check's order: the selection's names as they are, or expanded the
    way check expands them (the fstests build's group lists; built once when the cache lacks it)."""
    sel = spec.fstests
    if sel is None:
        raise SpecError(f"{spec.name}: shards: only an fstests cell is split over jobs")
    if not sel.groups and not any(ch in t for t in sel.tests for ch in "*?["):
        return tuple(t for t in sel.tests if t not in sel.exclude_tests)
    return guest.prepare(sel).tests  # the fstests build (make, once): groups and globs need its lists


def measured_seconds(history: History, cell: str) -> dict[str, float]:
    """test -> median seconds over every run of ``cell`` the history's folders still hold."""
    seen: dict[str, list[float]] = {}
    for row in history.cells(cell):
        try:
            data = json.loads((Path(row.folder) / "result.json").read_text())
        except (OSError, ValueError):
            continue  # a folder moved or removed since: its seconds are gone
        for run in data.get("results", ()):
            for test in (run.get("fstests") or {}).get("tests", ()):
                if test.get("seconds") is not None and test.get("status") in ("pass", "fail"):
                    seen.setdefault(test["name"], []).append(float(test["seconds"]))
    return {name: statistics.median(values) for name, values in seen.items()}


def narrowed(spec: Spec, tests: Sequence[str]) -> Spec:
    """``spec`` running only ``tests`` (one shard's share)."""
    if spec.fstests is None:
        raise SpecError(f"{spec.name}: --shard: only an fstests cell is split over jobs")
    return replace(spec, fstests=replace(spec.fstests, tests=tuple(tests), groups=(), exclude_groups=(),
                                         exclude_tests=()))


# --- merge ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One shard as the merge found it."""

    index: int
    of: int
    folder: Path | None  # its cell folder; None: it never reported
    tests: tuple[str, ...] = ()

    def data(self) -> dict | None:
        if self.folder is None:
            return None
        try:
            return json.loads((self.folder / "result.json").read_text())
        except (OSError, ValueError):
            return None

    def failure(self) -> str | None:
        """Why this shard's share cannot count (None: it ran to the end and was judged)."""
        data = self.data()
        if data is None:
            return "never reported (its job left no cell folder)"
        if data.get("status") != "done":
            return f"did not finish ({data.get('status')})"
        if data.get("verdict") in ERROR_VERDICTS:
            return f"{data.get('verdict')}: {data.get('error') or _detail(data) or 'no detail'}"
        return None


def _detail(data: dict) -> str:
    return next((r.get("detail") for r in data.get("results", ()) if r.get("detail")), "")


def _met(expectation: str | None, parts: Sequence[tuple[Part, dict | None]], failed: bool) -> bool | None:
    mets = [d.get("expectation_met") for _, d in parts if d is not None and d.get("verdict") not in ERROR_VERDICTS]
    if expectation == "reproduce":  # one shard showing the bug is the bug showing
        return True if True in mets else (None if failed else (False if mets else None))
    if False in mets:  # a shard contradicts it (a test failed on a kernel that must pass)
        return False
    return None if failed or not mets else (True if all(m is True for m in mets) else None)


def _table(parts: Sequence[tuple[Part, dict | None]], failures: Mapping[int, str]) -> list[TestResult]:
    """One fstests table: every test any shard ran (its last run's status), the missing shards' tests unreached."""
    rows: dict[str, TestResult] = {}
    for part, data in parts:
        for run in (data or {}).get("results", ()):
            for t in (run.get("fstests") or {}).get("tests", ()):
                rows[t["name"]] = TestResult(t["name"], Status(t["status"]), t.get("seconds"),
                                             f"shard {part.index}/{part.of}: {t.get('reason') or ''}".rstrip(": "))
        if part.index in failures:
            for name in part.tests:
                if name not in rows:
                    rows[name] = TestResult(name, Status.UNREACHED,
                                            reason=f"shard {part.index}/{part.of} {failures[part.index]}")
    return [rows[k] for k in sorted(rows)]


def combine(cell: str, kernel: str, repro: str, expectation: str | None, parts: Sequence[Part], dest: Path) -> Path:
    """One cell folder ``dest`` from its shards' folders (copied into ``shard-I/``); its ``result.json``."""
    # long: one record built in order (copies, runs, verdict, table), each step reading the one before
    dest.mkdir(parents=True)
    loaded = [(p, p.data()) for p in sorted(parts, key=lambda p: p.index)]
    failures = {p.index: why for p, _ in loaded if (why := p.failure())}
    runs = []
    for part, data in loaded:
        if part.folder is None:
            continue
        shutil.copytree(part.folder, dest / f"shard-{part.index}", symlinks=True)
        for r in (data or {}).get("results", ()):
            run = r.get("path") or "run-{:02d}".format(r.get("run", 1))
            path = f"shard-{part.index}/{run}"
            runs.append({**r, "path": path, "side": f"shard {part.index}/{part.of}"})
    reported = [d for _, d in loaded if d is not None]
    found = [(FINDINGS.index(d["verdict"]), d) for d in reported if d.get("verdict") in FINDINGS]
    errors = [d for d in reported if d.get("verdict") in ERROR_VERDICTS]
    if found:
        worst = min(found, key=lambda f: f[0])[1]
        verdict, title = worst["verdict"], worst.get("title")
    elif failures:
        verdict, title = (errors[0]["verdict"] if errors and len(errors) == len(failures) else "INFRA_ERROR"), None
    else:
        verdict, title = "CLEAN", None
    named = "; ".join(f"shard {i}/{next(p.of for p, _ in loaded if p.index == i)} {why}"
                      for i, why in sorted(failures.items()))
    table = _table(loaded, failures)
    (dest / TABLE).write_text(summary_table(table))
    first = reported[0] if reported else {}
    record = {
        "repro": repro, "kernel": first.get("kernel") or {"name": kernel},
        "accel": first.get("accel"),
        "accel_reason": "; ".join(f"shard {p.index}/{p.of}: {d.get('accel')}: {d.get('accel_reason')}"
                                  for p, d in loaded if d is not None),
        "verdict": verdict, "title": title,
        "hits": sum(d.get("hits", 0) for d in reported), "runs": sum(d.get("runs", 0) for d in reported),
        "expectation": expectation, "expectation_met": _met(expectation, loaded, bool(failures)),
        "interrupted": any(d.get("interrupted") for d in reported),
        "time_to_hit": sorted(t for d in reported for t in d.get("time_to_hit", ()) if t is not None),
        "median_time_to_hit": None, "results": runs, "status": "done",
        "error": (f"{named}: its share is not counted" if failures else None),
        "shards": [{"index": p.index, "of": p.of, "folder": f"shard-{p.index}" if p.folder else None,
                    "verdict": (d or {}).get("verdict"), "failure": failures.get(p.index)} for p, d in loaded],
        "fstests": {"tests": [t.to_json() for t in table], "counts": dict(Counter(str(t.status) for t in table))},
        "cell": cell,
    }
    write_json(dest / "result.json", record)
    return dest
