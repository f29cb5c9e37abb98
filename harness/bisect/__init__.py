"""Bisection: find the commit (or prebuilt kernel) where a reproducer starts or stops reproducing.

Three parts, each replaceable:

- ``judge``: runs -> reproduces / clean / skip, with a confidence from the
  measured hit rate (syzkaller-style statistics, early stopping);
- ``driver``: the search (an ordered list, or ``git bisect`` in a worktree),
  the step log (``steps.jsonl``, reused to resume) and the report;
- ``steps``: the real step functions (fetch a Debian image, or build a commit
  through the build cache; then boot and run with ``run_repro``).

The CLI (``bisect``, ``bisect-step``) is in ``harness.bisect.cli``;
``add_parsers(sub)`` wires it into ``harness``.
"""

from harness.bisect.driver import (
    BisectResult,
    Evaluator,
    GitBisection,
    ListBisection,
    StepLog,
    StepRecord,
    StepSkip,
    Terms,
)
from harness.bisect.judge import Judgement, Policy, Rate, RunObs, classify, decide


def add_parsers(sub) -> None:
    """Add ``bisect`` and ``bisect-step`` to ``harness``'s subparsers."""
    from harness.bisect.cli import add_parsers as add

    add(sub)


__all__ = [
    "BisectResult",
    "Evaluator",
    "GitBisection",
    "Judgement",
    "ListBisection",
    "Policy",
    "Rate",
    "RunObs",
    "StepLog",
    "StepRecord",
    "StepSkip",
    "Terms",
    "add_parsers",
    "classify",
    "decide",
]
