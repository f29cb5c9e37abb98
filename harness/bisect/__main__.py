"""``python -m harness.bisect bisect|bisect-step ...``: the bisect commands alone, through the CLI's one dispatch."""

import sys

from harness.cli import bisect, main

sys.exit(main(prog="python -m harness.bisect", commands=(bisect,)))
