"""Every kind of run, registered by the spec modes it runs; and the kind a spec asks for.

A new kind (LTP, kselftest...) is a ``RunKind`` subclass (harness.repro.kind)
in its own room, with the ``mode:`` values it runs, listed in ``KINDS`` here;
the run driver never asks which kind it runs.
"""

from __future__ import annotations

from harness.fstests.kind import Fstests
from harness.registry import Registry
from harness.repro.kind import RunKind
from harness.repro.reproducer import Reproducer
from harness.repro.spec import Spec

KINDS: Registry[type[RunKind]] = Registry("spec mode")  # mode -> the kind that runs it
for _kind in (Reproducer, Fstests):
    for _mode in _kind.modes:
        KINDS.add(_mode, _kind)


def for_spec(spec: Spec) -> RunKind:
    """The kind of run for ``spec``, by its mode ("Unknown spec mode 'x'. Available: ..." for none)."""
    return KINDS.select(spec.mode)(spec)
