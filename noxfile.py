"""Developer entry points: nox -s repro|tests|lint|bench|chaos (README has the two commands)."""

from __future__ import annotations

import nox

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["lint", "tests"]


def _install(session: nox.Session, *setup_flags: str) -> None:
    session.install("-e", ".[test]")
    session.run("harness", "setup", "--build", *setup_flags)  # apt-installs missing host packages (as root)


@nox.session
def repro(session: nox.Session) -> None:
    """Run a reproducer: nox -s repro -- NAME [harness repro options]."""
    _install(session)
    args = session.posargs or ["ext4_inline"]
    session.run("harness", "repro", *args)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests and VM integration tests: nox -s tests [-- -m 'not vm']."""
    _install(session, "--test")
    session.run("pytest", *session.posargs)


@nox.session
def matrix(session: nox.Session) -> None:
    """Kernels x reproducers: nox -s matrix -- [SPEC] [--only KERNEL:REPRO] [--jobs N] [--resume FOLDER]."""
    _install(session)
    session.run("harness", "matrix", "run", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """The harness under real faults, as root (README "What survives what"):
    nox -s chaos [-- --list | --only GLOB | --group kill|space|concurrency|corrupt|hang|input|venv | --keep]."""
    _install(session, "--test")
    if not {"--list", "-h", "--help"} & set(session.posargs):  # what the suite copies into its own caches
        session.run("harness", "accel", "debian:6.1", "--accel", "tcg")  # the newest Debian 6.1 kernel
        session.run("harness", "kernel", "build", "debian-src:6.1.192")  # the unpacked source, its ccache
    session.run("python", "-m", "tools.chaos", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "harness", "tools", "tests", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Side-by-side timings (ratios measured in one run): nox -s bench [-- --quick]."""
    _install(session)
    session.run("python", "-m", "tools.bench", *session.posargs)
