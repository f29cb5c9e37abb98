"""Compiled reproducers: compiled in a guest of the kernel under test, cached, checked before reuse.

The mission compiles reproducers inside the guest.  A binary is compiled at
least once per (kernel, source, flags, compiler): the first run of a vng or
vng-ssh guest compiles it; a backend whose guests have no compiler (snapshot)
gets it from one vng guest of the same kernel that compiles and stops
(``compile_in_guest``); ``--host-compile`` compiles on the host instead, with
the gcc and headers a vng guest would use (it shares the host's root), and
says so.

Guests never write the cache.  A guest leaves the binary it compiled in its
own run folder (or its SSH backend brings it there); its compile step says
the binary's sha256 before the reproducer starts; the harness caches the file
only when that sum matches, with a record of where it was compiled.  Every
reuse checks the cached file's sum against that record: a truncated or
altered binary is dropped and compiled again, never run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shlex
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from filelock import FileLock

from harness import proc
from harness.errors import GuestError
from harness.guest.machine import Disk, GuestRequest
from harness.guest.protocol import GuestOutput, GuestPlan
from harness.guest.vng import Vng
from harness.kernels import Kernel
from harness.paths import cache_dir
from harness.repro.spec import Spec
from harness.verdict import Evidence, Outcome, Verdict, judge


class CompileFailed(GuestError):
    """The compile boot did not leave a binary; ``verdict`` says why (an INFRA_ERROR the runs record)."""

    def __init__(self, message: str, verdict: Verdict, *, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.verdict = verdict


BINARY_NAME = "repro.bin"  # in a run folder: the binary the harness placed, or the one its guest compiled


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def compiler_version(compiler: str) -> str:
    done = proc.run(["sh", "-c", f"{shlex.quote(compiler)} --version"], capture=True, check=False)
    return (done.output.splitlines() or ["unknown"])[0]


def kernel_identity(kernel: Kernel) -> str:
    """What tells two kernels apart for the cache: release plus build key or package version."""
    return "|".join((kernel.name, kernel.release, str(kernel.extra.get("key", "")),
                     str(kernel.extra.get("debian_version", ""))))


def binary_key(spec: Spec, kernel: Kernel) -> str:
    """Cache key of a compiled reproducer: the kernel it was compiled on, source, flags, compiler."""
    h = hashlib.sha256(spec.source_text)
    h.update(json.dumps([spec.compiler, spec.cflags, compiler_version(spec.compiler), platform.machine(),
                         kernel_identity(kernel)]).encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Cached:
    path: Path
    meta: dict  # sha256, compiled_in (guest|host), kernel, folder, at


class BinaryCache:
    """``<cache>/binaries/<name>-<key>`` + ``.json`` (its sha256 and where it was compiled)."""

    def __init__(self, root: Path | None = None):
        self.root = root or cache_dir("binaries")

    def _paths(self, name: str, key: str) -> tuple[Path, Path]:
        base = self.root / f"{name.replace('/', '_')}-{key}"
        return base, base.with_name(base.name + ".json")

    def lock(self, name: str, key: str) -> FileLock:
        """Held while a binary is compiled for (name, key): a second harness waits instead of compiling too.
        Not thread-local: a session holds it from prepare until its run 1 compiled, whoever runs that."""
        return FileLock(str(self._paths(name, key)[0]) + ".lock", thread_local=False)

    def get(self, name: str, key: str) -> Cached | None:
        binary, meta_path = self._paths(name, key)
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        if not binary.exists() or sha256_file(binary) != meta.get("sha256"):
            binary.unlink(missing_ok=True)  # truncated or altered: compiled again, never run
            meta_path.unlink(missing_ok=True)
            return None
        return Cached(binary, meta)

    def put(self, name: str, key: str, src: Path, meta: dict) -> Cached:
        """Store ``src`` whole (copy, fsync, rename), then its record."""
        binary, meta_path = self._paths(name, key)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{binary.name}.")
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                out.write(inp.read())
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o755)
            os.replace(tmp, binary)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        record = {**meta, "sha256": sha256_file(binary), "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{meta_path.name}.")
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, meta_path)
        return Cached(binary, record)


def adopt_compiled(cache: BinaryCache, name: str, key: str, run_dir: Path, output: GuestOutput,
                   kernel: Kernel) -> Cached | None:
    """Cache what a run's guest compiled: only a file whose sum its compile step said before the run."""
    compiled = run_dir / BINARY_NAME
    step = output.step("compile")
    if output.binary != "compiled" or not output.binary_sha256 or step is None or step.rc != 0:
        return None
    if not compiled.exists() or sha256_file(compiled) != output.binary_sha256:
        return None  # changed after the compile step (or never came home): not the compiler's work
    return cache.put(name, key, compiled, {"compiled_in": "guest", "kernel": kernel.name,
                                           "release": kernel.release, "folder": str(run_dir)})


