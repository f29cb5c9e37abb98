"""``harness mcp``: the harness as a Model Context Protocol server over stdio, for AI agents.

Built on the official Python SDK (``mcp``: ``MCPServer``).  The tools:

- ``list_kernels`` (``harness kernels --json``), ``list_cached_kernels``
  (``harness kernel list --json``), ``list_reproducers`` (every reproducer's
  name, summary, default kernel, variants and expected titles);
- ``run_reproducer`` (``harness repro NAME --json``) and ``prove_patch``
  (``harness prove NAME --patch P... --json``): long work, reported as MCP
  progress (the CLI's progress lines) and cancellable;
- ``read_result`` (a run or proof folder's ``result.json``), ``read_report``
  (the crash reports of its runs), ``report`` (``harness report LOG --json``:
  the first crash title and type of a console log).

Every tool that has a CLI twin runs that CLI with ``--json`` as a
subprocess and returns its stdout: the same JSON, by construction.  A
fault is the CLI's own one line (``harness: error: ...``) as the tool's
error.  Cancelling a call (``notifications/cancelled``) stops its
subprocess: the CLI runs in its own process group, gets SIGTERM (which it
takes as Ctrl-C: the guest is killed, what was run stays recorded), then
SIGKILL after ``STOP_GRACE`` seconds; the guests it started die with it
(``harness/leash.py``).

An agent is untrusted input.  The server reads and writes only under the
three folders it was started with (reproducers, results, cache: its CLI
runs get them as ``$HARNESS_REPRODUCERS``, ``$HARNESS_RESULTS``,
``$HARNESS_CACHE``, and the results folder as working directory), and
reads the built-in reproducers beside them (``harness.paths``).  Every
path an agent gives (a console log, a run folder, a patch, a ``git:`` or
``dir:`` tree) must lie inside them after symlinks are resolved; a ``..``
component, a path outside, a symlink out, a reproducer name that is a path
or an option, a patch whose file headers leave the kernel tree: each is a
one-line refusal before anything runs.  stdio only: no network listener.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from harness.errors import HarnessError
from harness.kernels import patches as patchlib
from harness.paths import builtin_dir
from harness.repro import spec as specs

STOP_GRACE = 30.0  # seconds between SIGTERM (the CLI records and stops its guest) and SIGKILL of the group
REPORT_MAX = 64 * 1024  # bytes of one crash report returned by read_report
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,63})?$")
_PREBUILT_RE = re.compile(r"^(debian|debian-src):[A-Za-z0-9][A-Za-z0-9._+~-]*(/[A-Za-z0-9][A-Za-z0-9._+-]*)?$")
_REV_RE = re.compile(r"^[A-Za-z0-9_./^~{}-]+$")


class Refused(HarnessError):
    """A request the server will not run: a path outside its folders, a name that is not one."""


@dataclass(frozen=True)
class Folders:
    """The three folders the server may read and write under, and the built-in reproducers it may read."""

    reproducers: Path
    results: Path
    cache: Path
    builtin: Path | None = None  # the shipped reproducers (their patches are valid --patch arguments): read only

    @classmethod
    def make(cls, reproducers: Path, results: Path, cache: Path) -> Folders:
        for folder in (reproducers, results, cache):
            folder.mkdir(parents=True, exist_ok=True)
        shipped = builtin_dir("reproducers")
        return cls(reproducers.resolve(), results.resolve(), cache.resolve(),
                   shipped.resolve() if shipped.is_dir() else None)

    @property
    def roots(self) -> tuple[Path, ...]:
        return (self.reproducers, self.results, self.cache, *([self.builtin] if self.builtin else []))

    def env(self) -> dict[str, str]:
        """The environment of every CLI run: the folders, and b4's cache inside the cache folder."""
        env = {**os.environ, "HARNESS_REPRODUCERS": str(self.reproducers), "HARNESS_RESULTS": str(self.results),
               "HARNESS_CACHE": str(self.cache), "XDG_CACHE_HOME": str(self.cache / "xdg")}
        env.pop("HARNESS_LORE_MBOX", None)  # a lore series comes from lore, not from a file outside the folders
        return env

    def inside(self, value: str, what: str) -> Path:
        """``value`` as a path inside the folders (relative: to the results folder), symlinks resolved."""
        if not value or "\0" in value:
            raise Refused(f"{what}: give a path")
        if ".." in PurePath(value).parts:
            raise Refused(f"{what} {value!r}: a path with '..' is refused (give it from inside the server's folders)")
        path = Path(value) if Path(value).is_absolute() else self.results / value
        real = Path(os.path.realpath(path))
        if not any(real.is_relative_to(root) for root in self.roots):
            lexical = any(path.is_relative_to(root) for root in self.roots)
            how = "leaves them through a symlink" if lexical else "is outside them"
            raise Refused(f"{what} {value!r} {how}: the server reads only under {', '.join(map(str, self.roots))}")
        if not real.exists():
            raise Refused(f"{what} {value!r}: no such file or folder")
        return real


