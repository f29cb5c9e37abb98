"""fstests as a kind of run: the run step is fstests' ``./check`` on TEST_DEV and SCRATCH_DEV.

``prepare`` builds fstests once (cached) and expands the selection to the
exact test list (harness.fstests.guest.prepare); ``stage`` writes the two
disks, local.config and the check command into the run folder; ``read``
gives fstests' own result for every listed test, to the run's record (under
``fstests`` in result.json) and to the verdict (``Results.verdict``).  The
guest runs check from its read-only view of the host's root with the disks
attached by serial, so the backend must share the root and attach disks
(vng).  A spec with ``fstests:`` (mode "fstests") is this kind.
"""

from __future__ import annotations

from pathlib import Path

from harness.fstests import guest as fguest
from harness.guest.machine import Disk
from harness.guest.protocol import GuestOutput, GuestPlan
from harness.repro import faults
from harness.repro.kind import Context, Reading, Requirements, RunKind, Staged
from harness.verdict import Verdict


class Fstests(RunKind):
    """An fstests selection run by check (see the module doc)."""

    name = "fstests"
    modes = ("fstests",)
    requirements = Requirements(shares_root=True, attaches_disks=True,
                                because="fstests runs check from the host's build on two virtio disks")

    def __init__(self, spec):
        super().__init__(spec)
        self.prepared: fguest.Prepared | None = None

    def prepare(self, ctx: Context) -> Verdict | None:
        """fstests built (once per revision and toolchain) and the exact test list; its own programs are built
        on the host, so nothing compiles in a guest."""
        self.prepared = fguest.prepare(self.spec.fstests, source=ctx.options.suite, progress=ctx.progress)
        return None

    def describe(self) -> str | None:
        return self.prepared.describe() if self.prepared is not None else None

    def stage(self, ctx: Context, run_dir: Path, seconds: float | None = None) -> Staged:
        """Its two disks, local.config and check command in the run folder (a trial's ``seconds`` do not
        shorten check: it runs its tests to their end)."""
        spec, prep = self.spec, self.prepared
        run_argv, (test, scratch) = fguest.stage(prep, run_dir, progress=ctx.progress)
        plan = GuestPlan(
            title=f"{spec.name}: fstests {prep.selection.describe()}", fs_type=prep.profile.fs, mount_options="",
            source="", cflags=(), args=(), run_timeout=ctx.timeout, check_argv=None, sysctls=spec.guest.sysctls,
            pre_run=faults.setup_lines(spec.faults), post_run=faults.teardown_lines(spec.faults), image=False,
            run_argv=run_argv,
        )
        return Staged(ctx.request(run_dir, plan, (Disk(test.path, test.serial), Disk(scratch.path, scratch.serial)),
                                  preload=(f"fs-{prep.profile.fs}",)))

    def read(self, ctx: Context, run_dir: Path, staged: Staged, output: GuestOutput, text: str,
             console: str) -> Reading:
        """Every listed test's result (a crash or a hang leaves the tests it cut short: unfinished, unreached)."""
        tests = fguest.read(self.prepared, run_dir, text, console)
        return Reading({**staged.record, "fstests": tests.to_json()}, tests=tests)
