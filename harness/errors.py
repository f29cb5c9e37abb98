"""One exception root for harness faults.

Kernel outcomes (an oops, a hang, a boot failure, lost data) are never
exceptions: they are ``Verdict`` values.  Only faults of the harness or its
inputs raise, and each kind carries the exit code the CLI returns for it.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Root of every error the harness raises on purpose."""

    exit_code = 10

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        msg = str(self).strip().replace("\n", " ")
        return f"{msg} ({self.hint})" if self.hint else msg


class SpecError(HarnessError):
    """A reproducer spec, image recipe or kconfig fragment is malformed."""

    exit_code = 3


class UnknownName(HarnessError):
    """A name (reproducer, kernel, recipe, backend...) is not in its registry."""

    exit_code = 4


class MissingTool(HarnessError):
    """A host program or package the harness needs is absent."""

    exit_code = 5


class KernelError(HarnessError):
    """A kernel could not be fetched or built."""

    exit_code = 6


class GuestError(HarnessError):
    """The guest backend could not be started at all (not a kernel outcome)."""

    exit_code = 7
