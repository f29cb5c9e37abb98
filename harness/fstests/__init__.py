"""fstests (xfstests) inside the harness: built once on the host, configured, its results parsed.

- ``build``: the user's fstests tree (``--fstests PATH`` or ``$HARNESS_FSTESTS``; a checkout,
  a directory or a tarball) built once into the cache, keyed by its revision and the toolchain.
- ``config``: pure functions: local.config, the ``./check`` argv, the test list a selection
  expands to, the disks fstests wants.
- ``results``: fstests' own results (result.xml, the results folder, check's output) to one
  result per test, tests a crash never let run included, and the run's verdict from them.
- ``disks`` and ``guest``: what one run stages (TEST_DEV, SCRATCH_DEV, local.config, the check
  command) and reads back.
- ``kind``: fstests as a kind of run (harness.repro.kind.RunKind): the one module the run
  driver reaches, through harness.repro.kinds; it puts the others together with the guest contract.
"""
