"""What the suite checks after a fault: the cache holds whole entries or none, the records parse.

``audit`` reads a cache the way the harness would trust it: a Debian
unpack or a built kernel with its ``.complete`` marker, an image, a PVH
vmlinux, a compiled binary with its record.  Each must match what was
recorded when it was made; an entry without its marker (a fetch or build cut
short) is not taken for whole by the harness, so it is no problem here; nor
is an entry made before sums were recorded (the harness sums it on its next
use).
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.kernels import integrity
from harness.repro.binaries import sha256_file


def _debian(cache: Path) -> list[str]:
    out = []
    for marker in sorted((cache / "kernels" / "debian").glob("*/.complete")):
        entry = marker.parent
        if integrity.Manifest(entry).exists():  # none: made before sums were kept (summed on its next use)
            out += [f"debian {entry.name}: {p}" for p in integrity.Manifest(entry).problems()]
        for vmlinux in (entry / "boot").glob("vmlinux-*"):
            if vmlinux.name.endswith((".sha256", ".no-pvh")) or ".tmp" in vmlinux.name:
                continue
            problem = integrity.file_problem(vmlinux, adopt=False)
            if problem and "no checksum" not in problem:
                out.append(f"debian {entry.name}: {problem}")
    return out


def _built(cache: Path) -> list[str]:
    out = []
    for marker in sorted((cache / "kernels" / "built").glob("*/.complete")):
        if integrity.Manifest(marker.parent).exists():  # none: built before sums were kept
            out += [f"built {marker.parent.name}: {p}" for p in integrity.Manifest(marker.parent).problems()]
    return out


def _images(cache: Path) -> list[str]:
    out = []
    for image in sorted((cache / "images").glob("*.img")):
        problem = integrity.file_problem(image, adopt=False)
        if problem and "no checksum" not in problem:
            out.append(f"image {image.name}: {problem}")
    return out


def _binaries(cache: Path) -> list[str]:
    out = []
    for record in sorted((cache / "binaries").glob("*.json")):
        binary = record.with_suffix("")
        try:
            want = json.loads(record.read_text())["sha256"]
        except (OSError, ValueError, KeyError) as exc:
            out.append(f"binary record {record.name}: {exc.__class__.__name__}")
            continue
        if not binary.exists() or sha256_file(binary) != want:
            out.append(f"binary {binary.name}: does not match its record")
    return out


def audit(cache: Path) -> list[str]:
    """Cache entries the harness would take for whole that are not (empty: none)."""
    return _debian(cache) + _built(cache) + _images(cache) + _binaries(cache)


def leftovers(cache: Path) -> list[str]:
    """Temporary folders and files a cut-short fetch or build left (disk used, never taken for whole)."""
    debian = cache / "kernels" / "debian"
    found = [*debian.glob("tmp*"), *debian.glob(".*.fetch-*"), *(cache / "images").glob("tmp*")]
    found += [p for p in (cache / "kernels" / "built").glob(".*") if p.is_dir()]
    return sorted(str(p.relative_to(cache)) for p in found)
