"""YAML loading with one-line errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from harness.errors import SpecError


def load_mapping(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}:{where} broken YAML: {problem}") from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}") from None
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
