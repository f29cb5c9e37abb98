"""Benchmarks: timings measured side by side in one run, printed as ratios.

    python -m tools.bench [--kernel debian:6.1] [--runs 3] [--rounds 1] [--quick] [--build [--vng-kconfig]] [--no-boots]
                            [--ssh-runs N] [--fast-path N] [--prove] [--lean-change] [--symbols]

Never pass/fail: these machines are noisy, so every figure comes with the
figure it should be compared to, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from harness import kernels, proc
from harness.guest.accel import choose_accel
from harness.guest.machine import AHEAD
from harness.guest.protocol import RUN_MARK, line_stamp
from harness.guest.vng import VngBoot, vng_argv, vng_binary
from harness.kernels import build as kbuild
from harness.options import Accel, RunOptions
from harness.paths import PROJECT_ROOT, cache_dir, oops_corpus_dir
from harness.repro import spec as specs
from harness.repro.run import run_repro
from tools.bench import builds
from tools.bench.parser import corpus_throughput


def _time(argv: list[str], cwd: Path) -> float:
    start = time.monotonic()
    done = proc.run(argv, cwd=cwd, check=False, capture=True, timeout=600)
    if not done.ok:
        raise SystemExit(f"bench: {argv[0]} failed: {done.output.strip()[-300:]}")
    return time.monotonic() - start


def boot_figures(kernel_name: str, rounds: int, runs: int) -> list[tuple[str, float, str]]:
    kernel = kernels.resolve(kernel_name)
    accel, _ = choose_accel("auto", kernel)
    vng = vng_binary()
    bare = [vng, "--run", str(kernel.image)] + (["--disable-kvm"] if accel == "tcg" else []) + ["--", "true"]
    lean = vng_argv(VngBoot(kernel=kernel, command=("true",), accel=accel), vng)
    spec = specs.load("ext4_inline")
    t_bare, t_lean, t_one = [], [], []
    tth: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        # warm the caches (image, compiled binary) so every round measures the same work
        run_repro(spec, kernel, RunOptions(backend="vng", runs=1, results=cwd / "warm"), accel=Accel(accel))
        for _ in range(rounds):
            t_bare.append(_time(bare, cwd))
            t_lean.append(_time(lean, cwd))
            start = time.monotonic()
            s = run_repro(spec, kernel, RunOptions(backend="vng", runs=1, results=cwd / "one"), accel=Accel(accel))
            t_one.append(time.monotonic() - start)
            tth += [r.verdict.time_to_hit for r in s.runs if r.verdict.time_to_hit is not None]
        if runs > 1:
            s = run_repro(spec, kernel, RunOptions(backend="vng", runs=runs, results=cwd / "many"), accel=Accel(accel))
            tth += [r.verdict.time_to_hit for r in s.runs if r.verdict.time_to_hit is not None]
    med = statistics.median
    rows = [
        (f"bare `vng -r {kernel.name} -- true` ({accel})", med(t_bare), "1.00 (reference)"),
        ("the harness's lean boot, `true`", med(t_lean), f"{med(t_lean) / med(t_bare):.2f} x bare"),
        ("one ext4_inline run through the harness", med(t_one), f"{med(t_one) / med(t_bare):.2f} x bare"),
    ]
    if tth:
        rows.append((f"median time-to-first-hit ({len(tth)} hits)", med(tth), "from the run step's start"))
    return rows


def parser_figures() -> list[tuple[str, float, str]]:
    corpus = oops_corpus_dir()
    if not corpus.exists():
        return []
    t = corpus_throughput(corpus)
    return [(f"console parser over the corpus ({t['files']} files, {t['mb']:.1f} MB), fastest of 3 passes",
             t["seconds"], f"{t['mb_per_s']:.1f} MB/s wall, {t['cpu_mb_per_s']:.1f} MB/s CPU "
             f"({t['cpu_seconds']:.3f} s; goal >= 20 MB/s CPU)")]


def build_figures(with_vng_kconfig: bool) -> list[tuple[str, float, str]]:
    """Cold lean build (empty ccache), one-file fs/ rebuild, cache hit, and vng's default config."""
    def _show(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    f = builds.bench_figures(vng_kconfig=with_vng_kconfig, progress=_show)
    cold = f["cold_build_s"]
    frags = "+".join(f["fragments"])

    def of_cold(x: float) -> float:  # a build too fast to time (a fake tree) has no ratio
        return x / cold if cold > 0 else float("nan")

    rows = [(f"lean build ({frags}), cold ccache, {f['cold_objects']} objects", cold,
             f"1.00 (reference); make CPU {f['cold_make_cpu_s']:.0f} s")]
    if "vng_kconfig_build_s" in f:
        v = f["vng_kconfig_build_s"]
        rows.append((f"`vng --kconfig` build of the same tree, cold ccache, {f['vng_kconfig_objects']} objects", v,
                     f"lean = {(cold / v if v > 0 else float('nan')):.3f} x this (goal <= 0.333); make CPU {f['vng_kconfig_make_cpu_s']:.0f} s"))
    rows.append((f"rebuild after a one-file fs/ patch ({f['incremental_objects']} objects)", f["incremental_s"],
                 f"{of_cold(f['incremental_s']):.3f} x lean build (goal <= 0.05)"))
    rows.append(("second request for the same kernel (cache hit)", f["cache_hit_s"], f"{of_cold(f['cache_hit_s']):.4f} x lean build"))
    return rows


# --- backends: vng against the long-lived ones ------------------------------------------------------------------------------------

TRIVIAL_C = r"""// harness bench: a run that never crashes (writes, fsyncs and reads back a file)
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	char path[4096], buf[64] = {0};
	snprintf(path, sizeof(path), "%s/bench-file", argc > 1 ? argv[1] : ".");
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "harness bench\n", 14) != 14 || fsync(fd) || pread(fd, buf, 14, 0) != 14)
		return perror(path), 1;
	printf("read back: %s", buf);
	return strcmp(buf, "harness bench\n") != 0;
}
"""


def trivial_spec(folder: Path, image: str = "ext4-inline-fullbitmap") -> Path:
    """A reproducer folder whose runs never crash (for the no-reboot figures)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "repro.c").write_text(TRIVIAL_C)
    (folder / "repro.yaml").write_text(
        "name: bench_trivial\nsummary: writes a file and reads it back (never crashes)\nsource: repro.c\n"
        f'args: ["{{mnt}}"]\ntimeout: 60\nruns: 1\nimage: {image}\nkernel: debian:6.1\n'
        "guest:\n  cpus: 2\n  memory: 1G\n  cmdline: [\"oops=panic\"]\nexpect:\n  titles: []\n")
    return folder


def _measure(spec, kernel, accel: str, runs: int, backend: str, root: Path):
    start = time.monotonic()
    summary = run_repro(spec, kernel, RunOptions(backend=backend, runs=runs, results=root), accel=Accel(accel))
    seconds = time.monotonic() - start
    if backend == "vng":
        boots = runs
    elif backend == "snapshot":  # one boot per saved snapshot; every run restores it
        boots = len(list((summary.folder / "guest").glob("snapshot-*")))
    else:
        boots = len(list((summary.folder / "guest").glob("boot-*")))
    return seconds, summary.hits, boots, summary


def _outcomes(summary) -> str:
    counts: dict[str, int] = {}
    for r in summary.runs:
        counts[r.outcome.value] = counts.get(r.outcome.value, 0) + 1
    return ", ".join(f"{n} {o}" for o, n in counts.items())


def backend_figures(kernel_name: str = "debian:6.1", runs: int = 10, *, crash_repro: str | None = "ext4_inline",
          clean_kernel: str | None = None, trivial: bool = True, results_root: Path | None = None,
          progress=None, backends: tuple[str, ...] = ("vng-ssh", "snapshot")) -> list[tuple[str, float, str]]:
    """Wall time of ``runs`` runs: one boot per run (vng) vs the long-lived backends
    (vng-ssh: one guest, rebooted after an oops; snapshot: one boot, every run from its saved state).

    Rows (label, seconds, ratio) measured side by side in this call:
    ``crash_repro`` on ``kernel_name`` (ext4_inline: an oops every run, so
    both backends boot every run), then, when ``trivial``, a reproducer that
    never crashes (one boot in all for vng-ssh), and when ``clean_kernel``,
    ``crash_repro`` on that kernel (where it stays CLEAN).
    """
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="harness-bench-ssh-") as tmp:
        root = results_root or Path(tmp)
        cases = [(crash_repro, kernel_name)] if crash_repro else []
        if clean_kernel:
            cases.append((crash_repro or "ext4_inline", clean_kernel))
        if trivial:
            cases.append((str(trivial_spec(Path(tmp) / "bench_trivial")), kernel_name))
        for repro, kname in cases:
            spec = specs.load(repro)
            kernel = kernels.resolve(kname)
            accel, _ = choose_accel("auto", kernel)
            figures = {}
            # the long-lived backends first: any one-off cost (a first compile, a cold image cache) lands on
            # them, not on vng
            for backend in (*backends, "vng"):
                if progress:
                    progress(f"bench: {runs} x {spec.name} on {kernel.name}, backend {backend}")
                figures[backend] = _measure(spec, kernel, accel, runs, backend, root / backend.replace(":", "-"))
            base_s = figures["vng"][0]
            for backend in ("vng", *backends):
                s, hits, boots, summary = figures[backend]
                restores = f" + {runs} restores" if backend == "snapshot" else ""
                label = (f"{runs} x {spec.name} on {kernel.name}, {backend}: {hits}/{runs} hits ({_outcomes(summary)}),"
                         f" {boots} boots{restores}")
                ratio = "1.00 (reference)" if backend == "vng" else f"{s / base_s:.2f} x vng"
                rows.append((label, s, ratio))
    return rows


# --- the fast path: the default backend against one boot per run (issue 16) -------------------------------------------


def _timed_runs(spec, kernel, accel: Accel, runs: int, backend: str, root: Path):
    start = time.monotonic()
    summary = run_repro(spec, kernel, RunOptions(backend=backend, runs=runs, results=root), accel=accel)
    return time.monotonic() - start, summary


def _side_by_side(label: str, spec, kernel, runs: int, root: Path, goal: str,
                  details: bool = False) -> list[tuple[str, float, str]]:
    """``runs`` runs through vng, then through the default (auto) backend, after one warm-up run that compiles
    the reproducer in a vng guest of the kernel (so neither side pays for it).  ``details``: also the default
    without the guest restored ahead, and the floor: the default's runs' own time in their guests."""
    accel = Accel(*choose_accel("auto", kernel))
    run_repro(spec, kernel, RunOptions(backend="vng", runs=1, results=root / "warm"), accel=accel)
    vng_s, vng = _timed_runs(spec, kernel, accel, runs, "vng", root / "vng")
    auto_s, auto = _timed_runs(spec, kernel, accel, runs, "auto", root / "auto")
    chosen = auto.extra.get("backend")
    rows = [
        (f"{label}, vng: {vng.hits}/{runs} hits ({_outcomes(vng)})", vng_s, "1.00 (reference)"),
        (f"{label}, default ({chosen}): {auto.hits}/{runs} hits ({_outcomes(auto)})", auto_s,
         f"{auto_s / vng_s:.2f} x vng ({goal})"),
    ]
    if details:
        floor, boot = in_guest_seconds(auto), sum(r.guest.get("boot_seconds", 0) + r.guest.get("save_seconds", 0)
                                                  for r in auto.runs)
        rows.append((f"{label}, the default's floor: its runs' time in their guests ({floor:.1f} s) + its one "
                     f"boot and save ({boot:.1f} s)", floor + boot, f"{(floor + boot) / vng_s:.2f} x vng"))
        previous = os.environ.get(AHEAD)
        os.environ[AHEAD] = "0"
        try:
            plain_s, plain = _timed_runs(spec, kernel, accel, runs, "auto", root / "auto-plain")
        finally:
            if previous is None:
                del os.environ[AHEAD]
            else:
                os.environ[AHEAD] = previous
        rows.append((f"{label}, default without restoring the next guest ahead ({AHEAD}=0): {plain.hits}/{runs} "
                     "hits", plain_s, f"{plain_s / vng_s:.2f} x vng"))
    return rows


def in_guest_seconds(summary) -> float:
    """The runs' time inside their guests: from the run wrapper's first kernel-log line to its last."""
    total = 0.0
    for run in summary.runs:
        console = (run.folder / "console.log").read_text(errors="replace") if (run.folder / "console.log").exists() \
            else ""
        stamps = [t for ln in console.splitlines() if f"{RUN_MARK} " in ln and (t := line_stamp(ln)) is not None]
        total += stamps[-1] - stamps[0] if len(stamps) >= 2 else 0.0
    return total


def fast_path_figures(runs: int = 10) -> list[tuple[str, float, str]]:
    """ext2_iomap_blkseq on its ext2-iomap variant (a source-built kernel), ``runs`` runs, vng vs the default;
    one ext4_inline run on Debian's 6.1, vng vs the default."""
    spec = specs.load("ext2_iomap_blkseq")
    ext2 = spec.variant("ext2-iomap").recipe().build()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="harness-bench-fast-") as tmp:
        options = spec.variant("ext2-iomap").cmdline
        spec = replace(spec, guest=replace(spec.guest, cmdline=(*spec.guest.cmdline, *options)))
        rows += _side_by_side(f"{runs} x ext2_iomap_blkseq on {ext2.name}", spec, ext2, runs, Path(tmp) / "ext2",
                              "goal <= 0.3", details=True)
        rows += _side_by_side("1 x ext4_inline on debian:6.1", specs.load("ext4_inline"), kernels.resolve("debian:6.1"),
                              1, Path(tmp) / "ext4", "goal: not slower")
    return rows


