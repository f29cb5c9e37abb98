"""SIGKILL and SIGTERM of the harness in each phase; then no process of its run, whole files, a rerun that completes.

Each phase is found by watching what the harness shows (its progress lines,
its run folders, its processes by tag), and the signal goes to the harness
process itself at that moment, the way ``kill`` or a CI runner's timeout
would send it.  Then:

- no process carrying the run's tag is alive ``SETTLE`` seconds later
  (apt-get, make and cc1, mke2fs, vng, virtme-run, QEMU);
- every result.json / matrix.json parses, and every cache entry the harness
  would trust is whole (``checks.audit``);
- SIGTERM: the harness says so and exits 130 (``interrupted``);
- the same command again (or ``--resume`` / the same ``--folder``) runs to
  its end, and keeps every run the killed one had finished.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tools.chaos import checks
from tools.chaos.fixtures import one_line_patch
from tools.chaos.proxy import AptProxy
from tools.chaos.sandbox import (
    ChaosError,
    Harness,
    guest_state,
    kill_tagged,
    run_dirs,
    survivors,
    tagged,
    unparsable_json,
    wait_for,
)
from tools.chaos.suite import Context, Row, check, fault

SIGNALS = (signal.SIGKILL, signal.SIGTERM)
RUN = ["--accel", "tcg", "--backend", "vng"]


@dataclass
class Kill:
    sig: int
    rc: int | None
    running: list[str]  # the run's processes when the signal went
    left: list[str]  # ... still alive SETTLE seconds later
    harness: Harness
    lingered: float = 0.0  # seconds the last of them outlived the harness
    outlived: list[str] = field(default_factory=list)  # what was still running when the harness was gone

    @property
    def name(self) -> str:
        return signal.Signals(self.sig).name


def kill_in(ctx: Context, h: Harness, phase: str, reached: Callable[[], object], sig: int, *,
            timeout: float = 600) -> Kill:
    """Wait for ``reached``, send ``sig`` to the harness, wait for it and its run's processes."""
    try:
        wait_for(phase, reached, timeout, alive=lambda: h.alive)
    except ChaosError:
        h.kill(signal.SIGKILL)
        kill_tagged(h.tag)
        raise
    running = sorted({p.name for p in tagged(h.tag)} - {"harness", "python3", "python"})
    h.kill(sig)
    rc = h.wait(180)
    died, outlived = time.monotonic(), {p.name for p in tagged(h.tag)}
    left = [str(p) for p in survivors(h.tag)]
    lingered = time.monotonic() - died
    kill_tagged(h.tag)
    return Kill(sig, rc, running, left, h, lingered, sorted(outlived))


def kill_problems(k: Kill) -> list[str]:
    out = []
    if k.left:
        out.append(f"left running: {', '.join(k.left)}")
    if k.sig == signal.SIGTERM:
        if k.rc != 130:
            out.append(f"SIGTERM: exit {k.rc}, not 130 ({k.harness.last_line()[:120]})")
        elif not k.harness.said(r"interrupted"):
            out.append("SIGTERM: no 'interrupted' line")
    return out


def rows_for(fault_name: str, phase: str, kills: list[Kill], after: list[str], rerun: str,
             expected: str = "no orphan; whole files; rerun completes") -> list[Row]:
    """One row per signal: its own problems plus what the run's files and the rerun showed."""
    rows = []
    for k in kills:
        problems = kill_problems(k) + after
        seen, held = check(problems)
        gone = (f"{'+'.join(k.outlived)} gone {k.lingered:.0f} s later" if k.lingered >= 1 and k.outlived
                else "all gone with it")
        what = f"killed during {'+'.join(k.running) or 'harness'}: exit {k.rc}, {gone}, {rerun}"
        exp = ("exit 130; " if k.sig == signal.SIGTERM else "") + expected
        rows.append(Row(fault_name, f"{phase} ({k.name})", exp, what if held else f"{seen} [{what}]", held))
    return rows


def after_problems(cache: Path, results: Path) -> list[str]:
    return [f"half a file taken for whole: {p}" for p in checks.audit(cache)] + \
        [f"unparsable: {p}" for p in unparsable_json(results)]


