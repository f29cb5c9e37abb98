"""The backend contract: what every guest backend supplies, and the one registry of them.

As syzkaller's ``vm/vmimpl`` Instance and kirk's SUT: a backend supplies a
guest's lifecycle and transport; the run driver (harness.repro.run) decides
everything else.  A backend

- is built from its name by the registry (``select("vng-ssh:2")``): each entry
  parses its own ``:ARG``;
- is opened once for a reproducer's runs (``open``/``close``; ``plan(runs)``
  says how many runs will come) and runs one ``GuestRequest`` at a time
  (``run``), writing ``console.log`` and ``guest.log`` into the run folder as
  they come and returning a ``GuestRun`` whose ``signals`` say what the run
  told about the guest;
- carries out the driver's decision to replace a guest (``replace(reason)``:
  reboot, restore, or, for a machine it cannot reboot, remember that its
  kernel is unfit).  The decision itself is ``unfit_reason(signals)``, taken
  once, by the driver.

The backends: vng (one boot per run, harness.guest.vng), vng-ssh (one
long-lived guest over SSH, harness.guest.vngssh), snapshot (one boot, every run
restored from the saved guest, harness.guest.snapshot), ssh:NAME (a machine of
the user's, harness.guest.target); harness.guest.backends registers them and
picks one for ``auto``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import GuestError, UnknownName
from harness.guest.protocol import GuestPlan, session_line
from harness.kernels import Kernel
from harness.registry import Registry

log = logging.getLogger(__name__)

# The one switch for guests prepared ahead, whatever the backend: how many guests get ready for the runs to
# come while a run runs (vng-ssh boots that many once a run has needed a reboot; snapshot restores the next
# run's guest, at most one); 0: none, each guest is made when its run starts.
AHEAD = "HARNESS_AHEAD"
MAX_AHEAD = 4
_WARNED: set[str] = set()


def guests_ahead(default: int, *, old: str | None = None) -> int:
    """``$HARNESS_AHEAD``, else a backend's former switch ``$old`` (deprecated, said once), else ``default``."""
    name = AHEAD if AHEAD in os.environ else old if old and old in os.environ else None
    if name is None:
        return default
    text = os.environ[name].strip()
    if not (text.isdigit() and int(text) <= MAX_AHEAD):
        raise GuestError(f"${name}={text!r}: the number of guests prepared ahead, 0 to {MAX_AHEAD}")
    if name == old:
        deprecated(f"${old} is the old spelling of ${AHEAD} (set {AHEAD}={text})")
    return int(text)


def deprecated(note: str) -> None:
    """A spelling kept working: said once per process."""
    if note not in _WARNED:
        _WARNED.add(note)
        log.warning("deprecated: %s", note)


@dataclass(frozen=True)
class Disk:
    path: Path
    serial: str  # the guest finds it as the virtio disk with this serial


@dataclass(frozen=True)
class GuestRequest:
    """Everything one run needs from a backend; built by the run driver.

    ``plan`` holds host paths (the run folder's files); a backend whose guest
    sees them elsewhere maps them (harness.guest.remote.Staging)."""

    kernel: Kernel
    plan: GuestPlan
    run_dir: Path
    accel: str  # "kvm" or "tcg"
    cpus: int = 2
    memory: str = "1G"
    disks: tuple[Disk, ...] = ()  # the run's image copy (attached, or copied to the guest)
    cmdline: tuple[str, ...] = ()  # extra kernel boot options
    lean: bool = True  # skip loading modules no run needs (see vng.UNUSED_MODULES)
    preload: tuple[str, ...] = ()  # modules the steps will load (fs-ext4): a guest booted ahead loads them early
    inputs: tuple[Path, ...] = ()  # host files the steps read (the source, a prebuilt binary)
    boots: int = 1  # separate boots a backend that restores saved guests spreads the runs over (round-robin)
    vmcore: bool = False  # dump the guest's memory into the run folder at the first crash report (--vmcore)


# --- what a run tells about its guest ------------------------------------------------------------

TAINT_LETTERS = "PFSRMBUDAWCIOELKXTNJ"  # bit i -> letter (Documentation/admin-guide/tainted-kernels.rst)
# Bits that loading a module can set: no sign the kernel went wrong.
BENIGN_TAINT = (1 << 0) | (1 << 10) | (1 << 12) | (1 << 13) | (1 << 15) | (1 << 16) | (1 << 17)


def taint_letters(mask: int | None) -> str:
    if mask is None:
        return "?"
    if mask == 0:
        return "-"
    return "".join(TAINT_LETTERS[i] if i < len(TAINT_LETTERS) else f"<{i}>" for i in range(mask.bit_length())
                   if mask >> i & 1)


def new_taint(before: int | None, after: int | None) -> int:
    """Bits set after but not before, that say something about the kernel's health."""
    if before is None or after is None:
        return 0
    return after & ~before & ~BENIGN_TAINT


@dataclass(frozen=True)
class RunSignals:
    """What a finished run tells about the guest it ran on."""

    taint_before: int | None
    taint_after: int | None
    lost: bool = False  # the connection dropped / the guest went away
    killed: str | None = None  # the host stopped waiting (watchdog, timeout)
    reports: tuple[str, ...] = ()  # crash titles in the run's console window
    run_rc: int | None = 0  # the run step's exit status (124/137: the in-guest timeout hit)
    trial_end: bool = False  # that timeout is the trial's planned end (GuestPlan.timeout_ends_trial)


