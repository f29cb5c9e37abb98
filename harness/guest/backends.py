"""Every backend, registered; and ``auto``: the fastest honest backend for a kernel and a spec.

``auto`` (the default of repro, matrix, bisect and prove) picks the snapshot
backend where it can run (the kernel has virtio-net, QEMU is there) and the
run allows it (the spec does not ask for a real boot per run, nothing asks to
compile in every guest); vng otherwise.  The choice and its reason are
printed and recorded, like the accelerator's.
"""

from __future__ import annotations

import os

from harness.errors import GuestError
from harness.guest import target, vng, vngssh  # noqa: F401 (each registers its backend)
from harness.guest.machine import BACKENDS, Backend, select
from harness.guest.snapshot import machine as snapshot
from harness.kernels import Kernel

AUTO = "auto"


def choose(requested: str, kernel: Kernel, *, boot_per_run: bool = False, fresh_compile: bool = False,
           shares_root: str = "") -> tuple[str, str]:
    """(backend name, why) for ``requested`` (a backend name, or auto) on ``kernel``.

    ``shares_root``: the kind of run whose guest reads the host's files where they
    are (harness.repro.kind.Requirements), which snapshot guests cannot; "" for none."""
    if requested != AUTO:
        select(requested)  # a bad name or argument: one line now, not at the first run
        return requested, "forced by --backend"
    env = os.environ.get("HARNESS_BACKEND")
    if env:
        select(env)
        return env, "forced by HARNESS_BACKEND"
    if boot_per_run:
        return "vng", "auto: the spec asks for a real boot per run"
    if shares_root:
        return "vng", f"auto: the run reads the host's files in the guest ({shares_root}), which snapshot guests cannot"
    if fresh_compile:
        return "vng", "auto: --fresh-compile compiles in every guest, and snapshot guests have no compiler"
    why = snapshot.unusable(kernel)
    if why:
        return "vng", f"auto: not snapshot, {why.split(': use --backend')[0]}"
    return "snapshot", f"auto: {kernel.name} has virtio-net: one boot, every run restored from the saved guest"


def backend(name: str) -> Backend:
    """The backend for a concrete name (``auto`` must have been resolved by ``choose``)."""
    if name == AUTO:
        raise GuestError("backend auto is chosen per kernel: call harness.guest.backends.choose first")
    return select(name)


def usages() -> list[str]:
    """``NAME[:ARG]: help`` for auto and every registered backend (the CLI's --backend help)."""
    rows = [f"{AUTO}: snapshot where the kernel and the spec allow it, vng otherwise (the default)"]
    return rows + [f"{BACKENDS.select(n).usage}: {BACKENDS.select(n).help}" for n in BACKENDS.names()]
