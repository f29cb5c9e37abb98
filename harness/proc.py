"""The one subprocess helper: log the quoted command, stream output to files.

Output goes straight from the child into the log files (no buffering in
Python), so a crash, a hang or Ctrl-C never loses what was already printed.
"""

from __future__ import annotations

import errno
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness.errors import ExitCode, HarnessError, MissingTool

log = logging.getLogger("harness.cmd")
LEASH = Path(__file__).resolve().with_name("leash.py")


def leashed(argv: Sequence[str]) -> list[str]:
    """``argv`` run on a leash: it and everything it starts die with this process (harness/leash.py)."""
    return [sys.executable, "-I", "-S", str(LEASH), *argv]


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int | None  # None when the command was killed for its timeout
    seconds: float
    output: str = ""  # captured stdout (+stderr) when capture=True

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


NO_SPACE_HINT = "free some: `harness kernel evict --max-size SIZE`, old results folders"


class CommandFailed(HarnessError):
    def __init__(self, done: Completed, what: str, tail: str = ""):
        rc = "timed out" if done.timed_out else f"exit {done.returncode}"
        detail = f": {tail.strip().splitlines()[-1]}" if tail.strip() else ""
        full = os.strerror(errno.ENOSPC) in tail or os.strerror(errno.ENOSPC) in (done.output or "")  # ENOSPC: the disk, not the tool
        super().__init__(f"{what} failed ({rc}){detail}" + ("; no space left on device" if full else ""),
                         hint=NO_SPACE_HINT if full else None)
        self.done = done
        if full:
            self.exit_code = ExitCode.NO_SPACE


def _kill_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _pump(stream: IO[bytes], sinks: list[IO[bytes]], on_line: Callable[[str], None] | None, keep: list[bytes]) -> None:
    for raw in iter(stream.readline, b""):
        for sink in sinks:
            sink.write(raw)
            sink.flush()
        keep.append(raw)
        if on_line is not None:
            on_line(raw.decode(errors="replace").rstrip("\n"))


def _wait(proc: subprocess.Popen, timeout: float | None, watchdog: Callable[[], str | None] | None) -> int:
    if watchdog is None:
        return proc.wait(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return proc.wait(0.5)
        except subprocess.TimeoutExpired:
            pass
        reason = watchdog()
        if reason:
            log.warning("killing %s: %s", proc.args[0], reason)
            raise subprocess.TimeoutExpired(proc.args, 0)
        if deadline is not None and time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout or 0)


class _Files:
    """The log and output files a command writes into, held open while it runs."""

    def __init__(self, log_path: Path | None, stdout_path: Path | None, stderr_path: Path | None):
        self.opened: list[IO[bytes]] = []
        self.log = self._open(log_path) if log_path else None
        self.out = self._open(stdout_path) if stdout_path else None
        self.err = self._open(stderr_path) if stderr_path else None

    def _open(self, path: Path) -> IO[bytes]:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "ab", buffering=0)  # noqa: SIM115 (held open for the child)
        self.opened.append(fh)
        return fh

    def close(self) -> None:
        for fh in self.opened:
            fh.close()


def _start(args: tuple[str, ...], files: _Files, *, cwd, env, stdin, leash: bool) -> subprocess.Popen:
    try:
        return subprocess.Popen(
            leashed(args) if leash else args,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            stdin=stdin,
            stdout=files.out or subprocess.PIPE,
            stderr=files.err or (subprocess.STDOUT if files.out is None else subprocess.PIPE),
            start_new_session=True,
        )
    except FileNotFoundError:
        files.close()
        raise MissingTool(f"{args[0]} not found", hint="run `harness setup` to install the host packages") from None


def _pumps(proc: subprocess.Popen, files: _Files, on_line, keep: list[bytes]) -> list[threading.Thread]:
    """Threads copying the child's piped output into the log, ``keep`` and ``on_line``."""
    if files.out is not None and files.err is not None:
        return []
    sinks = [files.log] if files.log else []
    pumps = []
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            t = threading.Thread(target=_pump, args=(stream, sinks, on_line, keep), daemon=True)
            t.start()
            pumps.append(t)
    return pumps


def run(
    argv: Sequence[str | os.PathLike],
    *,
    log_path: Path | None = None,
    stdout_path: Path | None = None,
    stderr_path: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    check: bool = True,
    capture: bool = False,
    on_line: Callable[[str], None] | None = None,
    stdin: int | IO | None = subprocess.DEVNULL,
    what: str | None = None,
    watchdog: Callable[[], str | None] | None = None,
    leash: bool = False,
) -> Completed:
    """Run ``argv``; never leaves a child behind.

    - ``stdout_path``/``stderr_path``: the child writes into these files itself.
    - ``log_path``: the quoted command, then stdout+stderr, appended as they come.
    - ``capture``/``on_line``: also keep the text / call back per line.
    - ``watchdog``: polled twice a second; a non-empty reason kills the child
      (reported like a timeout).
    - ``leash``: the child and all it starts die with the harness, even on
      kill -9 (guests, builds: harness/leash.py).
    """
    args = tuple(str(a) for a in argv)
    if leash and shutil.which(args[0]) is None and not Path(args[0]).exists():
        raise MissingTool(f"{args[0]} not found", hint="run `harness setup` to install the host packages")
    cmdline = shlex.join(args)
    log.info("$ %s", cmdline)
    files = _Files(log_path, stdout_path, stderr_path)
    if files.log:
        files.log.write(f"$ {cmdline}\n".encode())
    start = time.monotonic()
    proc = _start(args, files, cwd=cwd, env=env, stdin=stdin, leash=leash)
    keep: list[bytes] = []
    pumps = _pumps(proc, files, on_line, keep)
    rc: int | None = None  # stays None when a signal (Ctrl-C, SIGTERM) ends the wait
    try:
        rc = _wait(proc, timeout, watchdog)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        for t in pumps:
            t.join(5)
        seconds = time.monotonic() - start
        if files.log:
            files.log.write(f"# exit {rc} after {seconds:.1f}s\n".encode())
        files.close()
    text = b"".join(keep).decode(errors="replace") if (capture or check) else ""
    done = Completed(args, rc, seconds, text if capture else "")
    if check and not done.ok:
        raise CommandFailed(done, what or Path(args[0]).name, tail=text[-2000:])
    return done
