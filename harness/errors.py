"""One exception root for harness faults.

Kernel outcomes (an oops, a hang, a boot failure, lost data) are never
exceptions: they are ``Verdict`` values.  Only faults of the harness or its
inputs raise, and each kind carries the exit code the CLI returns for it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit code the CLI returns, in one table (README "Verdicts and exit codes")."""

    OK = 0  # done; the runs met the expectation (prove: FIXED)
    UNMET = 1  # the runs contradict the expectation (prove: NOT_FIXED or TRADED; bisect: not found)
    USAGE = 2  # bad command line (argparse), out-of-range number
    SPEC = 3  # bad spec, recipe, patch or YAML
    UNKNOWN = 4  # unknown name (reproducer, kernel, recipe, backend, cell)
    MISSING_TOOL = 5  # a host program or package is missing
    KERNEL = 6  # a kernel could not be fetched or built (BUILD_ERROR), a git command failed in its repository
    INFRA = 7  # the guest could not run the harness steps (INFRA_ERROR); matrix: cells not judged
    BOOT = 8  # the kernel did not boot (BOOT_FAILURE)
    BASE_CLEAN = 9  # prove: the base kernel never reproduced, nothing to prove
    HARNESS = 10  # any other harness fault
    INCONCLUSIVE = 11  # prove: the budget or --max-runs ended before the answer was settled
    NO_SPACE = 12  # a disk the harness writes to is full (ENOSPC)
    NO_CHANGE = 13  # prove: the patch changes no code the kernel runs (no runs made)
    GIT_ABORT = 128  # bisect-step: makes `git bisect run` stop instead of taking the error for "bad"
    INTERRUPTED = 130  # Ctrl-C or SIGTERM; what was recorded stays on disk


class HarnessError(Exception):
    """Root of every error the harness raises on purpose."""

    exit_code = ExitCode.HARNESS

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        msg = str(self).strip().replace("\n", " ")
        return f"{msg} ({self.hint})" if self.hint else msg


class SpecError(HarnessError):
    """A reproducer spec, image recipe or kconfig fragment is malformed."""

    exit_code = ExitCode.SPEC


class UnknownName(HarnessError):
    """A name (reproducer, kernel, recipe, backend...) is not in its registry."""

    exit_code = ExitCode.UNKNOWN


class MissingTool(HarnessError):
    """A host program or package the harness needs is absent."""

    exit_code = ExitCode.MISSING_TOOL


class KernelError(HarnessError):
    """A kernel could not be fetched or built."""

    exit_code = ExitCode.KERNEL


class GitError(HarnessError):
    """A git command failed (``harness.git``).

    Exit code KERNEL: every repository the harness drives with git is a kernel
    source (``git:PATH`` builds, ``harness bisect --kernel-source``), so a git
    failure means that kernel could not be had.  A revision the user named
    and git does not know is an ``UnknownName`` where the caller can say so
    (``git:PATH@REV``, ``--good``/``--bad``).
    """

    exit_code = ExitCode.KERNEL


class GuestError(HarnessError):
    """The guest backend could not be started at all (not a kernel outcome)."""

    exit_code = ExitCode.INFRA