def _prove(extra: Sequence[str], results: Path) -> dict:
    """One ext2 FIXED proof through the CLI as a user runs it; its --json object (``wall_seconds``: the proof
    after both builds), or {"error": ...}.  The proof folder stays under ``results``."""
    patch = PROJECT_ROOT / "reproducers/ext2_iomap_blkseq/patches/0002-ext2-validate-cached-iomap-with-i_blkseq.patch"
    argv = [sys.executable, "-m", "harness", "prove", "ext2_iomap_blkseq", "--variant", "ext2-iomap", "--patch",
            str(patch), *extra, "--json", "--results", str(results)]
    done = proc.run(argv, check=False, capture=True, cwd=PROJECT_ROOT, timeout=7200)
    for line in reversed(done.output.strip().splitlines()):  # the JSON object; the console's lines beside it
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {"error": f"exit {done.returncode}: {done.output.strip().splitlines()[-1:]}"}


def _proof_label(name: str, r: dict) -> str:
    if "error" in r:
        return f"ext2 proof, {name}: failed ({r['error']})"
    b, p, c = r.get("base", {}), r.get("patched", {}), r.get("check") or {}
    trial = r.get("trial") or {}
    length = f"{trial['seconds']:g} s trials" if trial and r.get("unit") == "trial" else "the full 30 s race"
    check = f" after a base check of {c.get('runs')} runs" if c else ""
    return (f"ext2 proof, {name}: {r.get('verdict')} at {r.get('confidence')}/{r.get('fraction')}, {length}; "
            f"base {b.get('hits')}/{b.get('runs')}, patched {p.get('hits')}/{p.get('runs')}{check}")