def unfit_reason(s: RunSignals) -> str | None:
    """Why the guest must be replaced before another run, or None if it is fit (the driver's one decision)."""
    why = []
    if s.lost:
        why.append("the guest went down (SSH connection lost)")
    if s.killed:
        why.append(f"the run made no progress ({s.killed})")
    bits = new_taint(s.taint_before, s.taint_after)
    if bits:
        why.append(f"kernel taint changed {taint_letters(s.taint_before)} -> {taint_letters(s.taint_after)}"
                   f" (new: {taint_letters(bits)})")
    elif s.taint_after is None and not s.lost and not s.killed:
        why.append("the run ended without reporting the kernel's taint")
    if s.reports:
        why.append(f"the console shows {s.reports[0]}")
    if s.run_rc in (124, 137):
        why.append("the reproducer was stopped at the trial's planned end (its processes may still hold the kernel)"
                   if s.trial_end else "the reproducer hit its timeout in the guest (it may be stuck in the kernel)")
    return "; ".join(why) or None


@dataclass(frozen=True)
class GuestRun:
    """What came back from one run (the logs are already on disk)."""

    returncode: int | None  # None: killed at the host timeout / no exit status
    seconds: float
    console_log: Path
    output_log: Path
    argv: tuple[str, ...] = field(default=(), compare=False)
    detail: str | None = None  # why the backend stopped waiting (timeout + probe, lost connection)
    info: dict = field(default_factory=dict, compare=False)  # backend facts for result.json ("guest")
    signals: RunSignals | None = None  # None: one boot per run (nothing to decide)

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


# --- the contract ----------------------------------------------------------------------------------


class Backend:
    """One kind of guest.  Subclasses set ``name``/``usage``/``help`` and implement ``run``.

    ``compiles``: whether its guests can compile the reproducer (a vng guest
    shares the host's root and gcc; a snapshot guest's root is a small
    initramfs).  ``own_toolchain``: its machine compiles with its own compiler
    and libraries (a user's machine), so the host's binary cache is neither
    used nor fed.  ``persistent``: a guest outlives a run, so the driver's
    replace decisions matter.  ``shares_root``: the guest reads the host's files where
    they are; ``attaches_disks``: a run's disks reach it as virtio disks with their
    serials (fstests needs both: check from the host's build, TEST_DEV and SCRATCH_DEV)."""

    name = "backend"
    usage = "backend"
    help = ""
    compiles = True
    own_toolchain = False
    persistent = False
    shares_root = False  # the guest sees the host's files at their paths (a vng guest's 9p root)
    attaches_disks = False  # every run's disks are attached as virtio disks (vng at boot, snapshot at restore)
    dumps_memory = False  # it can write the guest's memory at a crash (--vmcore: QMP dump-guest-memory)

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.progress = None
        self.remaining: int | None = None  # runs still to come, this one included (None: unknown)
        # the one name for "this guest must be replaced": why the last run's guest may not take another run
        # (set by replace; None: fit).  vng-ssh reboots and clears it, snapshot restores (every run anyway)
        # and clears it, ssh: cannot reboot and keeps it; one boot per run: nothing to do with it.
        self.unfit: str | None = None

    @classmethod
    def parse(cls, arg: str) -> Backend:
        """The backend for ``NAME:ARG`` (``arg`` is "" without a colon); raises GuestError on a bad ARG."""
        if arg:
            raise GuestError(f"backend {cls.name} takes no argument (got {cls.name}:{arg})")
        return cls()

    def open(self, folder: Path, *, progress=None) -> None:
        self.folder, self.progress = folder, progress

    def close(self) -> None:
        self.folder = None

    def plan(self, runs: int) -> None:
        """How many runs the session will ask for (a backend may prepare guests ahead)."""
        self.remaining = runs

    def run(self, req: GuestRequest, *, watchdog=None, timeout: float | None = None) -> GuestRun:
        raise NotImplementedError

    def replace(self, reason: str) -> None:
        """The driver decided that the guest of the last run may not take another: ``unfit`` says why."""
        self.unfit = reason

    def ran(self) -> None:
        if self.remaining is not None:
            self.remaining = max(0, self.remaining - 1)

    def event(self, text: str, run_log: Path | None = None) -> None:
        """A session event: a line in the folder's session.log, in the run's guest.log, and in progress."""
        if self.folder is not None:
            with open(self.folder / "session.log", "a") as fh:
                fh.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        if run_log is not None:
            with open(run_log, "a") as fh:
                fh.write(session_line(text))
        if self.progress:
            self.progress(f"{self.name}: {text}")


BACKENDS: Registry[type[Backend]] = Registry("guest backend")


def select(name: str) -> Backend:
    """The backend for ``NAME[:ARG]`` (``auto`` is resolved per kernel by harness.guest.backends.choose)."""
    kind, _, arg = name.partition(":")
    try:
        entry = BACKENDS.select(kind)
    except UnknownName as exc:
        exc.hint = "forms: auto, " + ", ".join(BACKENDS.select(n).usage for n in BACKENDS.names())
        raise
    return entry.parse(arg)


def usages() -> list[str]:
    """``NAME[:ARG]: help`` for every registered backend (the CLI's --backend help)."""
    return [f"{BACKENDS.select(n).usage}: {BACKENDS.select(n).help}" for n in BACKENDS.names()]
