"""The suite's bookkeeping: a fault is a function that injects it and returns rows; the table of them.

A fault function takes the ``Context`` (the sandbox and what faults share:
the warm cache, the fixtures) and returns one ``Row`` per (fault, phase)
it injected: what was expected, what was seen, whether it held.  A fault
that could not be set up (the phase never came, a tool is missing) is a
row that did not hold, with the reason: the table never hides a fault.
"""

from __future__ import annotations

import fnmatch
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.chaos.fixtures import SLOW_RECIPE
from tools.chaos.sandbox import ChaosError, Sandbox


@dataclass(frozen=True)
class Row:
    fault: str
    phase: str
    expected: str
    seen: str
    held: bool
    seconds: float = 0.0


@dataclass
class Context:
    box: Sandbox
    release: str  # the Debian 6.1 kernel the suite copies from the user's cache (6.1.0-57)
    source: str = "debian-src:6.1.192"  # the kernel source the user's cache holds unpacked
    shared: dict = field(default_factory=dict)  # what one fault leaves for another (a warm cache, a built kernel)

    @property
    def kernel(self) -> str:
        return f"debian:{self.release}"

    def warm(self) -> Path:
        """The cache the faults that do not damage it share: a copy of the user's Debian kernel."""
        if "warm" not in self.shared:
            self.shared["warm"] = self.box.warm_cache("cache-warm")
        return self.shared["warm"]

    def build_cache(self) -> Path:
        """The cache of the kernel-build faults: the user's unpacked source (hard links: the harness never
        writes a pristine tree) and a copy of their ccache (a first build of the lean base is then mostly hits)."""
        if "build" not in self.shared:
            self.shared["build"] = self.box.build_cache("cache-build")
        return self.shared["build"]

    def slow_recipe(self) -> Path:
        path = self.box.fixtures / "chaos-slow.yaml"
        path.write_text(SLOW_RECIPE)
        return path


FaultFn = Callable[[Context], Iterable[Row]]


@dataclass(frozen=True)
class Fault:
    name: str
    group: str  # kill, space, concurrency, corrupt, hang, input, venv
    fn: FaultFn
    ci: bool = False  # also run by the CI tests (tests/test_chaos_*.py)


FAULTS: list[Fault] = []


def fault(name: str, group: str, *, ci: bool = False) -> Callable[[FaultFn], FaultFn]:
    def register(fn: FaultFn) -> FaultFn:
        FAULTS.append(Fault(name, group, fn, ci))
        return fn

    return register


def check(rows: list[str]) -> tuple[str, bool]:
    """(seen, held) from a list of problems: none is 'as expected'."""
    return ("; ".join(rows), False) if rows else ("as expected", True)


def run_faults(ctx: Context, faults: Sequence[Fault], progress: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    for f in faults:
        progress(f"fault {f.name} ({f.group}) ...")
        start = time.monotonic()
        try:
            got = list(f.fn(ctx))
        except ChaosError as exc:
            got = [Row(f.name, "-", "-", f"could not inject: {exc}", False)]
        except Exception as exc:  # noqa: BLE001 (a bug in the suite is a row too, with its traceback in the log)
            (ctx.box.logs / f"{f.name}.traceback").write_text(traceback.format_exc())
            got = [Row(f.name, "-", "-", f"suite error: {exc.__class__.__name__}: {exc}", False)]
        took = time.monotonic() - start
        for r in got:
            progress(f"  {'held' if r.held else 'NOT HELD'}: {r.fault} / {r.phase}: {r.seen}")
        rows += [Row(r.fault, r.phase, r.expected, r.seen, r.held, r.seconds or took / max(1, len(got))) for r in got]
    return rows


GROUPS = ("input", "venv", "kill", "space", "concurrency", "corrupt", "hang")  # the order they run in


def select(names: Sequence[str] = (), groups: Sequence[str] = ()) -> list[Fault]:
    everything = not names and not groups
    chosen = [f for f in FAULTS if everything or f.group in groups or any(fnmatch.fnmatchcase(f.name, n) for n in names)]
    if not chosen:
        raise ChaosError(f"no fault matches {list(names) or ''} {list(groups) or ''}; --list names them")
    return sorted(chosen, key=lambda f: GROUPS.index(f.group))


def table(rows: Sequence[Row]) -> str:
    """The table (markdown, readable as text) and the last line ``N faults, N held``."""
    head = ("fault", "phase", "expected", "seen", "held")
    body = [(r.fault, r.phase, r.expected, r.seen, "yes" if r.held else "NO") for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(b) for b in body)]
    held = sum(r.held for r in rows)
    return "\n".join(out) + f"\n\n{len(rows)} faults, {held} held\n"


def write_report(rows: Sequence[Row], path: Path) -> None:
    path.write_text(table(rows))