# --- what an agent may name ----------------------------------------------------------------------


def check_name(value: str, what: str = "reproducer") -> str:
    """A reproducer or variant name (``NAME`` or ``PARENT/SUB``): never a path, never an option."""
    if not _NAME_RE.match(value or ""):
        raise Refused(f"{what} {value!r}: a name of letters, digits, _ . - (PARENT/SUB for a sub-reproducer), "
                      "not a path or an option")
    return value


def check_kernel(value: str, folders: Folders, what: str = "kernel") -> str:
    """A kernel or source name: ``debian:``/``debian-src:`` names as they are, ``git:PATH[@REV]`` and
    ``dir:PATH`` with PATH inside the folders."""
    if _PREBUILT_RE.match(value or ""):
        return value
    kind, sep, rest = (value or "").partition(":")
    if not sep or kind not in ("git", "dir"):
        raise Refused(f"{what} {value!r}: give debian:NAME, debian-src:VERSION[/BUILD], git:PATH[@REV] or dir:PATH")
    path, at, rev = rest.rpartition("@") if kind == "git" and "@" in rest else (rest, "", "")
    if at and (rev.startswith("-") or not _REV_RE.match(rev)):
        raise Refused(f"{what} {value!r}: {rev!r} is not a revision")
    return f"{kind}:{folders.inside(path, what)}{at}{rev}"


def check_patch(value: str, folders: Folders) -> str:
    """A ``--patch`` argument whose files lie inside the folders and whose diffs stay in the kernel tree,
    its paths made absolute (``harness.kernels.patches.load_patches`` reads and checks it: a range is
    formatted, a lore series fetched, into the cache folder)."""
    revert = "revert:" if (value or "").startswith("revert:") else ""
    rest = (value or "").removeprefix("revert:")
    if rest.startswith(patchlib.GIT_PREFIX):
        spec = rest.removeprefix(patchlib.GIT_PREFIX)
        at = spec.rfind("@")
        if at <= 0:
            raise Refused(f"patch {value!r}: give git:PATH@A..B")
        rest = f"{patchlib.GIT_PREFIX}{folders.inside(spec[:at], f'patch {value!r}: the tree')}{spec[at:]}"
    elif not rest.startswith(patchlib.LORE_PREFIX):
        rest = str(folders.inside(rest, "patch"))
    patchlib.load_patches(revert + rest)  # SpecError: a patch leaving the tree, a missing file, a bad range
    return revert + rest


# --- the CLI as a subprocess ---------------------------------------------------------------------


def cli_argv(*args: str) -> list[str]:
    """``harness ARGS`` as this Python runs it."""
    return [sys.executable, "-m", "harness", *args]


def repro_args(reproducer: str, *, kernel: str | None = None, variant: str | None = None, base: str | None = None,
               patches: tuple[str, ...] = (), runs: int | None = None, timeout: int | None = None) -> list[str]:
    """The command line of ``run_reproducer`` (its values checked already)."""
    args = ["repro", reproducer, "--json"]
    args += [f"--kernel={kernel}"] if kernel else []
    args += [f"--variant={variant}"] if variant else []
    args += [f"--base={base}"] if base else []
    args += [f"--patch={p}" for p in patches]
    args += [f"--runs={runs}"] if runs is not None else []
    args += [f"--timeout={timeout}"] if timeout is not None else []
    return args


def prove_args(reproducer: str, patches: tuple[str, ...], *, variant: str | None = None, base: str | None = None,
               confidence: float | None = None, fraction: float | None = None, max_runs: int | None = None,
               budget_minutes: float | None = None) -> list[str]:
    """The command line of ``prove_patch`` (its values checked already)."""
    args = ["prove", reproducer, "--json", *(f"--patch={p}" for p in patches)]
    args += [f"--variant={variant}"] if variant else []
    args += [f"--base={base}"] if base else []
    args += [f"--confidence={confidence:g}"] if confidence is not None else []
    args += [f"--fraction={fraction:g}"] if fraction is not None else []
    args += [f"--max-runs={max_runs}"] if max_runs is not None else []
    args += [f"--budget={budget_minutes:g}"] if budget_minutes is not None else []
    return args


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