def prove_figures() -> list[tuple[str, float, str]]:
    """The ext2 FIXED proof with ``--trial full`` (every run races the whole 30 s, issue 15's rule) and with the
    default (trials as long as the base check says), one after the other, both kernels built first.  The proof
    folders are kept in ``results/bench-prove-<time>/`` for a look at every run."""
    rows = []
    results = PROJECT_ROOT / "results" / time.strftime("bench-prove-%Y%m%d-%H%M%S")
    results.mkdir(parents=True)
    found = {name: _prove(extra, results) for name, extra in (("--trial full", ["--trial", "full"]),
                                                               ("the default (--trial auto)", []))}
    full = found["--trial full"].get("wall_seconds")
    for name, r in found.items():
        seconds = r.get("wall_seconds") or 0.0
        ratio = "1.00 (reference)" if name == "--trial full" else (
            f"{seconds / full:.3f} x --trial full (goal <= 0.125)" if full and seconds else "-")
        rows.append((_proof_label(name, r), seconds, ratio))
    rows.append((f"(proof folders in {results})", 0.0, ""))
    return rows


def _boots(root: Path) -> int:
    """Boots the snapshot backend made under ``root`` (its session.log lines "boot N of ... to save")."""
    return sum(line.count("to save a post-boot snapshot") for log in root.rglob("session.log")
               for line in log.read_text(errors="replace").splitlines())


