"""A QMP client: one command at a time, events skipped (QEMU's machine protocol, JSON over a UNIX socket).

A 60-line synchronous client rather than the ``qemu.qmp`` package, whose
synchronous wrapper is marked legacy (it is asyncio-based); the harness
needs five commands: qmp_capabilities, stop, migrate, migrate-incoming, cont
(and query-migrate / query-status / quit).
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path

from harness.errors import GuestError


class Qmp:
    """A QMP client: one command at a time, events skipped."""

    def __init__(self, path: Path, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        self.sock = socket.socket(socket.AF_UNIX)
        while True:
            try:
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise GuestError(f"QEMU's QMP socket {path} did not answer in {timeout:.0f} s") from None
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rw")
        json.loads(self.file.readline())  # greeting
        self.command("qmp_capabilities")

    def command(self, name: str, **arguments) -> dict:
        msg = {"execute": name, **({"arguments": arguments} if arguments else {})}
        self.file.write(json.dumps(msg) + "\n")
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise GuestError(f"QEMU closed QMP during {name}")
            reply = json.loads(line)
            if "event" in reply:
                continue
            if "error" in reply:
                raise GuestError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return", {})

    def wait(self, what: str, done, timeout: float, poll: float = 0.05) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.command(what)
            if done(state):
                return state
            if time.monotonic() > deadline:
                raise GuestError(f"QMP {what}: still {state} after {timeout:.0f} s")
            time.sleep(poll)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()  # the makefile() holds the socket open too
            self.sock.close()
