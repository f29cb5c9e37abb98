"""Disks and caches under stress: ENOSPC, two harnesses on one cache, damaged cache entries.

- ENOSPC: the results folder, then the cache, on a small tmpfs (filled to
  a few KiB where the fault needs it further in): one line, exit 12, no
  record or cache entry left half written and taken for whole.
- Concurrency: two harness processes started together on one empty cache
  ask for the same kernel download, image, compiled binary and kernel build:
  one does each piece of work (one "downloading", "building image",
  "compiling" line between them; one make), the other waits, both succeed.
- Damage: a .deb corrupted or cut short on its way from the mirror, an
  unpacked vmlinuz, a PVH vmlinux, an image, a compiled binary, a built
  kernel's bzImage truncated in the cache: detected by the sums recorded when
  the entry was made, fetched / unpacked / built / compiled again, never
  booted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from harness.kernels import integrity
from tools.chaos import checks
from tools.chaos.fixtures import one_line_patch
from tools.chaos.inputs import short
from tools.chaos.kills import RUN, Runs
from tools.chaos.proxy import AptProxy
from tools.chaos.sandbox import ChaosError, Harness, fill, survivors, tmpfs, unparsable_json, wait_for
from tools.chaos.suite import Context, Row, check, fault

NO_SPACE = 12


def _one_line_exit(h: Harness, code: int, *also: str) -> list[str]:
    """Problems unless the harness ended with ``code`` and one error line (which mentions ``also``)."""
    rc = h.popen.returncode
    errors = [ln for ln in h.stderr().splitlines()[1:] if "error" in ln.lower() or "Traceback" in ln]
    out = [] if rc == code else [f"exit {rc}, not {code}: {h.last_line()[:160]}"]
    if len(errors) != 1 or "Traceback" in h.stderr():
        out.append(f"{len(errors)} error lines (one wanted){': traceback' if 'Traceback' in h.stderr() else ''}")
    out += [f"the line does not say {w!r}: {h.last_line()[:120]}" for w in also if w not in h.last_line()]
    return out


# --- ENOSPC ----------------------------------------------------------------------------------------------


@fault("ENOSPC in the results folder", "space", ci=True)
def space_results(ctx: Context) -> list[Row]:
    return [_full_results(ctx, "results folder full at the start", mid_run=False),
            _full_results(ctx, "results folder filled mid-run", mid_run=True)]


def _full_results(ctx: Context, phase: str, *, mid_run: bool) -> Row:
    with tmpfs(ctx.box.root / "space" / "results", "8M") as results:
        runs = Runs(results)
        if not mid_run:
            fill(results, 0)
        h = ctx.box.start(["repro", "chaos_long", "-k", ctx.kernel, *RUN, "--results", str(results)],
                          cache=ctx.warm(), results=results, label="enospc-results")
        if mid_run:  # the disk fills while the reproducer runs: its output, the console, the records fail
            wait_for("the run step", lambda: runs.state() == "run:begin", 600, alive=lambda: h.alive)
            fill(results, 0)
        h.wait(900)
        problems = _one_line_exit(h, NO_SPACE, "no space left")
        problems += [f"unparsable: {p}" for p in unparsable_json(results)]
        problems += [f"left running: {p}" for p in survivors(h.tag, 5)]
    seen, held = check(problems)
    return Row("ENOSPC", phase, "one line, exit 12, no half record", f"exit 12: {short(h.last_line())}" if held
               else seen, held)


@fault("ENOSPC in the cache", "space", ci=True)
def space_cache(ctx: Context) -> list[Row]:
    rows = []
    size = _kernel_bytes(ctx)
    for phase, tmpfs_size, warm in (("cache full: kernel download", "8M", False),
                                    ("cache full: image build", str(size), True)):
        with tmpfs(ctx.box.root / "space" / "cache", tmpfs_size) as cache:
            if warm:
                ctx.box.warm_cache(str(cache.relative_to(ctx.box.root)))
                fill(cache, 256 << 10)
            h = ctx.box.run(["repro", "chaos_sleep", "-k", ctx.kernel, *RUN], cache=cache,
                            results=ctx.box.folder("results-enospc-cache"), label="enospc-cache")
            problems = _one_line_exit(h, NO_SPACE, "no space left")
            problems += [f"half a file taken for whole: {p}" for p in checks.audit(cache)]
            problems += [f"left running: {p}" for p in survivors(h.tag, 5)]
        seen, held = check(problems)
        rows.append(Row("ENOSPC", phase, "one line, exit 12, nothing half cached", seen if not held else
                        f"exit 12: {h.last_line()[:90]}", held))
    return rows


def _kernel_bytes(ctx: Context) -> int:
    """What the Debian kernel's copy takes on a tmpfs (whole pages a file, folders too)."""
    src = ctx.box.shared / "kernels" / "debian" / ctx.release
    return sum(-(-p.lstat().st_size // 4096) * 4096 + 4096 for p in src.rglob("*")) + (8 << 20)


# --- two harnesses, one cache ----------------------------------------------------------------------------


def _pair(ctx: Context, args: list[str], cache: Path, label: str, **env: str) -> tuple[Harness, Harness]:
    results = ctx.box.folder(f"results-{label}")
    a = ctx.box.start(args, cache=cache, results=results, label=f"{label}-a", **env)
    b = ctx.box.start(args, cache=cache, results=results, label=f"{label}-b", **env)
    for h in (a, b):
        h.wait(3600)
    return a, b


def _count(hs: tuple[Harness, Harness], pattern: str) -> int:
    return sum(len([ln for ln in h.stderr().splitlines() if pattern in ln]) for h in hs)


@fault("two harnesses on one cache: download, image, binary", "concurrency", ci=True)
def concurrent_repro(ctx: Context) -> list[Row]:
    cache = ctx.box.folder("cache-concurrent")
    with AptProxy(ctx.box.root, "throttle", rate=8 << 20) as proxy:  # a download long enough to overlap
        hs = _pair(ctx, ["repro", "chaos_small", "-k", ctx.kernel, *RUN, "--host-compile"], cache, "pair-repro",
                   **proxy.env)
    rows = []
    for what, pattern in (("kernel download", "… downloading linux-image"), ("image build", "… building image"),
                          ("binary (--host-compile)", "… compiling repro.c on the host")):
        problems = [f"{h.tag}: exit {h.popen.returncode}: {h.last_line()[:100]}" for h in hs if h.popen.returncode]
        n = _count(hs, pattern)
        problems += [] if n == 1 else [f"done {n} times"]
        seen, held = check(problems)
        rows.append(Row("two harnesses, one cache", what, "one does it, the other waits, both succeed",
                        "done once, both CLEAN" if held else seen, held))
    return rows


@fault("two harnesses on one cache: binary compiled in the guest", "concurrency")
def concurrent_guest_compile(ctx: Context) -> list[Row]:
    cache = ctx.box.folder("cache-concurrent-guest")
    ctx.box.warm_cache(cache.name)
    hs = _pair(ctx, ["repro", "chaos_small", "-k", ctx.kernel, *RUN], cache, "pair-guest-compile")
    problems = [f"exit {h.popen.returncode}: {h.last_line()[:100]}" for h in hs if h.popen.returncode]
    records = ctx.box.folder("results-pair-guest-compile").rglob("run-01/result.json")
    binaries = [json.loads(r.read_text()).get("binary", {}) for r in records]
    compiled = sum(b.get("compiled_in") == "guest" and not b.get("reused") for b in binaries)
    problems += [] if compiled == 1 else [f"compiled {compiled} times (both guests compiled: the binary lock "
                                          "does not cover a guest compile)"]
    seen, held = check(problems)
    return [Row("two harnesses, one cache", "binary (compiled in the guest)", "one compiles, the other waits",
                "compiled once" if held else seen, held)]


@fault("two harnesses on one cache: kernel build", "concurrency")
def concurrent_build(ctx: Context) -> list[Row]:
    cache = ctx.build_cache()
    patch = ctx.box.fixtures / "chaos-pair.patch"
    patch.write_text(one_line_patch(ctx.box.source()[1] / "tree", "fs/ext4/inline.c", note="chaos pair"))
    args = ["kernel", "build", ctx.source, "-p", str(patch), "--name", "chaos-pair"]
    hs = _pair(ctx, args, cache, "pair-build")
    problems = [f"exit {h.popen.returncode}: {h.last_line()[:100]}" for h in hs if h.popen.returncode]
    built = sum("built," in h.stdout() for h in hs)
    hits = sum("cache hit" in h.stdout() for h in hs)
    problems += [] if (built, hits) == (1, 1) else [f"{built} built, {hits} cache hits (one of each wanted)"]
    seen, held = check(problems)
    return [Row("two harnesses, one cache", "kernel build", "one builds, the other waits, both succeed",
                "built once, one cache hit" if held else seen, held)]


# --- damaged entries -------------------------------------------------------------------------------------


def truncate(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size // 2)


def _fresh_kernel_cache(ctx: Context) -> Path:
    """A cache whose Debian kernel was fetched by the harness itself (its sums recorded at creation)."""
    if "fresh" not in ctx.shared:
        cache = ctx.box.folder("cache-damage")
        h = ctx.box.run(["accel", ctx.kernel, "--accel", "tcg"], cache=cache, results=ctx.box.folder("results-damage"),
                        label="fetch")
        if h.popen.returncode:
            raise ChaosError(f"fetching {ctx.kernel}: {h.last_line()}")
        ctx.shared["fresh"] = cache
    return ctx.shared["fresh"]


@fault("a .deb damaged in transit", "corrupt", ci=True)
def damaged_deb(ctx: Context) -> list[Row]:
    rows = []
    cache = ctx.box.folder("cache-deb")
    with AptProxy(ctx.box.root) as proxy:
        for mode, what in (("corrupt", "corrupted"), ("truncate", "truncated")):
            proxy.mode = mode
            h = ctx.box.run(["accel", ctx.kernel, "--accel", "tcg"], cache=cache, results=ctx.box.folder("results-deb"),
                            label=f"deb-{mode}", **proxy.env)
            problems = _one_line_exit(h, 6)
            problems += [f"cached: {p}" for p in (cache / "kernels" / "debian").glob("*/.complete")]
            seen, held = check(problems)
            said = re.search(r"E: Failed to fetch \S+\s+(.*?)(?: \[IP|\(check|$)", h.last_line())
            rows.append(Row("damaged cache entry", f".deb {what} in transit", "refused (exit 6), nothing cached",
                            f"exit 6: apt: {said.group(1).strip() if said else short(h.last_line())}" if held else seen,
                            held))
        proxy.mode = "pass"
        h = ctx.box.run(["accel", ctx.kernel, "--accel", "tcg"], cache=cache, results=ctx.box.folder("results-deb"),
                        label="deb-refetch", **proxy.env)
    seen, held = check([] if h.popen.returncode == 0 else [f"refetch: exit {h.popen.returncode}: {h.last_line()}"])
    rows.append(Row("damaged cache entry", ".deb fetched again", "fetched whole", "fetched" if held else seen, held))
    return rows


def _damaged_run(ctx: Context, what: str, target: Path, cache: Path, notice: str) -> Row:
    """Truncate ``target`` in ``cache``, run, and expect the harness to notice and redo it, then a CLEAN run."""
    truncate(target)
    results = ctx.box.folder(f"results-damage-{target.name}")
    h = ctx.box.run(["repro", "chaos_sleep", "-k", ctx.kernel, *RUN], cache=cache, results=results,
                    label=f"damaged-{target.name}")
    last = (h.stdout().strip().splitlines() or [""])[-1]
    problems = [] if h.popen.returncode == 0 and last.startswith("CLEAN") else [f"exit {h.popen.returncode}: {last[:120]}"]
    problems += [] if h.said(notice) else [f"no sign it was noticed (no {notice!r} line)"]
    problems += [f"still damaged: {p}" for p in checks.audit(cache)]
    seen, held = check(problems)
    return Row("damaged cache entry", what, "detected, made again, never booted", "remade, run CLEAN" if held else seen,
               held)


@fault("a damaged kernel unpack, PVH vmlinux, image, binary", "corrupt", ci=True)
def damaged_entries(ctx: Context) -> list[Row]:
    cache = _fresh_kernel_cache(ctx)
    boot = cache / "kernels" / "debian" / ctx.release / "boot"
    rows = [_damaged_run(ctx, "unpacked vmlinuz truncated", next(boot.glob("vmlinuz-*")), cache,
                         r"damaged .*fetching it again")]
    rows.append(_damaged_run(ctx, "PVH vmlinux truncated", next(p for p in boot.glob("vmlinux-*")
                                                                 if not p.name.endswith(".sha256")), cache,
                             r"damaged .*unpacking it again"))
    rows.append(_damaged_run(ctx, "image truncated", next((cache / "images").glob("*.img")), cache,
                             r"cached image .* is damaged"))
    binary = next(p.with_suffix("") for p in (cache / "binaries").glob("*.json"))
    rows.append(_damaged_binary(ctx, binary, cache))
    return rows


def _damaged_binary(ctx: Context, binary: Path, cache: Path) -> Row:
    truncate(binary)
    results = ctx.box.folder("results-damage-binary")
    h = ctx.box.run(["repro", "chaos_sleep", "-k", ctx.kernel, *RUN], cache=cache, results=results,
                    label="damaged-binary")
    record = json.loads(next(results.rglob("run-01/result.json")).read_text())
    problems = [] if h.popen.returncode == 0 and record.get("verdict") == "CLEAN" else [
        f"exit {h.popen.returncode}: {h.last_line()[:120]}"]
    problems += [] if record.get("binary", {}).get("reused") is False else ["the truncated binary was reused"]
    problems += [f"still damaged: {p}" for p in checks.audit(cache)]
    seen, held = check(problems)
    return Row("damaged cache entry", "compiled binary truncated", "detected, compiled again, never run",
               "compiled again, run CLEAN" if held else seen, held)


@fault("a damaged built kernel", "corrupt")
def damaged_built(ctx: Context) -> list[Row]:
    cache = ctx.build_cache()
    results = ctx.box.folder("results-damage-built")
    h = ctx.box.run(["kernel", "build", ctx.source, "--json"], cache=cache, results=results, label="build-base",
                    timeout=3600)
    if h.popen.returncode:
        raise ChaosError(f"building {ctx.source}: {h.last_line()}")
    entry = Path(json.loads(h.stdout())["bzImage"]).parent
    truncate(entry / "bzImage")
    h = ctx.box.run(["kernel", "build", ctx.source, "--json"], cache=cache, results=results, label="damaged-bzimage",
                    timeout=3600)
    rebuilt = h.popen.returncode == 0 and json.loads(h.stdout()).get("cached") is False
    problems = [] if rebuilt else [f"exit {h.popen.returncode}: {(h.stdout() or h.last_line())[:140]}"]
    problems += integrity.Manifest(entry).problems() if entry.exists() else ["the entry is gone"]
    seen, held = check(problems)
    return [Row("damaged cache entry", "built bzImage truncated", "detected, built again, never booted",
                "built again, whole" if held else seen, held)]