def bisect_figures(kernel: str = "debian:6.1.0-55", runs: int = 3) -> list[tuple[str, float, str]]:
    """One bisect step (``runs`` runs of ext4_inline on one Debian image, snapshot backend) as bisect ran it
    before issue 23 (a run session, hence a boot and a save, for every run) and now (one Trial a step), each
    with an empty saved-guest store; and now with the store warm (a second step on the same kernel)."""
    from harness.bisect import steps  # start-up cost: only this figure needs the bisect machinery

    spec = specs.load("ext4_inline")
    rows, figures = [], {}
    with tempfile.TemporaryDirectory(prefix="harness-bench-bisect-") as tmp:
        for label in ("before: a session a run", "now: one Trial a step", "now, saved guest kept"):
            root = Path(tmp) / label.split(":")[0].replace(" ", "-").replace(",", "")
            store = Path(tmp) / ("store-warm" if "kept" in label else f"store-{len(figures)}")
            old = os.environ.get("HARNESS_SNAPSHOT_CACHE")
            os.environ["HARNESS_SNAPSHOT_CACHE"] = str(store)
            options = RunOptions(backend="snapshot", accel="auto", runs=runs, results=root)
            step = steps.PrebuiltStep(spec, options)
            start = time.monotonic()
            try:
                if label.startswith("before"):
                    for _ in range(runs):  # what bisect/steps.py did: run_repro(runs=1) for every run
                        with step(kernel) as target:
                            target.run(1)
                        os.environ["HARNESS_SNAPSHOT_CACHE"] = str(store / f"run-{_}")
                else:
                    if "kept" in label:  # warm the store with one step first (not timed)
                        with step(kernel) as target:
                            target.run(1)
                        start = time.monotonic()
                        root = root.with_name(root.name + "-timed")
                        step = steps.PrebuiltStep(spec, RunOptions(backend="snapshot", accel="auto", runs=runs,
                                                                   results=root))
                    with step(kernel) as target:
                        for i in range(runs):
                            target.run(i + 1)
            finally:
                if old is None:
                    os.environ.pop("HARNESS_SNAPSHOT_CACHE", None)
                else:
                    os.environ["HARNESS_SNAPSHOT_CACHE"] = old
            figures[label] = (time.monotonic() - start, _boots(root))
    before = figures["before: a session a run"][0]
    for label, (seconds, boots) in figures.items():
        ratio = "1.00 (reference)" if label.startswith("before") else f"{seconds / before:.3f} x before"
        rows.append((f"bisect step, {runs} runs of ext4_inline on {kernel}, {label}: {boots} boots", seconds, ratio))
    return rows


