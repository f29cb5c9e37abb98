"""Read syzkaller-style report test cases (headers, blank line, log, ``REPORT:``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    """One test log and what a parser should make of it."""

    path: Path
    log: str
    title: str | None = None
    alt_titles: tuple[str, ...] = ()
    type: str | None = None
    frame: str | None = None
    corrupted: bool = False
    report: str | None = None


_FIELDS = {"TITLE": "title", "TYPE": "type", "FRAME": "frame"}


def load_case(path: Path) -> Case:
    """Parse one case file; ``\\r`` is dropped as syzkaller's tests do."""
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "")
    header, _, rest = text.partition("\n\n") if not text.startswith("\n") else ("", "", text[1:])
    fields: dict = {"alt_titles": []}
    for line in header.splitlines():
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key in _FIELDS:
            fields[_FIELDS[key]] = value.strip() or None
        elif key == "ALT":
            fields["alt_titles"].append(value)
        elif key == "CORRUPTED":
            fields["corrupted"] = value == "Y"
    log, report = rest, None
    if (cut := rest.find("\n\nREPORT:\n")) >= 0:
        log, report = rest[:cut + 2], rest[cut + len("\n\nREPORT:\n"):]
    fields["alt_titles"] = tuple(fields["alt_titles"])
    return Case(path=path, log=log, report=report, **fields)


def case_files(directory: Path) -> list[Path]:
    """The case files of a directory (numbered or ``*.log``), in a stable order."""
    files = [p for p in directory.iterdir() if p.is_file() and (p.name.isdigit() or p.suffix == ".log")]
    return sorted(files, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