async def _stop(process: anyio.abc.Process, grace: float) -> None:
    """SIGTERM to the process group (the CLI stops its guest and records), up to ``grace`` seconds for the
    CLI to end, then SIGKILL to whatever of the group is left (a child that ignored SIGTERM)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with anyio.move_on_after(grace):
        await process.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with anyio.move_on_after(5):
        await process.wait()


async def run_cli(argv: list[str], *, env: dict[str, str], cwd: Path, on_line: Callable | None = None,
                  grace: float = STOP_GRACE) -> Done:
    """Run ``argv`` in its own process group; ``await on_line(line)`` for each stderr line; a cancelled
    caller stops the whole group before the cancellation goes on."""
    process = await anyio.open_process(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, env=env, cwd=str(cwd), start_new_session=True)
    out: list[bytes] = []
    err: list[str] = []

    async def pump_out() -> None:
        async for chunk in process.stdout:
            out.append(chunk)

    async def pump_err() -> None:
        buffered = b""
        async for chunk in process.stderr:
            buffered += chunk
            *lines, buffered = buffered.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip()
                err.append(line)
                if on_line is not None and line:
                    await on_line(line)
        if buffered:
            err.append(buffered.decode(errors="replace"))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(pump_out)
            tg.start_soon(pump_err)
            await process.wait()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _stop(process, grace)
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await process.aclose()  # its pipes closed while the event loop runs
    return Done(process.returncode or 0, b"".join(out).decode(errors="replace"), "\n".join(err))


def json_of(done: Done, what: str) -> str:
    """The CLI's JSON (all of stdout, else its last line), else its one-line error as a ToolError."""
    text = done.stdout.strip()
    for candidate in (text, text.splitlines()[-1] if text else ""):
        try:
            json.loads(candidate)
            return candidate
        except ValueError:
            continue
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    said = next((line for line in reversed(lines) if "error:" in line), lines[-1] if lines else "no output")
    raise ToolError(f"{what} (exit {done.returncode}): {said}")


# --- the server ----------------------------------------------------------------------------------


def reproducer_list() -> list[dict]:
    """Every reproducer the reproducers folder holds, as ``list_reproducers`` returns it."""
    out = []
    for name in specs.available():
        try:
            s = specs.load(name)
        except HarnessError as e:
            out.append({"name": name, "error": e.one_line()})
            continue
        out.append({"name": s.name, "summary": s.summary, "mode": s.mode, "kernel": s.kernel,
                    "variants": [v.name for v in s.variants], "titles": list(s.expect.titles),
                    "links": list(s.links)})
    return out


def result_of(folder: Path, folders: Folders) -> str:
    """A folder's result.json (itself checked: a symlink out of the folders is refused)."""
    record = folder / "result.json"
    if not record.is_file():
        raise Refused(f"{folder}: no result.json (give a run, session or proof folder from a result's 'folder')")
    return folders.inside(str(record), "result").read_text()


def reports_of(folder: Path, folders: Folders) -> dict[str, str]:
    """``run-NN`` -> its ``report.txt`` (the crash reports the console held), for a folder or a run folder."""
    runs = [folder] if (folder / "report.txt").is_file() else sorted(folder.glob("run-*"))
    found = {}
    for run in runs:
        if (run / "report.txt").is_file():
            path = folders.inside(str(run / "report.txt"), "report")
            found[run.name] = path.read_bytes()[:REPORT_MAX].decode(errors="replace")
    return found


