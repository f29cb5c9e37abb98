"""Kernels: one small class per source kind, behind one registry.

A kernel name is ``KIND:REST`` (``debian:6.1.0-47``, ``debian:6.12.117``).
``resolve(name)`` returns a ready-to-boot ``Kernel`` record, fetching or
building it through the kind's class and its cache.
"""

from __future__ import annotations

# debian and sources register their kinds in SOURCES when imported
from harness.kernels import debian, sources  # noqa: F401
from harness.kernels.kernel import SOURCES, Kernel, KernelSource, split_name

__all__ = ["SOURCES", "Kernel", "KernelSource", "resolve", "split_name"]


def resolve(name: str, *, progress=None) -> Kernel:
    kind, rest = split_name(name)
    return SOURCES.select(kind).resolve(rest, progress=progress)
