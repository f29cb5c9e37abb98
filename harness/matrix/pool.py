"""How many guests at a time, and the workers that run them.

``plan_jobs`` bounds the guests by host CPUs (``guest_cpus`` vCPUs a guest)
and free memory.  ``in_processes`` runs tasks in forked workers, ``jobs`` at
a time, and stops every one of them cleanly on Ctrl-C or SIGTERM
(``sigterm_as_interrupt``); ``in_order`` is the one-at-a-time path in this
process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import wait as mp_wait
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.sizes import parse_size

GiB = 1 << 30
GUEST_OVERHEAD = 256 << 20  # QEMU's own memory next to the guest's
INTERRUPTED = "interrupted"  # what a worker stopped by Ctrl-C answers


# --- resources ----------------------------------------------------------------------------------


def memory_bytes(text: str | int) -> int:
    """A guest's memory in bytes: QEMU's sizes (``1G``, ``512M``; a bare number is MiB, as for ``-m``)."""
    return parse_size(text, bare="M", what="memory size")


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


# --- workers ------------------------------------------------------------------------------------


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
    """SIGTERM ends a run like Ctrl-C does (what finished stays recorded); the old handler comes back after."""
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
