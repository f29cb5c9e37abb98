"""fstests (xfstests) inside the harness: built once on the host, configured, its results parsed.

- ``build``: the user's fstests tree (``--fstests PATH`` or ``$HARNESS_FSTESTS``; a checkout,
  a directory or a tarball) built once into the cache, keyed by its revision and the toolchain.
- ``config``: pure functions: local.config, the ``./check`` argv, the test list a selection
  expands to, the disks fstests wants.
- ``results``: fstests' own results (result.xml, the results folder, check's output) to one
  result per test, tests a crash never let run included.

None of them imports the guest layer: the run glue puts them together.
"""
