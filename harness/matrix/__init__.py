"""Kernels × reproducers: ``matrix.yaml`` -> cells -> one ``run_repro`` folder per cell.

- ``spec``: ``matrix.yaml`` -> ``Matrix`` of ``Cell``s (kernel globs and
  reproducer variants expanded, every name checked);
- ``pool``: how many guests at a time (host CPUs and memory), the forked
  worker pool and SIGTERM-as-Ctrl-C;
- ``run``: one cell (``run_cell``) and the matrix run (``run_matrix``,
  resumable), its exit code;
- ``ci``: the matrix as a CI engine's parallel jobs (GitHub Actions, GitLab)
  and ``merge`` of the folders those jobs produce.

Publishing a run (matrix.json, junit.xml, index.html, the history DB) is
``harness.results.publish``; the command line is ``harness.cli.matrix``.
"""
