"""Guest backends: boot a kernel, run the guest steps, capture everything."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.errors import UnknownName
from harness.guest.steps import MARK
from harness.kernels import Kernel
from harness.registry import Registry


@dataclass(frozen=True)
class Disk:
    path: Path
    serial: str  # the guest finds it as /dev/disk/by-id/virtio-SERIAL


@dataclass(frozen=True)
class GuestRequest:
    """Everything one boot needs; built by the run, consumed by a backend."""

    kernel: Kernel
    command: tuple[str, ...]  # argv run inside the guest
    accel: str  # "kvm" or "tcg"
    cpus: int = 2
    memory: str = "1G"
    disks: tuple[Disk, ...] = ()
    rwdirs: tuple[Path, ...] = ()
    cmdline: tuple[str, ...] = ()  # extra kernel boot options
    cwd: Path | None = None
    lean: bool = True  # skip loading modules no run needs (see vng.UNUSED_MODULES)
    preload: tuple[str, ...] = ()  # modules the steps will load (fs-ext4): a guest booted ahead loads them early
    binary: Path | None = None  # where the steps look for the compiled reproducer (the binary cache)
    compile_argv: tuple[str, ...] = ()  # host command that writes ``binary`` (for guests without a compiler)


@dataclass(frozen=True)
class GuestRun:
    """What came back from one boot (the logs are already on disk).

    Backends write ``console.log`` (kernel console) and ``guest.log`` (the
    guest command's output) into the run folder.
    """

    returncode: int | None  # None: killed at the host timeout
    seconds: float
    console_log: Path
    output_log: Path
    argv: tuple[str, ...] = field(default=(), compare=False)
    detail: str | None = None  # why the backend stopped waiting (timeout + probe, lost connection)
    info: dict = field(default_factory=dict, compare=False)  # backend facts for result.json ("guest")

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


class Backend(Protocol):
    """One boot per run (vng), or a guest/connection kept across runs (vng-ssh, ssh:NAME):
    those also have ``open(folder, progress=None)`` and ``close()``, which run_repro
    calls around a reproducer's runs."""

    name: str

    def run(self, req: GuestRequest, run_dir: Path, *, timeout: float, watchdog=None) -> GuestRun:
        """Boot and run; console.log and guest.log appear in run_dir as they come."""


class Persistent:
    """A backend that keeps a guest or a connection open across runs.

    ``run_repro`` calls ``open`` once before the runs and ``close`` after;
    used without ``open``, ``run`` opens for this one run alone.
    """

    name: str = "persistent"  # how progress lines name it: vng-ssh, ssh:lab1
    folder: Path | None = None
    progress = None  # set by open(): a callable for progress lines, or None
    remaining: int | None = None  # runs still to come, this one included (None: unknown)

    def plan(self, runs: int) -> None:
        """How many runs the session will ask for (a backend may prepare guests ahead)."""
        self.remaining = runs

    def _event(self, text: str, run_log: Path | None = None) -> None:
        """A session event: a line in the folder's session.log, in the run's log, and in progress."""
        stamp = time.strftime("%H:%M:%S")
        if self.folder is not None:
            with open(self.folder / "session.log", "a") as fh:
                fh.write(f"{stamp} {text}\n")
        if run_log is not None:
            with open(run_log, "a") as fh:
                fh.write(f"{MARK} session {text}\n")
        if self.progress:
            self.progress(f"{self.name}: {text}")

    def open(self, folder: Path, *, progress=None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def run(self, req: GuestRequest, run_dir: Path, *, timeout: float | None, watchdog=None) -> GuestRun:
        oneshot = self.folder is None
        if oneshot:
            self.open(run_dir.parent)
        try:
            return self._run(req, run_dir, timeout=timeout, watchdog=watchdog)
        finally:
            if self.remaining is not None:
                self.remaining = max(0, self.remaining - 1)
            if oneshot:
                self.close()

    def _run(self, req: GuestRequest, run_dir: Path, *, timeout: float | None, watchdog) -> GuestRun:
        raise NotImplementedError


BACKENDS: Registry[type] = Registry("guest backend")
# Backends named KIND:ARG (``ssh:lab1``): the class gets ARG.
PARAMETRIC: dict[str, type] = {}


# Backends that take an optional argument (``vng-ssh:2``): registered in BACKENDS too.
OPTIONAL_ARG: set[str] = set()


def select(name: str) -> Backend:
    kind, colon, arg = name.partition(":")
    if kind in PARAMETRIC:
        return PARAMETRIC[kind](arg)
    if kind in OPTIONAL_ARG and colon:
        return BACKENDS.select(kind)(arg)
    try:
        return BACKENDS.select(name)()
    except UnknownName as exc:
        exc.hint = exc.hint or f"or {', '.join(f'{k}:NAME' for k in sorted(PARAMETRIC))} for a machine in targets.yaml"
        raise


def _register_builtin() -> None:
    from harness.guest import session, snapshot, target, vng  # noqa: F401


_register_builtin()
