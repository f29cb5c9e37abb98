"""The chaos suite: the harness under real faults (issue 18), ``./dev chaos`` / ``nox -s chaos``.

It lives beside tests/ in the checkout, not in the harness package (the
installed wheel holds the product only), and runs on a user's machine, where
the faults happen (``python -m tools.chaos`` from the checkout, against the
harness installed in its virtualenv): a kill in every phase (download, build, image, boot, run,
verdict, between matrix cells, bisect steps and proof runs), a full disk
under the results and the cache, two harnesses on one cache, damaged cache
entries, hung guests, bad input and a virtualenv nobody activated.  Every
fault is injected for real (signals, a tmpfs, a proxy that corrupts what
the mirror sends, truncated files, SIGSTOP) against the harness as a user
starts it (the virtualenv's ``bin/harness``, a private cache and results
folder); nothing is mocked.  It prints a table (fault, phase, expected,
seen, held) and ``N faults, N held``; it exits 1 when any did not hold.

Modules: ``sandbox`` (private caches, starting the harness, its processes by
tag), ``suite`` (rows, the registry, the table), ``checks`` (is a cache
whole), ``proxy`` (the mirror gone bad), ``fixtures`` (reproducers, patches,
hostile YAML), one module per family of faults (``kills``, ``resumes``,
``storage``, ``inputs``), ``__main__`` (the command).
"""
