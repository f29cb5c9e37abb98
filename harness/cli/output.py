"""Where the commands talk: results on stdout, progress and one-line summaries on stderr."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)  # one line stays one line in logs


def progress(msg: str) -> None:
    console.print(f"[dim]… {msg}[/dim]")
