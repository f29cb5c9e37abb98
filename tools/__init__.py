"""The harness's own test tools, beside tests/ and outside the product (the wheel ships ``harness`` only).

``chaos/``: the fault suite (``python -m tools.chaos``, ``nox -s chaos``).
``bench/``: timings measured side by side (``python -m tools.bench``, ``nox -s bench``).
Both run from a checkout; nothing under ``harness/`` imports them.
"""
