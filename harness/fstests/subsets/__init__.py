"""Documented test subsets (data): ``NAME.txt`` holds one test a line with what it measured.

Line format: ``generic/002  59`` (the test and its seconds in the measurement the file's
header describes); ``#`` starts a comment.  ``harness fstests --subset NAME`` (or the run
glue) takes the names; the seconds size timeouts and say what a run should cost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import SpecError, UnknownName

HERE = Path(__file__).resolve().parent
_LINE = re.compile(r"^([a-z0-9]+/[0-9]{3}(?:-[A-Za-z0-9-]+)?)(?:\s+(\d+))?$")


@dataclass(frozen=True)
class Subset:
    name: str
    tests: tuple[str, ...]
    seconds: dict[str, int]  # measured seconds per test (as check reported them)
    notes: str  # the header comment: where and how it was measured

    @property
    def measured_total(self) -> int:
        return sum(self.seconds.values())


def names() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.txt"))


def parse_subset(name: str, text: str) -> Subset:
    tests, seconds, notes = [], {}, []
    for number, raw in enumerate(text.splitlines(), 1):
        body, _, comment = raw.partition("#")
        if not body.strip():
            if comment.strip() and not tests:
                notes.append(comment.strip())
            continue
        m = _LINE.match(body.strip())
        if not m:
            raise SpecError(f"fstests subset {name}, line {number}: expected 'DIR/NNN [SECONDS]', got {body.strip()!r}")
        tests.append(m.group(1))
        if m.group(2):
            seconds[m.group(1)] = int(m.group(2))
    if not tests:
        raise SpecError(f"fstests subset {name} lists no tests")
    return Subset(name, tuple(dict.fromkeys(tests)), seconds, "\n".join(notes))


def load(name: str) -> Subset:
    path = HERE / f"{name}.txt"
    if not path.exists():
        raise UnknownName(f"Unknown fstests subset {name!r}. Available: {', '.join(names()) or '(none)'}")
    return parse_subset(name, path.read_text())
