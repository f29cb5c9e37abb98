"""Run a command on a leash: it and everything it starts die with the harness.

``proc.run`` starts long-lived children (vng, QEMU, make) as
``python -I -S harness/leash.py ARGV...``.  The leash leads its own process
group (proc.run starts it in a new session), arms PR_SET_PDEATHSIG so the
kernel sends it SIGTERM when the harness thread that started it dies (a
crash, kill -9), and turns SIGTERM or SIGINT into SIGKILL of the whole group:
vng, the virtme-run it forks, QEMU, make's compilers.  Without it a killed
harness leaves QEMU re-parented to init, running until its kernel panics (a
hung guest: forever).

This file runs as a script (no package import: it starts in ~15 ms) and
imports nothing of the harness.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _kill_group(signum, frame):  # noqa: ARG001
    os.killpg(0, signal.SIGKILL)  # the leash is in the group too: this is its end as well


def main(argv):
    if not argv:
        sys.stderr.write("usage: leash.py ARGV...\n")
        return 2
    parent = os.getppid()
    signal.signal(signal.SIGTERM, _kill_group)
    signal.signal(signal.SIGINT, _kill_group)
    signal.signal(signal.SIGHUP, _kill_group)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the harness died before the leash was armed
        _kill_group(signal.SIGTERM, None)
    child = os.fork()
    if child == 0:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        except OSError as exc:
            sys.stderr.write(f"leash: {argv[0]}: {exc.strerror}\n")
            os._exit(127)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            return os.waitstatus_to_exitcode(status) if status & 0x7F == 0 else 128 + (status & 0x7F)
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
