"""The kernel record, the contract of a source kind, and the registry of kinds.

A leaf of the package: the source kinds (``debian``, ``sources``), ``build``
and the package's ``__init__`` (which registers the built-in kinds and
re-exports these names) import it; it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.errors import UnknownName
from harness.registry import Registry


@dataclass(frozen=True)
class Kernel:
    """A bootable kernel and the artifacts that go with it."""

    name: str  # what the user asked for, normalised ("debian:6.1.0-47")
    release: str  # `uname -r` ("6.1.0-47-amd64")
    version: str  # upstream version ("6.1.170")
    image: Path  # bzImage / vmlinuz
    boot_image: Path | None = None  # the ELF vmlinux QEMU boots directly through PVH (faster under TCG), else None
    root: Path | None = None  # tree holding lib/modules/<release>, or None (no modules)
    system_map: Path | None = None
    vmlinux: Path | None = None
    config: Path | None = None
    kind: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def config_value(self, option: str) -> str | None:
        """``y``/``m``/value of CONFIG_<option>, or None when unset/unknown."""
        if not self.config or not self.config.exists():
            return None
        key = option if option.startswith("CONFIG_") else f"CONFIG_{option}"
        for line in self.config.read_text().splitlines():
            if line.startswith(key + "="):
                return line.split("=", 1)[1].strip('"')
        return None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "release": self.release,
            "version": self.version,
            "kind": self.kind,
            "image": str(self.image),
        }


class KernelSource(Protocol):
    """One kind of kernel supply."""

    kind: str
    help: str

    def resolve(self, rest: str, *, progress=None) -> Kernel: ...

    def available(self) -> list[str]: ...


SOURCES: Registry[KernelSource] = Registry("kernel source")


def split_name(name: str) -> tuple[str, str]:
    kind, sep, rest = name.partition(":")
    if not sep or not rest:
        raise UnknownName(
            f"Kernel name {name!r} is not KIND:NAME (e.g. debian:6.1.0-47). Kinds: {', '.join(SOURCES.names())}"
        )
    return kind, rest