def lean_change_figures() -> list[tuple[str, float, str]]:
    """The cold lean build before and after issue 16's options (virtio-net, PVH, an initramfs), one after the other."""
    before = Path(tempfile.mkdtemp(prefix="harness-bench-lean-")) / "before-issue16.config"
    before.write_text("".join(f"# CONFIG_{o} is not set\n" for o in LEAN_ADDITIONS))
    layout = kbuild.Layout(cache_dir("kernels", "bench"))
    rows = []
    try:
        figures = {}
        for label, fragments in (("before", (*kbuild.DEFAULT_FRAGMENTS, str(before))), ("after", kbuild.DEFAULT_FRAGMENTS)):
            shutil.rmtree(layout.root, ignore_errors=True)
            layout.root.mkdir(parents=True)
            start = time.monotonic()
            kernel = kbuild.build(kbuild.Variant(source="debian-src:6.1.192", fragments=fragments), layout=layout)
            figures[label] = (time.monotonic() - start, kernel.extra.get("objects"))
        b, a = figures["before"], figures["after"]
        rows.append((f"cold lean build before issue 16's options ({b[1]} objects)", b[0], "1.00 (reference)"))
        rows.append((f"cold lean build with them ({a[1]} objects: virtio-net, PVH, initramfs)", a[0],
                     f"{a[0] / b[0]:.3f} x before (goal <= 1.05)"))
    finally:
        shutil.rmtree(layout.root, ignore_errors=True)
        shutil.rmtree(before.parent, ignore_errors=True)
    return rows


