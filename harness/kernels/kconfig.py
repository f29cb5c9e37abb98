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

import functools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness import proc
from harness.errors import SpecError, UnknownName
from harness.paths import data_dirs, data_file, data_files

BASE_TARGET = "tinyconfig"
_SET_RE = re.compile(r'^(CONFIG_[A-Za-z0-9_]+)=("(?:[^"\\]|\\.)*"|[^"\s#]*)\s*(?:#\s*(.*))?$')
_UNSET_RE = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set(?:\s*#\s*(.*))?$")
OPTIONAL = "optional"  # `CONFIG_X=y  # optional`: not there in every kernel; no warning


def available() -> list[str]:
    """Fragment names in ``kconfigs/`` (its search path: harness.paths)."""
    return [p.stem for p in data_files("kconfigs", "*.config")]


def fragment_path(name: str) -> Path:
    """``lean`` -> kconfigs/lean.config; a path is taken as is."""
    path = Path(name).expanduser()
    if "/" in name or (path.suffix == ".config" and path.exists()):
        if not path.is_file():
            raise SpecError(f"kconfig fragment {name} does not exist")
        return path.resolve()
    path = data_file("kconfigs", f"{name}.config")
    if path is None or not path.is_file():
        where = ", ".join(map(str, data_dirs("kconfigs"))) or "no kconfigs folder"
        raise UnknownName(f"Unknown kconfig fragment {name!r} (in {where}). Available: {', '.join(available()) or '(none)'}")
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


def optional(fragments: Iterable[Path]) -> frozenset[str]:
    """Options marked ``# optional`` in any of the fragments."""
    names = set()
    for path in fragments:
        for raw in path.read_text().splitlines():
            m = _SET_RE.match(raw.strip()) or _UNSET_RE.match(raw.strip())
            if m and (m.groups()[-1] or "").startswith(OPTIONAL):
                names.add(m.group(1))
    return frozenset(names)


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
    optional: bool = False  # marked `# optional` in its fragment

    def __str__(self) -> str:
        got = "unset" if self.got in (None, "n") else self.got
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.option}={self.wanted} requested, got {got}{why}{' [optional]' if self.optional else ''}"


def _norm(value: str | None) -> str:
    return "n" if value is None else value.strip('"')


def verify(
    requested: dict[str, str],
    actual: dict[str, str],
    srctree: Path | None = None,
    optional: frozenset[str] = frozenset(),
) -> list[Mismatch]:
    """Requested values missing from ``actual``, explained when ``srctree`` is given."""
    out = []
    for option, wanted in requested.items():
        got = actual.get(option)
        if _norm(got) != _norm(wanted):
            out.append(Mismatch(option, wanted, got, optional=option in optional))
    if srctree and out:
        found = find_definitions(srctree, [m.option for m in out])
        out = [replace(m, reason=why(m.option, m.wanted, found, actual)) for m in out]
    return out


@dataclass(frozen=True)
class Definition:
    """One ``config`` block: where, what it depends on, when its prompt shows."""

    symbol: str
    where: str  # "fs/9p/Kconfig:2"
    depends: tuple[str, ...]  # its `depends on` + enclosing if / menu / choice conditions
    prompt_if: str = ""  # `bool "..." if EXPR`
    selects: tuple[tuple[str, str], ...] = ()  # (symbol, condition) it selects


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


_PROMPT_IF_RE = re.compile(r'^(?:bool|tristate|string|int|hex|prompt)\s+"[^"]*"\s+if\s+(.+)$')
_SELECT_RE = re.compile(r"^(?:select|imply)\s+([A-Za-z0-9_]+)(?:\s+if\s+(.+))?$")


