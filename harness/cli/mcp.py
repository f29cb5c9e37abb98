"""``harness mcp``: serve the harness to AI agents over the Model Context Protocol (stdio only).

The server reads and writes only under the three folders it is started
with; every path a request names must lie inside them (``harness.mcpserver``).
A client starts it as a subprocess and talks on its stdin/stdout, e.g.
``{"command": "harness", "args": ["mcp", "--results", "/srv/results"]}``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from harness.errors import ExitCode
from harness.paths import DATA_ENV, builtin_dir, cache_dir, results_dir


def default_reproducers(cwd: Path | None = None) -> Path:
    """The server's reproducers folder when ``--reproducers`` is not given: the first of
    ``$HARNESS_REPRODUCERS``, else ``./reproducers`` where it exists, else the built-in one (read only: the
    server writes no reproducer).  Never a new ``./reproducers`` made wherever the client started it."""
    named = [p for p in os.environ.get(DATA_ENV["reproducers"], "").split(os.pathsep) if p]
    if named:
        return Path(named[0]).expanduser()
    here = (cwd or Path.cwd()) / "reproducers"
    return here if here.is_dir() else builtin_dir("reproducers")


def cmd_mcp(args: argparse.Namespace) -> int:
    from harness import mcpserver  # start-up cost: the MCP SDK (pydantic, starlette) loads only for `harness mcp`

    folders = mcpserver.Folders.make(Path(args.reproducers or default_reproducers()).expanduser(),
                                     Path(args.results or results_dir()).expanduser(),
                                     Path(args.cache or cache_dir()).expanduser())
    mcpserver.serve(folders)
    return ExitCode.OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("mcp", help="serve the harness's tools to AI agents over MCP (stdio)", description=__doc__)
    m.add_argument("--reproducers", metavar="DIR", help="the reproducers folder (default: $HARNESS_REPRODUCERS, "
                   "else ./reproducers where it exists, else the built-in one); the built-in reproducers and their "
                   "patches are readable in any case")
    m.add_argument("--results", metavar="DIR", help="where runs are recorded (default: $HARNESS_RESULTS or ./results)")
    m.add_argument("--cache", metavar="DIR", help="the kernel and image cache (default: $HARNESS_CACHE or the user "
                   "cache folder)")
    m.set_defaults(func=cmd_mcp)