def rerun_ok(h: Harness, rc: int, want: str = "CLEAN") -> tuple[str, list[str]]:
    """(what the rerun showed, its problems)."""
    last = (h.stdout().strip().splitlines() or [""])[-1]
    if rc != 0 or not last.startswith(want):
        return f"rerun exit {rc}", [f"rerun: exit {rc}: {(last or h.last_line())[:160]}"]
    return f"rerun {want}", []


# --- the phases of one reproducer run ---------------------------------------------------------------


def _qemu(h: Harness) -> bool:
    return any(p.name.startswith("qemu-system") for p in tagged(h.tag))


class Runs:
    """The run folders one harness makes under ``results`` (not those of the harnesses before it)."""

    def __init__(self, results: Path):
        self.results = results
        self.before = set(run_dirs(results))

    def new(self) -> list[Path]:
        return [d for d in run_dirs(self.results) if d not in self.before]

    def last(self) -> Path | None:
        new = self.new()
        return new[-1] if new else None

    def state(self) -> str:
        d = self.last()
        return guest_state(d) if d else ""

    def said(self, text: str) -> bool:
        d = self.last()
        return d is not None and (d / "guest.log").exists() and text in (d / "guest.log").read_text(errors="replace")


PHASES: dict[str, tuple[str, Callable[[Harness, Runs], object]]] = {
    # phase: (reproducer, when the harness is in it)
    "boot": ("chaos_sleep", lambda h, runs: _qemu(h) and runs.last() is not None and runs.state() in ("", "boot")),
    "run": ("chaos_long", lambda h, runs: runs.state() == "run:begin" and runs.said("chaos: 3/")),
    "verdict and result writing": ("chaos_sleep", lambda h, runs: runs.state() == "done"),
}


def _repro_phase(ctx: Context, phase: str) -> list[Row]:
    repro, reached = PHASES[phase]
    cache = ctx.warm()
    results = ctx.box.folder(f"results-kill-{phase.split()[0]}")
    kills = []
    for sig in SIGNALS:
        runs = Runs(results)
        h = ctx.box.start(["repro", repro, "-k", ctx.kernel, *RUN], cache=cache, results=results, label=f"kill-{repro}")
        kills.append(kill_in(ctx, h, phase, lambda h=h, runs=runs: reached(h, runs), sig, timeout=400))
    done_before = [r["_path"] for r in _records(results) if r.get("status") == "done"]
    after = after_problems(cache, results)
    h = ctx.box.run(["repro", repro, "-k", ctx.kernel, *RUN], cache=cache, results=results, label=f"rerun-{repro}")
    seen, problems = rerun_ok(h, h.popen.returncode)
    kept = [p for p in done_before if not Path(p).exists()]
    problems += [f"a finished run's record is gone: {p}" for p in kept]
    return rows_for("kill the harness", phase, kills, after + problems, seen)


def _records(results: Path) -> list[dict]:
    out = []
    for path in results.rglob("result.json"):
        try:
            out.append({**json.loads(path.read_text()), "_path": str(path)})
        except (OSError, ValueError):
            continue
    return out


@fault("kill during boot", "kill", ci=True)
def kill_boot(ctx: Context) -> list[Row]:
    return _repro_phase(ctx, "boot")


@fault("kill during run", "kill", ci=True)
def kill_run(ctx: Context) -> list[Row]:
    return _repro_phase(ctx, "run")


@fault("kill at verdict", "kill")
def kill_verdict(ctx: Context) -> list[Row]:
    return _repro_phase(ctx, "verdict and result writing")


# --- download, image, build --------------------------------------------------------------------------


@fault("kill during kernel download", "kill")
def kill_download(ctx: Context) -> list[Row]:
    cache = ctx.box.folder("cache-kill-download")
    results = ctx.box.folder("results-kill-download")
    kills = []
    with AptProxy(ctx.box.root, "throttle", rate=2 << 20) as proxy:
        for sig in SIGNALS:
            start = proxy.sent
            h = ctx.box.start(["repro", "chaos_sleep", "-k", ctx.kernel, *RUN], cache=cache, results=results,
                              label="kill-download", **proxy.env)
            kills.append(kill_in(ctx, h, "a .deb half downloaded", lambda s=start: proxy.sent - s > (8 << 20), sig,
                                 timeout=120))
        after = after_problems(cache, results)
        proxy.mode = "pass"
        h = ctx.box.run(["repro", "chaos_sleep", "-k", ctx.kernel, *RUN], cache=cache, results=results,
                        label="rerun-download", **proxy.env)
    seen, problems = rerun_ok(h, h.popen.returncode)
    return rows_for("kill the harness", "kernel download (apt)", kills, after + problems, seen + _left(cache))


