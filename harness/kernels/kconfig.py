"""Kconfig fragments: find, merge, apply on ``tinyconfig``, verify.

A fragment is a ``.config`` snippet (``CONFIG_X=y`` / ``# CONFIG_X is not
set``) named after its file in ``kconfigs/`` (``lean``, ``filesystems``...)
or given as a path.  Fragments merge in order, the last value wins, on top of
``make tinyconfig``; ``make olddefconfig`` then resolves dependencies, and
``verify`` reports every requested value the final ``.config`` lacks, with
the unmet ``depends on`` when one explains it.

kconfiglib was evaluated for the "why" and rejected: its last release (14.1)
cannot parse 6.x Kconfig files (``modules`` keyword).  ``why`` below reads
the ``config`` block and its enclosing ``if``s and evaluates them against the
final ``.config``, which names the culprit in the common cases.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.errors import SpecError, UnknownName
from harness.paths import kconfigs_dir

BASE_TARGET = "tinyconfig"
_SET_RE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


def available() -> list[str]:
    """Fragment names in ``kconfigs/``."""
    return sorted(p.stem for p in kconfigs_dir().glob("*.config"))


def fragment_path(name: str) -> Path:
    """``lean`` -> kconfigs/lean.config; a path is taken as is."""
    path = Path(name).expanduser()
    if "/" in name or (path.suffix == ".config" and path.exists()):
        if not path.is_file():
            raise SpecError(f"kconfig fragment {name} does not exist")
        return path.resolve()
    path = kconfigs_dir() / f"{name}.config"
    if not path.is_file():
        raise UnknownName(f"Unknown kconfig fragment {name!r}. Available: {', '.join(available()) or '(none)'}")
    return path


def parse(text: str, origin: str = "", *, strict: bool = True) -> dict[str, str]:
    """``{"CONFIG_X": "y", "CONFIG_Y": "n", ...}``; ``n`` stands for "is not set"."""
    options: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if m := _SET_RE.match(line):
            options[m.group(1)] = m.group(2)
        elif m := _UNSET_RE.match(line):
            options[m.group(1)] = "n"
        elif strict and line and not line.startswith("#"):
            raise SpecError(f"{origin or 'fragment'}:{number}: not a kconfig line: {raw!r}")
    return options


def read_config(path: Path) -> dict[str, str]:
    return parse(path.read_text(), str(path), strict=False)


def merge(fragments: Iterable[Path]) -> dict[str, str]:
    """All fragments' options in order; a later value overrides an earlier one."""
    merged: dict[str, str] = {}
    for path in fragments:
        for key, value in parse(path.read_text(), str(path)).items():
            merged.pop(key, None)
            merged[key] = value
    return merged


def render(options: dict[str, str]) -> str:
    return "".join(f"# {k} is not set\n" if v == "n" else f"{k}={v}\n" for k, v in options.items())


def overlay(base_text: str, options: dict[str, str]) -> str:
    """``base_text`` (a full .config) with ``options`` replacing its values."""
    kept = [
        line
        for line in base_text.splitlines()
        if not ((m := _SET_RE.match(line.strip()) or _UNSET_RE.match(line.strip())) and m.group(1) in options)
    ]
    return "\n".join(kept) + "\n" + render(options)


# --- verification -----------------------------------------------------------


@dataclass(frozen=True)
class Mismatch:
    """A requested option the final .config does not carry."""

    option: str
    wanted: str
    got: str | None  # None: absent from .config (invisible / unknown)
    reason: str = ""

    def __str__(self) -> str:
        got = "unset" if self.got in (None, "n") else self.got
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.option}={self.wanted} requested, got {got}{why}"


def _norm(value: str | None) -> str:
    return "n" if value is None else value.strip('"')


def verify(requested: dict[str, str], actual: dict[str, str], srctree: Path | None = None) -> list[Mismatch]:
    """Requested values missing from ``actual``, explained when ``srctree`` is given."""
    out = []
    for option, wanted in requested.items():
        got = actual.get(option)
        if _norm(got) == _norm(wanted):
            continue
        out.append(Mismatch(option, wanted, got))
    if srctree and out:
        defs = find_definitions(srctree, [m.option for m in out])
        out = [Mismatch(m.option, m.wanted, m.got, why(defs[m.option], actual)) for m in out]
    return out


@dataclass(frozen=True)
class Definition:
    where: str  # "fs/9p/Kconfig:2"
    depends: tuple[str, ...]  # `depends on` expressions and enclosing `if`s


