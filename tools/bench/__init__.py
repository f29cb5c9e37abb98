"""The bench: timings measured side by side in one run, printed as ratios (``python -m tools.bench``).

``figures`` (the rows and the command), ``parser`` (the console parser's
throughput), ``builds`` (cold, incremental and cached kernel builds).
"""
