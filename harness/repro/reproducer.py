"""The C reproducer as a kind of run: a harness image, the source compiled once, its binary run in every guest.

``prepare`` builds the spec's image and finds the binary compiled earlier for
this kernel (harness.repro.binaries), or compiles it now where the backend
cannot (on the host with --host-compile, or in a vng guest of the kernel);
with a compiling backend run 1 compiles it and every later run reuses it.
``stage`` copies the source, the binary and a fresh copy of the image into
the run folder and renders the guest steps (``guest_plan``); ``read`` caches
what the guest compiled.  Plain and syzkaller specs are this kind.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path

import filelock

from harness import images
from harness.errors import GuestError
from harness.guest.machine import Disk
from harness.guest.protocol import GuestOutput, GuestPlan
from harness.images import FILESYSTEMS
from harness.repro import faults, syzkaller
from harness.repro.binaries import (
    BINARY_NAME,
    BinaryCache,
    Cached,
    CompileFailed,
    adopt_compiled,
    binary_key,
    compile_in_guest,
    compile_on_host,
)
from harness.repro.kind import Context, Reading, RunKind, Staged
from harness.repro.spec import Spec
from harness.repro.watchdog import StepWatchdog
from harness.verdict import Verdict

DISK_SERIAL = "harness-img0"


def guest_plan(spec: Spec, run_dir: Path, source: Path, prebuilt: Path | None, timeout: int,
               seconds: float | None = None) -> GuestPlan:
    """The guest steps of one run (host paths: a backend maps them to where its guest sees them).

    ``seconds`` is the trial's length (``Spec.trial_args``): the race's own
    argument where the spec has a ``{seconds}`` placeholder, else the run
    step's time limit; None runs the spec as written."""
    recipe = spec.image
    fs = FILESYSTEMS.select(recipe.fs) if recipe is not None else None
    env = spec.environment
    return GuestPlan(
        title=spec.name,
        fs_type=fs.mount_type if fs else "none",
        mount_options=recipe.mount_options if recipe else "",
        source=str(source),
        cflags=spec.cflags,
        args=spec.trial_args(seconds),
        run_timeout=spec.trial_timeout(seconds, timeout),
        timeout_ends_trial=seconds is not None and not spec.timed_race,
        check_argv=tuple(fs.check_argv("{dev}")) if fs and recipe.check else None,
        sysctls=spec.guest.sysctls,
        compiler=spec.compiler,
        prebuilt=str(prebuilt) if prebuilt else None,
        binary_out=str(run_dir / BINARY_NAME),
        pre_run=(*(env.setup_lines() if env else ()), *faults.setup_lines(spec.faults)),
        post_run=(*faults.teardown_lines(spec.faults), *(env.teardown_lines() if env else ())),
        workdir=env.workdir if env else None,
        image=recipe is not None,
    )


@contextlib.contextmanager
def _waiting(lock, say: Callable[[], None]):
    """Hold ``lock``; say so once if another process holds it first."""
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        say()
        lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


