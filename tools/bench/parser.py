"""Parser throughput over a directory of console logs (``nox -s bench``, ``tools.bench.figures``)."""

from __future__ import annotations

import time
from pathlib import Path

from harness.report.corpus import case_files, load_case
from harness.report.parser import parse


def corpus_throughput(corpus_dir: Path | str) -> dict:
    """Parse every log of ``corpus_dir`` once: files, reports, MB, seconds, MB/s.

    Reading the files is not timed; case headers (``TITLE:``...) are dropped.
    """
    logs = [load_case(path).log for path in case_files(Path(corpus_dir))]
    megabytes = sum(len(log.encode()) for log in logs) / 1e6
    reports = 0
    start = time.perf_counter()
    for log in logs:
        reports += len(parse(log))
    seconds = time.perf_counter() - start
    return {
        "files": len(logs),
        "reports": reports,
        "mb": round(megabytes, 3),
        "seconds": round(seconds, 3),
        "mb_per_s": round(megabytes / seconds, 3) if seconds > 0 else float("inf"),
    }