class _Scanner:
    """A forgiving reader of one Kconfig file: config blocks with their conditions."""

    def __init__(self, where: str):
        self.where = where
        self.stack: list[list[str]] = []  # conditions of enclosing if / menu / choice
        self.block: dict | None = None
        self.container: list[str] | None = None  # menu/choice whose `depends on` we read
        self.help_indent: int | None = None  # inside help text when not None
        self.blocks: list[Definition] = []

    def close(self) -> None:
        if self.block:
            self.blocks.append(Definition(**self.block))
        self.block = self.container = None

    def feed(self, number: int, raw: str) -> None:
        line = raw.split("#", 1)[0] if not raw.lstrip().startswith("help") else raw
        text = line.strip()
        indent = len(raw.expandtabs(8)) - len(raw.expandtabs(8).lstrip())
        if self.help_indent is not None:
            if not raw.strip() or indent >= max(self.help_indent, 1):
                if self.help_indent == 0:
                    self.help_indent = indent
                return
            self.help_indent = None
        if not text:
            return
        word, _, rest = text.partition(" ")
        rest = rest.strip()
        if word in ("config", "menuconfig"):
            self.close()
            conds = tuple(c for level in self.stack for c in level)
            self.block = {"symbol": rest, "where": f"{self.where}:{number}", "depends": conds, "selects": ()}
        elif word in ("menu", "choice", "if"):
            self.close()
            self.stack.append([rest] if word == "if" else [])
            self.container = self.stack[-1] if word != "if" else None
        elif word in ("endmenu", "endchoice", "endif"):
            self.close()
            if self.stack:
                self.stack.pop()
        elif word in ("comment", "source", "mainmenu"):
            self.close()
        elif text in ("help", "---help---"):
            self.help_indent = 0
        elif text.startswith("depends on "):
            cond = text.removeprefix("depends on ").strip()
            if self.block is not None:
                self.block["depends"] += (cond,)
            elif self.container is not None:
                self.container.append(cond)
        elif self.block is not None and (m := _SELECT_RE.match(text)):
            self.block["selects"] += ((m.group(1), (m.group(2) or "").strip()),)
        elif self.block is not None and (m := _PROMPT_IF_RE.match(text)):
            self.block["prompt_if"] = m.group(1).strip()


def scan(srctree: Path) -> list[Definition]:
    """Every config block of the tree (generic + x86)."""
    out: list[Definition] = []
    for path in _kconfig_files(srctree):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        scanner = _Scanner(str(path.relative_to(srctree)))
        for number, raw in enumerate(lines, 1):
            scanner.feed(number, raw)
        scanner.close()
        out.extend(scanner.blocks)
    return out


def find_definitions(srctree: Path, options: Sequence[str]) -> dict[str, list[Definition]]:
    """The blocks defining each option, plus (under ``"select:" + option``) the blocks selecting it."""
    names = {o.removeprefix("CONFIG_"): o for o in options}
    found: dict[str, list[Definition]] = {o: [] for o in options} | {f"select:{o}": [] for o in options}
    for block in scan(srctree):
        if block.symbol in names:
            found[names[block.symbol]].append(block)
        for target, _ in block.selects:
            if target in names:
                found[f"select:{names[target]}"].append(block)
    return found


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


def _conjuncts(expr: str) -> list[str]:
    """``A && (B || C) && !D`` -> [A, (B || C), !D]."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(expr):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0 and expr.startswith("&&", i):
            parts.append(expr[start:i].strip())
            start = i + 2
    parts.append(expr[start:].strip())
    return [p for p in parts if p]


def _values(exprs: Iterable[str], config: dict[str, str]) -> str:
    return ", ".join(sorted({f"{s}={_norm(config.get('CONFIG_' + s))}" for e in exprs for s in _symbols(e)}))


def why(option: str, wanted: str, found: dict[str, list[Definition]], config: dict[str, str]) -> str:
    """Best guess at why ``option`` did not get ``wanted``: unmet dependency, a select, a hidden prompt."""
    defs = found.get(option, [])
    if not defs:
        return "no such option in this tree"
    for d in defs:
        unmet = [c for e in d.depends for c in _conjuncts(e) if evaluate(c, config) == 0]
        if unmet:
            return f"depends on {' && '.join(unmet)} [{_values(unmet, config)}] at {d.where}"
    name = option.removeprefix("CONFIG_")
    if _norm(wanted) == "n":
        selectors = [
            b.symbol
            for b in found.get(f"select:{option}", [])
            if evaluate(b.symbol, config) and any(t == name and (not c or evaluate(c, config)) for t, c in b.selects)
        ]
        if selectors:
            return "selected by " + ", ".join(f"{s} [=y]" for s in sorted(set(selectors)))
    hidden = [d for d in defs if d.prompt_if and evaluate(d.prompt_if, config) == 0]
    if hidden:
        d = hidden[0]
        return f"no prompt unless {d.prompt_if} [{_values([d.prompt_if], config)}], so its default applies ({d.where})"
    return f"dependencies met; a default, a choice or a range decides it (see {defs[0].where})"


# --- make ---------------------------------------------------------------------


def configure(
    srctree: Path,
    outdir: Path,
    requested: dict[str, str],
    *,
    make: Sequence[str],
    optional_options: frozenset[str] = frozenset(),
    log_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> tuple[Path, list[Mismatch]]:
    """``make tinyconfig`` in ``outdir``, overlay ``requested``, ``olddefconfig``, verify."""
    run = functools.partial(proc.run, cwd=srctree, env=env, log_path=log_path)
    run([*make, f"O={outdir}", BASE_TARGET], what=f"make {BASE_TARGET}")
    config = outdir / ".config"
    config.write_text(overlay(config.read_text(), requested))
    run([*make, f"O={outdir}", "olddefconfig"], what="make olddefconfig")
    return config, verify(requested, read_config(config), srctree, optional_options)
