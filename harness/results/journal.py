"""One append-only journal: JSON objects a line, each fsync'd before the caller goes on.

What resumes after a kill keeps one of these: a proof's ``proof.jsonl``, a
bisection's ``steps.jsonl``.  A kill can cut the last line anywhere (even
inside a UTF-8 character): ``append`` first ends such a line, so that it stays
one bad line instead of swallowing the next record, and ``read`` skips lines
that are not a JSON object.  Nothing is ever rewritten in place.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def now() -> str:
    """The journals' timestamp: local time, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S")


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def append(self, record: dict) -> None:
        """``record`` on disk (one line, fsync'd) before this returns."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a line cut by a kill: end it, so that it stays one bad line
                    fh.write(b"\n")
            fh.write((json.dumps(record, default=str) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())

    def read(self) -> list[dict]:
        """Every whole record, in order; lines cut by a crash are skipped.  Raises OSError when unreadable."""
        records = []
        for line in self.path.read_text(errors="replace").splitlines():  # a kill may cut a character too
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
        return records