def symbols_figures() -> list[tuple[str, float, str]]:
    """The cold lean build without and with the ``symbols`` fragment (reduced DWARF), one after the other:
    what file:line and --vmcore on the lean base would cost every cold build."""
    layout = kbuild.Layout(cache_dir("kernels", "bench"))
    rows, figures = [], {}
    try:
        for label, fragments in (("lean", kbuild.DEFAULT_FRAGMENTS), ("lean + symbols", (*kbuild.DEFAULT_FRAGMENTS, "symbols"))):
            shutil.rmtree(layout.root, ignore_errors=True)
            layout.root.mkdir(parents=True)
            start = time.monotonic()
            kernel = kbuild.build(kbuild.Variant(source="debian-src:6.1.192", fragments=fragments), layout=layout)
            seconds = time.monotonic() - start
            vmlinux = kernel.vmlinux
            size = vmlinux.stat().st_size / 2**20 if vmlinux and vmlinux.exists() else 0.0
            cache = sum(f.stat().st_size for f in layout.root.rglob("*") if f.is_file()) / 2**20
            figures[label] = (seconds, kernel.extra.get("objects"), size, cache, kernel.extra.get("build_cpu_seconds"))
        (b, bo, bsize, bcache, bcpu), (a, ao, asize, acache, acpu) = figures["lean"], figures["lean + symbols"]
        cpu = f"; make CPU {acpu:.0f} s = {acpu / bcpu:.3f} x lean's {bcpu:.0f} s" if acpu and bcpu else ""
        rows.append((f"cold lean build ({bo} objects, vmlinux {bsize:.0f} MiB, cache {bcache:.0f} MiB)", b,
                     "1.00 (reference)"))
        rows.append((f"cold lean build + symbols ({ao} objects, vmlinux {asize:.0f} MiB, cache {acache:.0f} MiB)", a,
                     f"{a / b:.3f} x lean{cpu}"))
    finally:
        shutil.rmtree(layout.root, ignore_errors=True)
    return rows


# what issue 16 added to kconfigs/lean.config (the "before" build switches them off again)
LEAN_ADDITIONS = ("NETDEVICES", "NET_CORE", "VIRTIO_NET", "PVH", "BLK_DEV_INITRD")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="debian:6.1")
    ap.add_argument("--runs", type=int, default=3, help="extra runs for the time-to-first-hit median")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the side-by-side boots")
    ap.add_argument("--quick", action="store_true", help="no guests, no builds")
    ap.add_argument("--ssh-runs", type=int, default=0, metavar="N", help="also vng vs the long-lived backends (vng-ssh, snapshot) over N runs of ext4_inline and of a run that never crashes")
    ap.add_argument("--build", action="store_true", help="also kernel build figures (minutes)")
    ap.add_argument("--vng-kconfig", action="store_true", help="with --build: also vng's default config (~25 min)")
    ap.add_argument("--no-boots", action="store_true", help="skip the boot figures (e.g. for build figures alone)")
    ap.add_argument("--fast-path", type=int, default=0, metavar="N", help="N runs of ext2_iomap_blkseq (ext2-iomap) "
                    "through vng and through the default backend, and one ext4_inline run each way")
    ap.add_argument("--prove", action="store_true", help="the ext2 FIXED proof with --trial full and with the "
                    "default trial length, side by side (about 30 min under TCG)")
    ap.add_argument("--bisect-step", action="store_true", help="one bisect step's boots and wall time: a run "
                    "session a run (before) against one Trial a step (now), and with the saved guest kept")
    ap.add_argument("--symbols", action="store_true", help="the cold lean build without and with reduced DWARF "
                    "(the symbols fragment; two cold builds, ~20 min)")
    ap.add_argument("--lean-change", action="store_true", help="the cold lean build before and after issue 16's "
                    "options (two cold builds, ~15 min)")
    args = ap.parse_args(argv)
    rows = parser_figures()
    if not args.quick:
        if not args.no_boots:
            rows += boot_figures(args.kernel, args.rounds, args.runs)
        if args.ssh_runs:
            rows += backend_figures(args.kernel, args.ssh_runs)
        if args.build:
            rows += build_figures(args.vng_kconfig)
        if args.fast_path:
            rows += fast_path_figures(args.fast_path)
        if args.prove:
            rows += prove_figures()
        if args.bisect_step:
            rows += bisect_figures()
        if args.lean_change:
            rows += lean_change_figures()
        if args.symbols:
            rows += symbols_figures()
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'seconds':>8}  ratio")
    for label, seconds, ratio in rows:
        print(f"{label:<{width}}  {seconds:8.2f}  {ratio}")
    return 0

