"""Benchmarks: timings measured side by side in one run, printed as ratios.

    python -m harness.bench [--kernel debian:6.1] [--runs 3] [--rounds 1] [--quick] [--build [--vng-kconfig]] [--no-boots]

Never pass/fail: these machines are noisy, so every figure comes with the
figure it should be compared to, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness import kernels, proc
from harness.guest import GuestRequest
from harness.guest.vng import choose_accel, vng_argv, vng_binary
from harness.options import Accel, RunOptions
from harness.paths import oops_corpus_dir


def _time(argv: list[str], cwd: Path) -> float:
    start = time.monotonic()
    done = proc.run(argv, cwd=cwd, check=False, capture=True, timeout=600)
    if not done.ok:
        raise SystemExit(f"bench: {argv[0]} failed: {done.output.strip()[-300:]}")
    return time.monotonic() - start


def boot_figures(kernel_name: str, rounds: int, runs: int) -> list[tuple[str, float, str]]:
    from harness.repro import spec as specs
    from harness.repro.run import run_repro

    kernel = kernels.resolve(kernel_name)
    accel, _ = choose_accel("auto", kernel)
    vng = vng_binary()
    bare = [vng, "--run", str(kernel.image)] + (["--disable-kvm"] if accel == "tcg" else []) + ["--", "true"]
    lean = vng_argv(GuestRequest(kernel=kernel, command=("true",), accel=accel), vng)
    spec = specs.load("ext4_inline")
    t_bare, t_lean, t_one = [], [], []
    tth: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        # warm the caches (image, compiled binary) so every round measures the same work
        run_repro(spec, kernel, RunOptions(runs=1, results=cwd / "warm"), accel=Accel(accel))
        for _ in range(rounds):
            t_bare.append(_time(bare, cwd))
            t_lean.append(_time(lean, cwd))
            start = time.monotonic()
            s = run_repro(spec, kernel, RunOptions(runs=1, results=cwd / "one"), accel=Accel(accel))
            t_one.append(time.monotonic() - start)
            tth += [r.verdict.time_to_hit for r in s.runs if r.verdict.time_to_hit is not None]
        if runs > 1:
            s = run_repro(spec, kernel, RunOptions(runs=runs, results=cwd / "many"), accel=Accel(accel))
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
    from harness.report.bench import corpus_throughput

    corpus = oops_corpus_dir()
    if not corpus.exists():
        return []
    t = corpus_throughput(corpus)
    return [(f"console parser over the corpus ({t['files']} files, {t['mb']:.1f} MB)", t["seconds"],
             f"{t['mb_per_s']:.1f} MB/s")]


def build_figures(with_vng_kconfig: bool) -> list[tuple[str, float, str]]:
    """Cold lean build (empty ccache), one-file fs/ rebuild, cache hit, and vng's default config."""
    from harness.kernels.build import bench_figures

    def _show(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    f = bench_figures(vng_kconfig=with_vng_kconfig, progress=_show)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="harness.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--kernel", default="debian:6.1")
    ap.add_argument("--runs", type=int, default=3, help="extra runs for the time-to-first-hit median")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the side-by-side boots")
    ap.add_argument("--quick", action="store_true", help="no guests, no builds")
    ap.add_argument("--ssh-runs", type=int, default=0, metavar="N", help="also vng vs the long-lived backends (vng-ssh, snapshot) over N runs of ext4_inline and of a run that never crashes")
    ap.add_argument("--build", action="store_true", help="also kernel build figures (minutes)")
    ap.add_argument("--vng-kconfig", action="store_true", help="with --build: also vng's default config (~25 min)")
    ap.add_argument("--no-boots", action="store_true", help="skip the boot figures (e.g. for build figures alone)")
    args = ap.parse_args(argv)
    rows = parser_figures()
    if not args.quick:
        if not args.no_boots:
            rows += boot_figures(args.kernel, args.rounds, args.runs)
        if args.ssh_runs:
            from harness.guest.session import bench as ssh_bench

            rows += ssh_bench(args.kernel, args.ssh_runs)
        if args.build:
            rows += build_figures(args.vng_kconfig)
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement':<{width}}  {'seconds':>8}  ratio")
    for label, seconds, ratio in rows:
        print(f"{label:<{width}}  {seconds:8.2f}  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