def _kconfig_files(srctree: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(srctree):
        rel = os.path.relpath(root, srctree)
        if rel == "arch":
            dirs[:] = [d for d in dirs if d == "x86"]
        elif rel in ("Documentation", "tools", "scripts", ".git"):
            dirs[:] = []
            continue
        for name in files:
            if name.startswith("Kconfig"):
                yield Path(root, name)


def find_definitions(srctree: Path, options: Sequence[str]) -> dict[str, list[Definition]]:
    """Every ``config``/``menuconfig`` block defining each option (x86 + generic)."""
    names = {o.removeprefix("CONFIG_"): o for o in options}
    head = re.compile(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$")
    found: dict[str, list[Definition]] = {o: [] for o in options}
    for path in _kconfig_files(srctree):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        ifs: list[str] = []
        for i, line in enumerate(lines):
            stripped = line.strip()
            if stripped.startswith("if "):
                ifs.append(stripped[3:].split("#")[0].strip())
            elif stripped == "endif" and ifs:
                ifs.pop()
            elif (m := head.match(line)) and m.group(1) in names:
                where = f"{path.relative_to(srctree)}:{i + 1}"
                found[names[m.group(1)]].append(Definition(where, tuple(ifs) + _block_depends(lines, i + 1)))
    return found


def _block_depends(lines: list[str], start: int) -> tuple[str, ...]:
    deps = []
    for line in lines[start:]:
        if (line and not line[0].isspace()) or line.strip() in ("help", "---help---"):
            break
        m = re.match(r"^\s+depends on\s+(.+?)\s*(?:#.*)?$", line)
        if m:
            deps.append(m.group(1))
    return tuple(deps)


_TOKEN_RE = re.compile(r'\s*(\|\||&&|!=|<=|>=|[!()=<>]|"[^"]*"|[A-Za-z0-9_]+|\$\([^)]*\)|\S)')


def evaluate(expr: str, config: dict[str, str]) -> int | None:
    """Tristate value (0/1/2) of a Kconfig expression; None when it can't tell."""
    tokens = [t for t in _TOKEN_RE.findall(expr) if t]
    pos = 0

    def sym(tok: str) -> str:
        if tok.startswith('"'):
            return tok.strip('"')
        if tok in ("y", "m", "n") or tok.isdigit():
            return tok
        if f"CONFIG_{tok}" not in config and not tok.isupper():
            return tok  # an undefined name is a constant in Kconfig
        return _norm(config.get(f"CONFIG_{tok}"))

    def tri(value: str) -> int:
        return {"y": 2, "m": 1}.get(value, 0)

    def atom() -> int:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "!":
            return 2 - atom()
        if tok == "(":
            value = either()
            pos += 1  # ")"
            return value
        if tok.startswith("$("):
            raise ValueError(tok)
        if pos < len(tokens) and tokens[pos] in ("=", "!="):
            op, other = tokens[pos], tokens[pos + 1]
            pos += 2
            equal = sym(tok) == sym(other)
            return 2 if equal == (op == "=") else 0
        return tri(sym(tok))

    def both() -> int:
        nonlocal pos
        value = atom()
        while pos < len(tokens) and tokens[pos] == "&&":
            pos += 1
            value = min(value, atom())
        return value

    def either() -> int:
        nonlocal pos
        value = both()
        while pos < len(tokens) and tokens[pos] == "||":
            pos += 1
            value = max(value, both())
        return value

    try:
        return either()
    except (ValueError, IndexError):
        return None


def _symbols(expr: str) -> list[str]:
    tokens = _TOKEN_RE.findall(expr)
    return [t for t in tokens if re.fullmatch(r"[A-Z0-9_]*[A-Z][A-Z0-9_]*", t)]


def why(defs: list[Definition], config: dict[str, str]) -> str:
    """Best guess at why an option did not take: the unmet dependency, or where to look."""
    if not defs:
        return "no such option in this tree"
    for d in defs:
        unmet = [e for e in d.depends if evaluate(e, config) == 0]
        if unmet:
            values = sorted({f"{s}={_norm(config.get('CONFIG_' + s))}" for e in unmet for s in _symbols(e)})
            return f"depends on {' && '.join(unmet)} [{', '.join(values)}] at {d.where}"
    return f"dependencies met; a choice, a range or a select decides it (see {defs[0].where})"


# --- make ---------------------------------------------------------------------


def configure(
    srctree: Path,
    outdir: Path,
    fragments: Sequence[Path],
    *,
    make: Sequence[str],
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Path, list[Mismatch]]:
    """``make tinyconfig`` in ``outdir``, overlay ``fragments``, ``olddefconfig``, verify."""
    requested = merge(fragments)
    proc.run([*make, f"O={outdir}", BASE_TARGET], cwd=srctree, env=env, log_path=log_path, what=f"make {BASE_TARGET}")
    config = outdir / ".config"
    config.write_text(overlay(config.read_text(), requested))
    proc.run([*make, f"O={outdir}", "olddefconfig"], cwd=srctree, env=env, log_path=log_path, what="make olddefconfig")
    return config, verify(requested, read_config(config), srctree)
