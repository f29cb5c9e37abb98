"""Parser throughput over a directory of console logs (``nox -s bench``, ``tools.bench.figures``)."""

from __future__ import annotations

import time
from pathlib import Path

from harness.report.corpus import case_files, load_case
from harness.report.parser import parse


def corpus_throughput(corpus_dir: Path | str, passes: int = 3) -> dict:
    """Parse every log of ``corpus_dir``: files, reports, MB, seconds and MB/s, wall and CPU.

    One untimed warm-up pass (regexps compiled, tables built), then ``passes``
    timed ones; the fastest pass counts, by wall and by CPU time separately.
    CPU time (``time.process_time``) is the fair figure on a loaded host: the
    parser is CPU-bound, and wall time counts the time other processes run.
    Reading the files is not timed; case headers (``TITLE:``...) are dropped.
    """
    logs = [load_case(path).log for path in case_files(Path(corpus_dir))]
    megabytes = sum(len(log.encode()) for log in logs) / 1e6
    reports = sum(len(parse(log)) for log in logs)
    wall = cpu = float("inf")
    for _ in range(max(passes, 1)):
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        for log in logs:
            parse(log)
        cpu = min(cpu, time.process_time() - cpu_start)
        wall = min(wall, time.perf_counter() - wall_start)

    def rate(seconds: float) -> float:
        return round(megabytes / seconds, 3) if seconds > 0 else float("inf")

    return {
        "files": len(logs),
        "reports": reports,
        "mb": round(megabytes, 3),
        "seconds": round(wall, 3),
        "mb_per_s": rate(wall),
        "cpu_seconds": round(cpu, 3),
        "cpu_mb_per_s": rate(cpu),
    }