@fault("kill during image build", "kill")
def kill_image(ctx: Context) -> list[Row]:
    cache = ctx.box.folder("cache-kill-image")
    results = ctx.box.folder("results-kill-image")
    recipe = ctx.slow_recipe()
    kills = []
    for sig in SIGNALS:
        h = ctx.box.start(["image", str(recipe)], cache=cache, results=results, label="kill-image")
        busy = lambda h=h: any(p.name in ("mke2fs", "mkfs.ext4", "debugfs") for p in tagged(h.tag))  # noqa: E731
        kills.append(kill_in(ctx, h, "mkfs or debugfs at work", busy, sig, timeout=120))
    after = after_problems(cache, results)
    h = ctx.box.run(["image", str(recipe)], cache=cache, results=results, label="rerun-image", timeout=900)
    rc, path = h.popen.returncode, h.stdout().strip()
    problems = [] if rc == 0 and path.endswith(".img") and Path(path).exists() else [f"rerun: exit {rc}: {h.last_line()}"]
    problems += [f"half a file taken for whole: {p}" for p in checks.audit(cache)]
    return rows_for("kill the harness", "image build", kills, after + problems, "rerun built the image" + _left(cache))


@fault("kill during kernel build", "kill")
def kill_build(ctx: Context) -> list[Row]:
    cache = ctx.build_cache()
    results = ctx.box.folder("results-kill-build")
    kills = []
    for sig in SIGNALS:
        h = ctx.box.start(["kernel", "build", ctx.source], cache=cache, results=results, label="kill-build")
        compiling = lambda h=h: h.said(r": [1-9]\d* objects, ") and any(  # noqa: E731 (make's objects, counted)
            p.name in ("cc1", "ccache", "gcc", "ld", "as") for p in tagged(h.tag))
        kills.append(kill_in(ctx, h, "make compiling objects", compiling, sig, timeout=900))
    after = after_problems(cache, results)
    h = ctx.box.run(["kernel", "build", ctx.source], cache=cache, results=results, label="rerun-build", timeout=3600)
    rc = h.popen.returncode
    problems = [] if rc == 0 else [f"rerun: exit {rc}: {h.last_line()[:160]}"]
    problems += [f"half a file taken for whole: {p}" for p in checks.audit(cache)]
    return rows_for("kill the harness", "kernel build (make)", kills, after + problems,
                    "rerun built the kernel" + _left(cache))


@fault("kill during kernel link", "kill")
def kill_link(ctx: Context) -> list[Row]:
    """An incremental build killed while the linker works: make prints nothing then, so only a leash ends it."""
    cache = ctx.build_cache()
    results = ctx.box.folder("results-kill-link")
    patch = ctx.box.fixtures / "chaos-link.patch"
    patch.write_text(one_line_patch(ctx.box.source()[1] / "tree", "fs/ext4/file.c", note="chaos link"))
    args = ["kernel", "build", ctx.source, "-p", str(patch), "--name", "chaos-link"]
    h = ctx.box.start(args, cache=cache, results=results, label="kill-link")
    linking = lambda: any(p.name == "ld" and "vmlinux" in p.cmdline for p in tagged(h.tag))  # noqa: E731
    kills = [kill_in(ctx, h, "ld linking vmlinux", linking, signal.SIGKILL, timeout=3600)]
    after = after_problems(cache, results)
    h = ctx.box.run(args, cache=cache, results=results, label="rerun-link", timeout=3600)
    rc = h.popen.returncode
    problems = [] if rc == 0 else [f"rerun: exit {rc}: {h.last_line()[:160]}"]
    return rows_for("kill the harness", "kernel build (ld)", kills, after + problems, "rerun built the kernel")


def _left(cache: Path) -> str:
    """Temporary folders the killed harnesses left (disk used; never taken for whole), for the table."""
    left = checks.leftovers(cache)
    return f"; {len(left)} temp dir(s) left: {', '.join(Path(x).name for x in left)}" if left else ""
