"""Checksums of cache entries, recorded when an entry is made and checked before it is used.

A cache entry that a kill, a full disk or a bad block left truncated or
altered must be made again, never booted or attached.  Each kind of entry
records what it is made of when it is made, then checks it on every use:

- ``Manifest``: a ``.sha256`` file in a folder (sha256sum's format, plus
  ``size`` lines): a Debian kernel unpack (its boot/ files by sum, its
  modules by size: hashing 400 MB of modules on every use would cost a
  second), a built kernel;
- ``sidecar``: ``FILE.sha256`` beside one file: an image, a PVH vmlinux.

An entry made before sums were recorded has none: it is summed on first use
(it was trusted until now) and checked from then on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

MANIFEST = ".sha256"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _write(path: Path, text: str) -> None:
    """Whole or not at all: a reader never sees half a record."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class Manifest:
    """``root/.sha256``: ``HASH  REL`` lines (summed files) and ``size N  REL`` lines (sized files)."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / MANIFEST

    def exists(self) -> bool:
        return self.path.exists()

    def record(self, summed: Iterable[Path], sized: Iterable[Path] = ()) -> None:
        lines = [f"{sha256_file(p)}  {p.relative_to(self.root)}" for p in sorted(summed)]
        lines += [f"size {p.stat().st_size}  {p.relative_to(self.root)}" for p in sorted(sized)]
        _write(self.path, "\n".join(lines) + "\n")

    def problems(self) -> list[str]:
        """What does not match the record (empty: the entry is whole); a missing record is one problem."""
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            return [f"{self.path.name} missing"]
        out = []
        for line in lines:
            head, sep, rel = line.partition("  ")
            path = self.root / rel
            if not sep or not rel:
                out.append(f"{self.path.name}: bad line {line[:60]!r}")
            elif not path.is_file():
                out.append(f"{rel} missing")
            elif head.startswith("size "):
                if path.stat().st_size != int(head.removeprefix("size ")):
                    out.append(f"{rel}: {path.stat().st_size} bytes, {head.removeprefix('size ')} recorded")
            elif sha256_file(path) != head:
                out.append(f"{rel}: checksum mismatch")
            if len(out) >= 3:
                break
        return out


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def record_file(path: Path) -> str:
    """Record ``path``'s sum beside it; the sum."""
    digest = sha256_file(path)
    _write(sidecar(path), f"{digest}  {path.name}\n")
    return digest


def file_problem(path: Path, *, adopt: bool = True) -> str | None:
    """Why ``path`` is not the file its sidecar records (None: it is).  Without a sidecar, ``adopt``
    records one now (an entry made before sums were kept) instead of calling it a problem."""
    if not path.is_file():
        return f"{path.name} missing"
    try:
        recorded = sidecar(path).read_text().split()[0]
    except (OSError, IndexError):
        if adopt:
            record_file(path)
            return None
        return f"{path.name}: no checksum recorded"
    return None if sha256_file(path) == recorded else f"{path.name}: checksum mismatch"
