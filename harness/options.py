"""RunOptions: how to run, one record shared by every driver (repro, matrix, bisect, prove) and kind of run.

The CLI builds it once (``harness.cli.options.add_run_options`` / ``from_args``);
drivers pass it down unchanged or with a field replaced (``with_``).  What
it does not hold: the reproducer (a spec), the kernel, and the accelerator
actually chosen for that kernel (``Accel``: chosen per kernel, with its reason).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Accel:
    """The accelerator a kernel runs with, and why (``auto`` probes KVM once per host boot)."""

    name: str  # kvm | tcg | - (a backend that runs on a machine's own kernel)
    reason: str = ""


@dataclass(frozen=True)
class RunOptions:
    accel: str = "auto"  # auto | kvm | tcg: the request; Accel is the answer for one kernel
    backend: str = "auto"  # auto | vng | vng-ssh[:N] | snapshot | ssh:NAME[:DISK]
    runs: int | None = None  # None: the spec's
    results: Path | None = None  # results root (None: $HARNESS_RESULTS or ./results)
    fresh_compile: bool = False  # compile in every guest (default: reuse a binary compiled in an earlier guest)
    host_compile: bool = False  # compile on the host (the gcc and headers a vng guest uses) instead of in a guest
    timeout: int | None = None  # the reproducer's own limit in seconds (None: the spec's)
    cmdline: tuple[str, ...] = ()  # extra kernel boot options (a variant's)
    # the test suite's tree, for a kind of run that runs one (fstests: a checkout or a tarball; None: the
    # kind's default, $HARNESS_FSTESTS)
    suite: str | None = None
    boots: int | None = None  # separate saved boots a restoring backend spreads the runs over (None: 1; prove: 3)
    vmcore: bool = False  # every run's guest memory dumped at its first crash report (also the spec's guest.vmcore)

    def with_(self, **changes) -> RunOptions:
        return replace(self, **changes)

    @property
    def compile_cache(self) -> bool:
        return not self.fresh_compile
