"""Kernel console log crash parser with syzkaller-compatible titles.

``parse(text)`` finds every crash report in a console log; ``summary`` turns
them into the JSON-able dict the CLI prints; ``symbolize`` adds source lines
to a report's frames when vmlinux (and System.map / kernel source) exist.
"""

from __future__ import annotations

from dataclasses import asdict

from harness.report.parser import Report, parse, symbolize
from harness.report.symbolize import Symbolized, kernel_mismatch, symbolize_kernel, symbolize_run

__all__ = ["Report", "Symbolized", "kernel_mismatch", "parse", "summary", "symbolize", "symbolize_kernel", "symbolize_run"]


def summary(reports: list[Report]) -> dict:
    """The first report's identity plus every report as a dict (title None: no crash)."""
    first = reports[0] if reports else None
    return {
        "title": first.title if first else None,
        "alt_titles": list(first.alt_titles) if first else [],
        "type": first.type if first else None,
        "frame": first.frame if first else None,
        "corrupted": first.corrupted if first else False,
        "reports": [_as_dict(r) for r in reports],
    }


def _as_dict(report: Report) -> dict:
    data = asdict(report)
    data["alt_titles"] = list(report.alt_titles)
    return data
