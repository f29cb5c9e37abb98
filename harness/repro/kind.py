"""A kind of run: what the run driver asks of the thing it runs, whatever it is.

As tuxrun's ``tuxrun/tests`` (ltp, kselftest and xfstests are each one small
``Test`` subclass, and the runner never asks which it runs): the session
(harness.repro.run) chooses and opens a backend, then asks its kind to

- ``prepare`` once, the backend open and the results folder made (build what
  every run needs: the image and the compiled reproducer, fstests' build and
  test list); it returns why no run can start, or None;
- ``stage`` each run: the run folder's inputs and the ``GuestRequest``;
- ``read`` each run, once the guest is gone: what the run adds to its record
  and, for a test suite, its own results for the verdict (``Evidence.tests``);
- ``close`` when the session ends.

``requirements`` say what the backend must give (auto's choice, and a check
of a forced one).  The kinds: the C reproducer (harness.repro.reproducer)
and fstests (harness.fstests.kind), registered in harness.repro.kinds.  A kind
imports the guest contract and the spec, never the run driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from harness.guest.machine import Backend, Disk, GuestRequest
from harness.guest.protocol import GuestOutput, GuestPlan
from harness.kernels import Kernel
from harness.options import Accel, RunOptions
from harness.repro.spec import Spec
from harness.verdict import Verdict

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Requirements:
    """What a kind of run needs of its backend."""

    shares_root: bool = False  # the guest reads the host's files at their paths (auto then picks vng)
    attaches_disks: bool = False  # the run's disks reach the guest as virtio disks with their serials
    because: str = ""  # what needs them, said when a backend cannot: "fstests runs check from the host's build"

    def unmet(self, backend: Backend) -> str | None:
        """Why ``backend`` cannot run this kind (one line saying what to use), or None."""
        needed = [n for n, wanted in (("shares_root", self.shares_root), ("attaches_disks", self.attaches_disks))
                  if wanted]
        if all(getattr(backend, n) for n in needed):
            return None
        return f"{self.because}: {backend.name} guests cannot have {'both' if len(needed) > 1 else 'it'} " \
               "(use --backend vng)"


@dataclass
class Context:
    """What a kind sees of its session: the spec, the kernel, the options, the backend and the folder."""

    spec: Spec
    kernel: Kernel
    options: RunOptions
    accel: Accel
    backend: Backend
    folder: Path
    timeout: int  # the run step's limit in seconds (--timeout, else the spec's)
    progress: Progress

    @property
    def cmdline(self) -> tuple[str, ...]:
        """The kernel's boot options: the spec's, its environment's, then the options' (a variant's)."""
        env = self.spec.environment
        return tuple(dict.fromkeys((*self.spec.guest.cmdline, *(env.cmdline if env else ()), *self.options.cmdline)))

    def request(self, run_dir: Path, plan: GuestPlan, disks: tuple[Disk, ...], *, preload: tuple[str, ...] = (),
                inputs: tuple[Path, ...] = ()) -> GuestRequest:
        """One run's request: the plan and disks the kind made, the guest the spec asks for."""
        spec = self.spec
        return GuestRequest(kernel=self.kernel, plan=plan, run_dir=run_dir, accel=self.accel.name,
                            cpus=spec.guest.cpus, memory=spec.guest.memory, disks=disks, cmdline=self.cmdline,
                            preload=tuple(dict.fromkeys(preload)), inputs=inputs,
                            boots=self.options.boots or spec.guest.boots, vmcore=self.vmcore)

    @property
    def vmcore(self) -> bool:
        return wants_vmcore(self.spec, self.options)


def wants_vmcore(spec: Spec, options: RunOptions) -> bool:
    """Whether the runs dump the guest's memory at a crash: ``--vmcore`` or the spec's ``guest: vmcore``."""
    return options.vmcore or spec.guest.vmcore


@dataclass(frozen=True)
class Staged:
    """One run staged: the request for the backend, and what staging adds to the run's record."""

    request: GuestRequest
    record: dict = field(default_factory=dict)  # the C reproducer: where its prebuilt binary came from


@dataclass(frozen=True)
class Reading:
    """What a kind reads back from one run, before the verdict."""

    record: dict = field(default_factory=dict)  # keys added to the run's result.json ("binary", "fstests")
    tests: object = None  # a test suite's own results (harness.verdict.TestVerdicts), for Evidence.tests


class RunKind:
    """One kind of run (see the module doc); subclasses set ``name``, ``modes`` and implement ``stage``."""

    name: ClassVar[str] = "kind"
    modes: ClassVar[tuple[str, ...]] = ()  # the spec modes (``Spec.mode``) this kind runs
    requirements: ClassVar[Requirements] = Requirements()

    def __init__(self, spec: Spec):
        self.spec = spec

    def prepare(self, ctx: Context) -> Verdict | None:
        """Once, before the first run; why no run can start (a verdict every run would get), or None."""
        return None

    def describe(self) -> str | None:
        """A line for the user once prepared (what will run), or None."""
        return None

    def stage(self, ctx: Context, run_dir: Path, seconds: float | None = None) -> Staged:
        """The run folder's inputs and the request (``seconds``: a trial of that length, None the full run)."""
        raise NotImplementedError

    def read(self, ctx: Context, run_dir: Path, staged: Staged, output: GuestOutput, text: str,
             console: str) -> Reading:
        """What one run left (``text``: guest.log, ``console``: console.log), the guest gone."""
        return Reading(staged.record)

    def explain(self, rc: int | None, output: str) -> str | None:
        """Why the run step exited non-zero by itself, from what runs (a sentence), or None."""
        return None

    def close(self) -> None:
        """The session is over (or cut short): let go of what prepare took."""
