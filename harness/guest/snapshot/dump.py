"""The guest's memory at the crash: the QMP `dump-guest-memory` command for a run folder.

Pure functions: which format this QEMU can write (from query-dump-guest-memory-capability)
and the arguments of the dump command. The caller stops the guest (QMP `stop`) first.
"""
from __future__ import annotations

from pathlib import Path

# Best first: kdump-compressed cores are a fraction of guest RAM and drgn reads them; ELF always works.
PREFERRED_FORMATS = ("kdump-zlib", "elf")


def choose_format(capability: dict) -> str:
    """The best format the QEMU's capability reply offers; "elf" when the reply lists none."""
    offered = set(capability.get("formats", ()))
    for name in PREFERRED_FORMATS:
        if name in offered:
            return name
    return "elf"


def dump_arguments(path: Path, fmt: str) -> dict:
    """The arguments of QMP `dump-guest-memory` writing the whole guest to PATH, unpaged."""
    return {"paging": False, "protocol": f"file:{path}", "format": fmt}
