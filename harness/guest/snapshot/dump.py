"""The guest's memory at the crash: QMP ``dump-guest-memory`` into the run folder (``--vmcore``).

``CoreWatch`` is polled beside the run's watchdog (twice a second, harness.guest.ssh).
At the console's first crash report, once the report is complete (its panic's end
line, or a second without new console output), it stops the guest, writes its
memory with ``dump-guest-memory``, and then shuts a panicked guest down (the
kernel halts in ``panic()``: the run's guest sets ``kernel.panic=0`` so that it
does not reboot first) or lets a live one go on (a WARNING without
panic_on_warn: the run ends as it would have).  A dump that fails is recorded
with its reason; it never changes the run's verdict.

The core is ELF, with its zero pages punched out afterwards (util-linux's
``fallocate --dig-holes``): a 1 GiB guest's core takes about 160 MiB of disk.
Not QEMU's kdump-zlib (44 MiB for the same guest): QEMU 7.2 writes it in
makedumpfile's flattened format, and drgn 0.3.0's libkdumpfile refused it,
flattened and reassembled alike ("KDUMP_ATTR_ARCH_NAME: Key has no value"),
measured on a Debian 6.1 guest's core.  The guest gets QEMU's ``vmcoreinfo``
device and the kernel's fw_cfg driver, so the core carries VMCOREINFO
(release, KASLR offset) that drgn needs to open it.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from harness import proc, report
from harness.errors import GuestError, HarnessError

FORMAT = "elf"  # see the module doc: the one format drgn opened from this QEMU
CORE_NAME = "vmcore"
PART_NAME = "vmcore.part"  # while QEMU writes it
QUIET_SECONDS = 1.0  # a report is complete when the console has said nothing new for this long...
MAX_WAIT_SECONDS = 10.0  # ...or this long after it began, whatever the console still prints
DUMP_TIMEOUT = 600.0  # QMP's wait for the dump (1 GiB compressed under TCG: seconds; a large guest: longer)
PANIC_END = "---[ end Kernel panic"
PANICKED = "Kernel panic - not syncing"
# The kernel module that tells QEMU where VMCOREINFO is (built in on some kernels: then modprobe has nothing to do).
FW_CFG_MODULE = "qemu_fw_cfg"
GUEST_SETUP = "echo 0 > /proc/sys/kernel/panic"  # halt in panic() instead of rebooting: the dump needs the guest


def dump_arguments(path: Path) -> dict:
    """The arguments of QMP `dump-guest-memory` writing the whole guest to PATH, unpaged."""
    return {"paging": False, "protocol": f"file:{path}", "format": FORMAT}


def sparse_argv(path: Path) -> list[str]:
    """The command that frees the disk blocks of a core's zero pages (its content stays the same)."""
    return ["fallocate", "--dig-holes", str(path)]


def qemu_options() -> list[str]:
    """QEMU options a guest that may be dumped boots with (the device a kernel leaves VMCOREINFO's address in)."""
    return ["-device", "vmcoreinfo"]


def report_complete(text: str, quiet: float, since_first: float) -> bool:
    """Whether the crash report in ``text`` is all on the console: its panic ended, or the console has been
    quiet for QUIET_SECONDS, or MAX_WAIT_SECONDS passed since the report was first seen."""
    if PANICKED in text:
        return PANIC_END in text or quiet >= 2 * QUIET_SECONDS or since_first >= MAX_WAIT_SECONDS
    return quiet >= QUIET_SECONDS or since_first >= MAX_WAIT_SECONDS


def _dig_holes(path: Path) -> bool:
    try:
        return proc.run(sparse_argv(path), check=False, capture=True, timeout=300).returncode == 0
    except HarnessError:  # no fallocate on this host: the core stays whole, as QEMU wrote it
        return False


class CoreWatch:
    """The run's watchdog with a memory dump at the first crash report (see the module doc).

    ``machine`` gives ``text()`` (the run's console) and ``qmp(timeout)``; ``record`` is None
    until a dump was taken or tried, then what result.json says of it."""

    def __init__(self, machine, run_dir: Path, watchdog: Callable[[], str | None] | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.machine, self.run_dir, self.watchdog, self.clock = machine, Path(run_dir), watchdog, clock
        self.record: dict | None = None
        self.seen: float | None = None  # when the first report showed
        self.size = -1
        self.grew = clock()
        self.title: str | None = None

    def __call__(self) -> str | None:
        if self.record is None:
            self._poll()
        return self.watchdog() if self.watchdog else None

    def _poll(self) -> None:
        text = self.machine.text()
        now = self.clock()
        if len(text) != self.size:
            self.size, self.grew = len(text), now
            if self.seen is None:
                found = report.parse(text)
                if not found:
                    return
                self.seen, self.title = now, found[0].title
        if self.seen is not None and report_complete(text, now - self.grew, now - self.seen):
            self.record = self.dump(panicked=PANICKED in text)

    def dump(self, *, panicked: bool) -> dict:
        """Stop the guest, write its memory, then quit (panicked) or continue it; what happened."""
        path, part = self.run_dir / CORE_NAME, self.run_dir / PART_NAME
        record: dict = {"path": CORE_NAME, "report": self.title}
        started = self.clock()
        stopped = False
        try:
            q = self.machine.qmp(DUMP_TIMEOUT)
        except GuestError as exc:
            if panicked:  # halted in panic() for good (kernel.panic=0): stop QEMU rather than wait for the watchdog
                self.machine.stop("the dump's QMP did not answer")
            return {**record, "error": f"QMP did not answer: {exc}"}
        try:
            q.command("stop")
            stopped = True
            q.command("dump-guest-memory", **dump_arguments(part))
            dumped = self.clock()
            part.chmod(0o644)  # QEMU makes it 0400: the user's tools read it
            sparse = _dig_holes(part)
            part.rename(path)  # whole: a core named vmcore is never half written (a kill -9 leaves vmcore.part)
            record.update(format=FORMAT, bytes=path.stat().st_size, disk_bytes=path.stat().st_blocks * 512,
                          seconds=round(dumped - started, 2), sparse_seconds=round(self.clock() - dumped, 2),
                          **({} if sparse else {"sparse": "fallocate --dig-holes failed: the core keeps its zeros"}))
        except (GuestError, OSError) as exc:
            record["error"] = f"the dump failed: {exc}"
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)  # half a core opens in no tool
        finally:
            with contextlib.suppress(GuestError, OSError):
                if panicked:
                    q.command("quit")  # the kernel halted in panic(): nothing more will come
                elif stopped:
                    q.command("cont")
            record["guest"] = "shut down after the dump (it had panicked)" if panicked else "continued after the dump"
            q.close()
        return record
