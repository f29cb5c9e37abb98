"""YAML loading with one-line errors that name the file and the field, and limits hostile input cannot pass.

Specs, recipes, matrices and target files are small hand-written documents
(the biggest shipped one is a few KiB).  ``load_mapping`` refuses, in one
line and before anything is built from it: a file that is not a regular
file (a FIFO would block the read, /dev/zero never end), one over
``MAX_BYTES``, text that is not UTF-8, and a document whose aliases expand
to more than ``MAX_NODES`` nodes (a "billion laughs" bomb: a few hundred
bytes whose aliases stand for 10**9 strings; ``yaml.safe_load`` shares the
aliased objects, but anything that walks them, a check, ``json.dumps``,
walks all of them) or refer to themselves.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from harness.errors import SpecError

MAX_BYTES = 1 << 20  # 1 MiB
MAX_NODES = 100_000  # YAML nodes after alias expansion


def _expanded_size(root: yaml.Node, limit: int) -> int | None:
    """Nodes ``root`` stands for with every alias expanded (stops counting past ``limit``); None: a cycle."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int | None:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            return None
        active.add(key)
        total = 1
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        for child in children:
            n = size(child)
            if n is None:
                return None
            total = min(total + n, limit + 1)
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _read(path: Path) -> str:
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{path}: not a regular file")
        if info.st_size > MAX_BYTES:
            raise SpecError(f"{path}: {info.st_size} bytes, over the {MAX_BYTES >> 10} KiB limit for a YAML file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise SpecError(f"{path}: over the {MAX_BYTES >> 10} KiB limit for a YAML file")
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _load(text: str, path: Path) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, MAX_NODES)
        if size is None:
            raise SpecError(f"{path}: an alias refers to itself (a recursive YAML structure)")
        if size > MAX_NODES:
            raise SpecError(f"{path}: its aliases expand to over {MAX_NODES} nodes (a YAML bomb?): refused")
        return loader.construct_document(node)
    except RecursionError:
        raise SpecError(f"{path}: nested too deep") from None
    finally:
        loader.dispose()


def load_mapping(path: Path) -> dict[str, Any]:
    text = _read(path)
    try:
        data = _load(text, path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}:{where} broken YAML: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


class Fields:
    """Typed access to a YAML mapping; every error names file and key."""

    def __init__(self, data: dict[str, Any], where: str, allowed: set[str]):
        self.data = data
        self.where = where
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise SpecError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")

    def _err(self, key: str, msg: str) -> SpecError:
        return SpecError(f"{self.where}: {key}: {msg}")

    def get(self, key: str, typ: type | tuple[type, ...], default: Any = ..., *, required: bool = False) -> Any:
        if key not in self.data or self.data[key] is None:
            if required or default is ...:
                raise self._err(key, "is required")
            return default
        value = self.data[key]
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or (isinstance(value, bool) and typ in (int, float)):
            names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise self._err(key, f"expected {names}, got {type(value).__name__} {value!r}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, (list, str), list(default))
        if isinstance(value, str):
            value = [value]
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            raise self._err(key, "expected a list of strings")
        return tuple(str(v) for v in value)