class Reproducer(RunKind):
    """A C reproducer (see the module doc)."""

    name = "reproducer"
    modes = ("plain", "syzkaller")

    def __init__(self, spec: Spec):
        super().__init__(spec)
        self.image: Path | None = None
        self.cache = BinaryCache()
        self.key = ""
        self.binary: Cached | None = None
        self.compiling = None  # the binary's lock, held from prepare until run 1 compiled it (compiling backends)

    # --- once --------------------------------------------------------------------------------------

    def prepare(self, ctx: Context) -> Verdict | None:
        """The image, then the binary: compiled earlier for this kernel, or now where the backend cannot."""
        spec, opts, backend = self.spec, ctx.options, ctx.backend
        self.image = images.build(spec.image, progress=ctx.progress) if spec.image is not None else None
        self.key = binary_key(spec, ctx.kernel)
        if backend.own_toolchain:  # a user's machine compiles every run with its own compiler
            return None
        if opts.fresh_compile:
            if not backend.compiles:
                raise GuestError(f"--fresh-compile compiles in every guest; {backend.name} guests have no "
                                 "compiler (use --backend vng or vng-ssh)")
            return None
        lock = self.cache.lock(spec.name, self.key)
        with _waiting(lock, lambda: ctx.progress(f"another harness is compiling {spec.source.name} for "
                                                 f"{ctx.kernel.name}: waiting for its binary")):
            self.binary = self.cache.get(spec.name, self.key)
            if self.binary is not None:
                return None
            if backend.compiles and not opts.host_compile:  # run 1 compiles: another harness waits for it
                lock.acquire()
                self.compiling = lock
                return None
            if opts.host_compile:
                ctx.progress(f"compiling {spec.source.name} on the host (--host-compile)")
                self.binary = compile_on_host(spec, self.cache, self.key, ctx.folder / "host-compile.log")
                return None
            return self._compile_in_guest(ctx)

    def _compile_in_guest(self, ctx: Context) -> Verdict | None:
        """A backend without a compiler: one vng guest of the kernel compiles, and the cache keeps the binary."""
        spec = self.spec
        ctx.progress(f"compiling {spec.source.name} in a vng guest of {ctx.kernel.name} "
                     f"({ctx.backend.name} guests have no compiler)")
        plan = guest_plan(spec, ctx.folder, spec.source, None, ctx.timeout)
        compile_dir = ctx.folder / "compile"
        watchdog = StepWatchdog(compile_dir / "guest.log", spec.guest.boot_timeout, ctx.timeout)
        try:
            self.binary = compile_in_guest(spec, ctx.kernel, ctx.accel.name, plan, compile_dir, self.cache,
                                           self.key, watchdog=watchdog)
        except CompileFailed as exc:  # an outcome to record (every run would meet it), not a crash
            ctx.progress(exc.one_line())
            return exc.verdict
        return None

    def close(self) -> None:
        """Run 1 is over (or the session): the binary is in the cache, or it failed to compile: a waiting
        harness goes on."""
        if self.compiling is not None:
            self.compiling.release()
            self.compiling = None

    # --- each run ----------------------------------------------------------------------------------

    def stage(self, ctx: Context, run_dir: Path, seconds: float | None = None) -> Staged:
        """The source as loaded, the binary (when cached), a fresh copy of the image, and the steps."""
        spec = self.spec
        source = run_dir / spec.source.name
        source.write_bytes(spec.source_text)  # the source as loaded, even if the file changes meanwhile
        prebuilt, record = None, {}
        if self.binary is not None and self.cache.get(spec.name, self.key) is not None:
            prebuilt = run_dir / BINARY_NAME
            shutil.copyfile(self.binary.path, prebuilt)
            prebuilt.chmod(0o755)
            record = {"binary": {**{k: v for k, v in self.binary.meta.items() if k != "at"}, "reused": True,
                                 "key": self.key}}
        if self.image is not None:
            disk = images.fresh_copy(self.image, run_dir / "disk.img")
        else:  # no harness image: a small blank disk keeps every backend's devices the same
            disk = run_dir / "disk.img"
            with open(disk, "wb") as fh:
                fh.truncate(1 << 20)
        plan = guest_plan(spec, run_dir, source, prebuilt, ctx.timeout, seconds)
        env = spec.environment
        preload = ((f"fs-{plan.fs_type}",) if plan.image else ()) + (
            (*env.modules, *(f"fs-{fs}" for fs in env.filesystems)) if env else ())
        req = ctx.request(run_dir, plan, (Disk(disk, DISK_SERIAL),), preload=preload,
                          inputs=(source, *((prebuilt,) if prebuilt else ())))
        return Staged(req, record)

    def read(self, ctx: Context, run_dir: Path, staged: Staged, output: GuestOutput, text: str,
             console: str) -> Reading:
        """Where the binary came from (cached now if this guest compiled it); the run folder's copy goes."""
        record = staged.record or self._adopt(ctx, run_dir, output)
        self.close()
        (run_dir / BINARY_NAME).unlink(missing_ok=True)  # in the cache (or not worth keeping)
        return Reading(record)

    def _adopt(self, ctx: Context, run_dir: Path, output: GuestOutput) -> dict:
        """Cache what this run's guest compiled (when the options allow), and say where it came from."""
        if output.binary != "compiled":
            return {}
        record = {"compiled_in": "guest", "kernel": ctx.kernel.name, "folder": str(run_dir), "reused": False}
        if ctx.backend.own_toolchain:
            record.update(compiled_in="target", kernel=ctx.backend.name)
        elif not ctx.options.fresh_compile:
            cached = adopt_compiled(self.cache, self.spec.name, self.key, run_dir, output, ctx.kernel)
            if cached is not None:
                self.binary = cached
                record["key"] = self.key
        return {"binary": record}

    def explain(self, rc: int | None, output: str) -> str | None:
        """Why the reproducer exited by itself, from what it is (a syzkaller reproducer's needs)."""
        return syzkaller.explain_exit(self.spec.syzkaller, rc, guest_log=output) if self.spec.syzkaller else None
