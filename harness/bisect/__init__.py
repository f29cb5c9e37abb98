"""Bisection: find the commit (or prebuilt kernel) where a reproducer starts or stops reproducing.

Three parts, each replaceable:

- ``judge``: runs -> reproduces / clean / skip, with a confidence from the
  measured hit rate (syzkaller-style statistics, early stopping);
- ``driver``: the search (an ordered list, or ``git bisect`` in a worktree),
  the step log (``steps.jsonl``, reused to resume) and the report;
- ``steps``: the real step functions (fetch a Debian image, or build a commit
  through the build cache; then boot and run with ``run_repro``).

The commands (``harness bisect``, ``harness bisect-step``, and
``python -m harness.bisect``) are in ``harness.cli.bisect``.
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
    "classify",
    "decide",
]