def compile_on_host(spec: Spec, cache: BinaryCache, key: str, log: Path) -> Cached:
    """``--host-compile``: the gcc and headers a vng guest would use (it shares this root)."""
    with tempfile.TemporaryDirectory(prefix="harness-cc-") as tmp:
        out = Path(tmp) / BINARY_NAME
        argv = [spec.compiler, *spec.cflags, "-o", str(out), str(spec.source)]
        done = proc.run(argv, check=False, capture=True, log_path=log)
        if not done.ok:
            tail = done.output.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            raise GuestError(f"compiling {spec.source.name} on the host failed: {tail[0]}", hint=f"see {log}")
        return cache.put(spec.name, key, out, {"compiled_in": "host", "command": shlex.join(argv)})


def compile_in_guest(spec: Spec, kernel: Kernel, accel: str, plan: GuestPlan, folder: Path, cache: BinaryCache,
                     key: str, *, watchdog=None) -> Cached:
    """Boot ``kernel`` once under vng to compile the reproducer (for backends whose guests have no gcc)."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / spec.source.name
    source.write_bytes(spec.source_text)
    blank = folder / "blank.img"
    with open(blank, "wb") as fh:
        fh.truncate(1 << 20)
    only = replace(plan, source=str(source), prebuilt=None, binary_out=str(folder / BINARY_NAME), compile_only=True)
    req = GuestRequest(kernel=kernel, plan=only, run_dir=folder, accel=accel, cpus=spec.guest.cpus,
                       memory=spec.guest.memory, disks=(Disk(blank, "harness-blank"),), cmdline=spec.guest.cmdline)
    vng = Vng()
    vng.open(folder)
    run = vng.run(req, watchdog=watchdog, timeout=spec.guest.boot_timeout + 300)
    blank.unlink(missing_ok=True)
    output = GuestOutput.parse(run.output_log.read_text(errors="replace") if run.output_log.exists() else "")
    cached = adopt_compiled(cache, spec.name, key, folder, output, kernel)
    if cached is None:
        raise _compile_failed(spec, kernel, folder, run)
    return cached


def _compile_failed(spec: Spec, kernel: Kernel, folder: Path, run) -> CompileFailed:
    """Why the compile boot left no binary, judged like a run (a missing compiler, a crash while compiling)."""
    text = run.output_log.read_text(errors="replace") if run.output_log.exists() else ""
    console = run.console_log.read_text(errors="replace") if run.console_log.exists() else ""
    judged = judge(Evidence(console=console, output=text, killed=run.detail or ("host timeout" if run.timed_out else None),
                            guest_rc=run.returncode))
    step = GuestOutput.parse(text).step("compile")
    why = judged.detail or judged.title or (f"compile step exit {step.rc}" if step else
                                            f"the guest never reached its compile step (exit {run.returncode})")
    where = f"compiling {spec.source.name} in a vng guest of {kernel.name}"
    verdict = Verdict(Outcome.INFRA_ERROR, detail=f"{where} failed: {why} (see {folder.name}/guest.log)")
    return CompileFailed(f"{where} failed: {why}", verdict, hint=f"see {folder}/guest.log and console.log")
