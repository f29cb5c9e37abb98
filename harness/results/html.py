"""A static HTML page for a matrix run: one file, inline CSS and SVG, no script, no network.

Kernels are rows, reproducers columns; each cell is coloured by its verdict and
shows hits/runs, ✓/✗ for the spec's expectation and relative links to every
run's console.log and report.txt.  Below, time to first hit per cell (SVG).
"""

from __future__ import annotations

import math
import time
from html import escape
from pathlib import Path
from urllib.parse import quote

from harness.fstests.results import counts_text
from harness.results import write_text
from harness.results.db import CellResult, MatrixIndex, RunInfo

COLOURS = {
    "REPRODUCED": "#f28b82",
    "OTHER_CRASH": "#c58af9",
    "DATA_LOSS": "#ff8a65",
    "FS_CORRUPT": "#bcaaa4",
    "TEST_FAILED": "#ffab91",  # an fstests test failed
    "HANG": "#fdd663",
    "CLEAN": "#81c995",
    "BOOT_FAILURE": "#9aa0a6",
    "INFRA_ERROR": "#8ab4f8",
    "BUILD_ERROR": "#78909c",
    "FIXED": "#81c995",  # a proof cell's verdicts (harness prove)
    "NOT_FIXED": "#f28b82",
    "TRADED": "#c58af9",
    "BASE_CLEAN": "#9aa0a6",
    "INCONCLUSIVE": "#fdd663",
}

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #202124; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #5f6368; margin: 0 0 16px; }
table.matrix { border-collapse: collapse; }
table.matrix th, table.matrix td { border: 1px solid #dadce0; padding: 6px 10px; vertical-align: top; }
table.matrix thead th { background: #f1f3f4; }
table.matrix tbody th { text-align: left; white-space: nowrap; background: #f8f9fa; font-family: monospace; }
td.cell { min-width: 150px; max-width: 190px; }
table.matrix thead th { max-width: 170px; overflow-wrap: anywhere; }
td.pending { background: repeating-linear-gradient(45deg, #fff, #fff 6px, #f1f3f4 6px, #f1f3f4 12px); }
td.absent { color: #9aa0a6; text-align: center; }
.verdict { font-weight: 600; } .title { font-size: 12px; overflow-wrap: anywhere; }
.met { font-weight: 700; margin-left: 6px; } .met.yes { color: #137333; } .met.no { color: #a50e0e; }
.small { font-size: 12px; color: #3c4043; } .links a { color: #1a0dab; }
.legend span { display: inline-block; padding: 2px 8px; margin: 2px 4px 2px 0; border-radius: 3px; font-size: 12px; }
"""


def _href(base_rel: str, *parts: str) -> str:
    return "/".join(quote(p) for p in (*Path(base_rel).parts, *parts))


def _links(cell: CellResult, base: Path) -> str:
    if not cell.folder:
        return ""
    bits = []
    for r in cell.results:
        run = cell.run_dir(r)
        links = [
            f'<a href="{escape(_href(run, name))}">{label}</a>'
            for name, label in (("console.log", "console"), ("report.txt", "report"), ("build-error.txt", "build error"))
            if (base / run / name).exists()
        ]
        bits.append(f"{r.side + ' ' if r.side else ''}run {r.index}: {' · '.join(links)}{_fstests(r, run)}")
    bits.append(f'<a href="{escape(_href(cell.folder, "result.json"))}">result.json</a>')
    return '<div class="small links">' + "<br>".join(bits) + "</div>"


def _fstests(r: RunInfo, run: str) -> str:
    """An fstests run: its pass/fail/notrun counts, and each failed test's .out.bad diff."""
    if not r.fstests:
        return ""
    counts = r.fstests.get("counts", {})
    said = counts_text(counts)
    failed = [f'<a href="{escape(_href(run, t["out_bad"]))}">{escape(t["name"])}.out.bad</a>' if t.get("out_bad")
              else escape(str(t.get("name"))) for t in r.fstests.get("failed", ())]
    return f"<br>fstests: {escape(said) or 'no tests'}" + (f" · failed: {' '.join(failed)}" if failed else "")


def _met(cell: CellResult) -> str:
    if cell.is_error:  # not judged
        return ""
    if cell.met is True:
        return '<span class="met yes" title="expectation met">✓</span>'
    if cell.met is False:
        return '<span class="met no" title="expectation not met">✗</span>'
    return ""


def cell_html(cell: CellResult | None, base: Path) -> str:
    if cell is None:
        return '<td class="absent">—</td>'
    expect = f"expect {cell.expectation}" if cell.expectation else "no expectation"
    if cell.verdict is None:
        return f'<td class="cell pending"><div class="verdict">{escape(cell.status)}</div><div class="small">{expect}</div></td>'
    colour = COLOURS.get(cell.verdict, "#fff")
    title = f'<div class="title">{escape(cell.title)}</div>' if cell.title else ""
    error = f'<div class="title">{escape(cell.error[:300])}</div>' if cell.error else ""
    state = "" if cell.status == "done" else f" · {escape(cell.status)}"
    return (
        f'<td class="cell" style="background:{colour}" data-cell="{escape(cell.cell)}">'
        f'<div class="verdict">{escape(cell.verdict)}{_met(cell)}</div>{title}{error}'
        f'<div class="small">{_counts(cell)} · {expect}{state}</div>{_links(cell, base)}</td>'
    )


def _counts(cell: CellResult) -> str:
    """hits/runs; for a proof both kernels' and the statement."""
    if not cell.proof:
        return f"{cell.hits}/{cell.runs} hits"
    b, p = cell.proof.get("base", {}), cell.proof.get("patched", {})
    said = cell.proof.get("statement") or ""
    return (f"base {b.get('hits')}/{b.get('runs')} · patched {p.get('hits')}/{p.get('runs')} hits"
            + (f'<div class="title">{escape(said)}</div>' if said else ""))


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** math.floor(math.log10(value))
    return next(f * step for f in (1, 2, 2.5, 5, 10) if f * step >= value)


def tth_svg(index: MatrixIndex) -> str:
    """Horizontal bars: median time to first hit per cell, one dot per run."""
    cells = [c for c in index.cells if c.results]
    label_w, plot_w, row_h, top = 300, 440, 24, 30
    height = top + row_h * max(len(cells), 1) + 30
    x_max = _nice_max(max((t for c in cells for t in c.time_to_hit), default=0))

    def x(t: float) -> float:
        return label_w + plot_w * t / x_max

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 90}" height="{height}" '
        f'role="img" aria-label="time to first hit per cell" font-family="sans-serif" font-size="12">',
        f'<text x="{label_w}" y="16" fill="#5f6368">seconds from the reproducer\'s start to the crash (bar: median, dots: runs)</text>',
    ]
    if not cells:
        out.append(f'<text x="{label_w}" y="{top + 16}" fill="#5f6368">no cell has run yet</text>')
    for i, c in enumerate(cells):
        y = top + i * row_h
        label = c.kernel if len(index.repros) == 1 else f"{c.kernel} · {c.repro}"
        out.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
        tth = sorted(c.time_to_hit)
        if not tth:
            out.append(f'<text x="{label_w + 4}" y="{y + 16}" fill="#80868b">no hit in {c.runs} run(s)</text>')
            continue
        median = tth[len(tth) // 2] if len(tth) % 2 else (tth[len(tth) // 2 - 1] + tth[len(tth) // 2]) / 2
        colour = COLOURS.get(c.verdict or "", "#9aa0a6")
        out.append(f'<rect x="{label_w}" y="{y + 5}" width="{x(median) - label_w:.1f}" height="14" fill="{colour}"/>')
        out += [f'<circle cx="{x(t):.1f}" cy="{y + 12}" r="3.5" fill="#202124"/>' for t in tth]
        out.append(f'<text x="{x(max(tth)) + 8:.1f}" y="{y + 16}">{median:.2f} s ({len(tth)}/{c.runs})</text>')
    axis_y = top + row_h * max(len(cells), 1) + 4
    out.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" stroke="#5f6368"/>')
    for k in range(6):
        t = x_max * k / 5
        out.append(f'<line x1="{x(t):.1f}" y1="{axis_y}" x2="{x(t):.1f}" y2="{axis_y + 4}" stroke="#5f6368"/>')
        out.append(f'<text x="{x(t):.1f}" y="{axis_y + 17}" text-anchor="middle" fill="#5f6368">{t:g}</text>')
    out.append("</svg>")
    return "\n".join(out)


def render(index: MatrixIndex) -> str:
    title = f"Kernel × reproducer matrix {index.id}"
    n = index.counts()
    cells = {(c.kernel, c.repro): c for c in index.cells}
    head = "".join(f"<th>{escape(r)}</th>" for r in index.repros)
    rows = "\n".join(
        f"<tr><th>{escape(k)}</th>" + "".join(cell_html(cells.get((k, r)), index.folder) for r in index.repros) + "</tr>"
        for k in index.kernels
    )
    legend = "".join(f'<span style="background:{c}">{v}</span>' for v, c in COLOURS.items())
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">{escape(index.status)} · spec {escape(index.spec or "-")} · {n["cells"]} cells, {n["done"]} done:
{n["met"]} met ✓, {n["unmet"]} not met ✗, {n["errors"]} errors ·
<a href="matrix.json">matrix.json</a> · <a href="junit.xml">junit.xml</a></p>
<table class="matrix">
<thead><tr><th>kernel</th>{head}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p class="legend">{legend}</p>
<h2>Time to first hit</h2>
{tth_svg(index)}
<p class="meta">generated {time.strftime("%Y-%m-%d %H:%M:%S")}</p>
</body>
</html>
"""


def write(index: MatrixIndex, path: Path | None = None) -> Path:
    return write_text(path or index.folder / "index.html", render(index))
