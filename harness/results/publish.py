"""Publishing a matrix run: matrix.json, junit.xml, index.html and the history DB rows.

Called after every cell (and once more at the end), so Ctrl-C, SIGTERM or a
crash loses no finished cell; every file is written atomically.
"""

from __future__ import annotations

from harness.results import html, junit
from harness.results.db import History, MatrixIndex, db_path


def publish(index: MatrixIndex, history: History | None = None) -> None:
    """Write the index and its reports into ``index.folder``; record it in ``history``
    (default: ``history.sqlite3`` in the results root, the folder's parent)."""
    index.write()
    junit.write(index)
    html.write(index)
    (history or History(db_path(index.folder.parent))).record(index)