def build(folders: Folders) -> MCPServer:  # long: one tool per CLI command, each a few lines, read top to bottom
    """The server and its tools."""
    server = MCPServer("kernel-repro-harness", instructions=(
        "Reproduce Linux filesystem bugs on real kernels in QEMU guests and prove fixes with a confidence. "
        "run_reproducer and prove_patch boot kernels: minutes each; they report progress and can be cancelled."))

    async def cli(args: list[str], what: str, ctx: Context | None = None) -> str:
        step = 0

        async def on_line(line: str) -> None:
            nonlocal step
            step += 1
            if ctx is not None:
                await ctx.report_progress(step, None, line.removeprefix("… "))

        try:
            done = await run_cli(cli_argv(*args), env=folders.env(), cwd=folders.results, on_line=on_line)
        except OSError as e:
            raise ToolError(f"{what}: cannot start the harness: {e.strerror}") from None
        return json_of(done, what)

    def guarded(fn):
        """A tool body whose Refused and other harness faults are the tool's one-line error."""

        @functools.wraps(fn)
        async def call(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except HarnessError as e:
                raise ToolError(e.one_line()) from None

        return call

    @server.tool()
    @guarded
    async def list_kernels() -> str:
        """The kernels the configured sources offer (harness kernels --json): Debian prebuilt and source names."""
        return await cli(["kernels", "--json"], "list_kernels")

    @server.tool()
    @guarded
    async def list_cached_kernels() -> str:
        """The kernels built or fetched into the cache (harness kernel list --json), most recently used first."""
        return await cli(["kernel", "list", "--json"], "list_cached_kernels")

    @server.tool()
    @guarded
    async def list_reproducers() -> str:
        """Every reproducer: name, summary, mode, default kernel, variants, expected crash titles, links."""
        return json.dumps(reproducer_list())

    @server.tool()
    @guarded
    async def run_reproducer(reproducer: str, ctx: Context, kernel: str | None = None, variant: str | None = None,
                             base: str | None = None, patches: list[str] | None = None, runs: int | None = None,
                             timeout: int | None = None) -> str:
        """Run a reproducer on a kernel (harness repro NAME --json): the verdict (REPRODUCED, CLEAN, HANG,
        DATA_LOSS, INFRA_ERROR...), crash title, hits/runs and each run's folder.  kernel: debian:6.1.0-47,
        debian-src:6.1.192/NAME, ...; patches: files under the server's folders, git:PATH@A..B or lore:MSGID
        (applied on base or the variant).  Minutes per run; progress reported; cancel stops the guest."""
        runs, timeout = _count(runs, "runs"), _count(timeout, "timeout")  # the cheap checks first
        args = repro_args(check_name(reproducer), kernel=kernel and check_kernel(kernel, folders),
                          variant=variant and check_name(variant, "variant"),
                          base=base and check_kernel(base, folders, "base"),
                          patches=tuple(check_patch(p, folders) for p in patches or ()),
                          runs=runs, timeout=timeout)
        return await cli(args, "run_reproducer", ctx)

    @server.tool()
    @guarded
    async def prove_patch(reproducer: str, patches: list[str], ctx: Context, variant: str | None = None,
                          base: str | None = None, confidence: float | None = None, fraction: float | None = None,
                          max_runs: int | None = None, budget_minutes: float | None = None) -> str:
        """Prove (or refute) a fix (harness prove NAME --patch P... --json): the base kernel against the base
        patched until FIXED, NOT_FIXED, TRADED, BASE_CLEAN or INCONCLUSIVE at the confidence asked.  Long
        (many guest boots); progress reported; cancel stops its guests (the proof folder stays resumable)."""
        if not patches:
            raise Refused("prove_patch: give at least one patch")
        numbers = {"confidence": _unit(confidence, "confidence"), "fraction": _unit(fraction, "fraction"),
                   "max_runs": _count(max_runs, "max_runs"), "budget_minutes": _positive(budget_minutes)}
        args = prove_args(check_name(reproducer), tuple(check_patch(p, folders) for p in patches),
                          variant=variant and check_name(variant, "variant"),
                          base=base and check_kernel(base, folders, "base"), **numbers)
        return await cli(args, "prove_patch", ctx)

    @server.tool()
    @guarded
    async def read_result(folder: str) -> str:
        """The result.json of a run, session or proof folder (a 'folder' of run_reproducer's or prove_patch's
        JSON): the same JSON the CLI printed, with its status."""
        return result_of(folders.inside(folder, "folder"), folders)

    @server.tool()
    @guarded
    async def read_report(folder: str) -> str:
        """The crash reports (report.txt) of a session folder's runs, or of one run folder: {run: text}."""
        return json.dumps(reports_of(folders.inside(folder, "folder"), folders))

    @server.tool()
    @guarded
    async def report(path: str) -> str:
        """Parse a console log (harness report LOG --json): every crash report's syzkaller-style title, type
        and whether it is corrupted, first crash first."""
        return await cli(["report", str(folders.inside(path, "console log")), "--json"], "report")

    return server


def _count(value: int | None, what: str) -> int | None:
    if value is not None and not 1 <= value <= 100000:
        raise Refused(f"{what} {value}: give a whole number from 1")
    return value


def _unit(value: float | None, what: str) -> float | None:
    if value is not None and not (math.isfinite(value) and 0 < value < 1):
        raise Refused(f"{what} {value}: give a number between 0 and 1")
    return value


def _positive(value: float | None) -> float | None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise Refused(f"budget_minutes {value}: give a positive number of minutes")
    return value


def serve(folders: Folders) -> None:
    """Serve on stdin/stdout until the client hangs up; the CLI runs get the folders' environment."""
    env = folders.env()
    os.environ.update({k: env[k] for k in ("HARNESS_REPRODUCERS", "HARNESS_RESULTS", "HARNESS_CACHE", "XDG_CACHE_HOME")})
    os.environ.pop("HARNESS_LORE_MBOX", None)  # lore: series come from lore, not from a file outside the folders
    build(folders).run("stdio")
