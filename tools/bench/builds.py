"""Kernel build figures for the bench: a cold lean build, a one-file rebuild, a cache hit, vng's own config.

Moved out of ``harness.kernels.build`` (the product): the bench drives the
build machinery from outside, in a cache layout of its own.
"""

from __future__ import annotations

import difflib
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from filelock import FileLock

from harness import proc
from harness.kernels import patches as patchlib
from harness.kernels.build import (
    BuildFailed,
    Layout,
    Progress,
    Variant,
    _children_cpu,
    _env,
    _source,
    _Watcher,
    build,
    compiler_version,
)
from harness.kernels.kernel import split_name
from harness.kernels.patches import PatchOp
from harness.paths import cache_dir


def _one_line_patch(pristine: Path, rel: str, dest: Path) -> Path:
    """A patch adding a comment at the top of ``rel`` (an fs/ change that recompiles one file)."""
    old = (pristine / rel).read_text().splitlines(keepends=True)
    new = ["/* harness bench: incremental rebuild */\n", *old]
    dest.write_text("".join(difflib.unified_diff(old, new, f"a/{rel}", f"b/{rel}")))
    return dest


def _timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return round(time.monotonic() - start, 1), result


def bench_figures(
    source: str = "debian-src:6.1.192",
    *,
    touch: str = "fs/ext4/inline.c",
    vng_kconfig: bool = False,
    progress: Progress = None,
    keep: bool = False,
) -> dict:
    """Cold lean build, one-file incremental rebuild, cache hit (and vng --kconfig build).

    Cold = empty ccache and a fresh ``O=`` (the unpacked source is reused).
    Runs in its own cache layout, removed afterwards unless ``keep``.
    """
    layout = Layout(cache_dir("kernels", "bench"))
    shutil.rmtree(layout.root, ignore_errors=True)
    layout.root.mkdir(parents=True)
    try:
        base = Variant(source=source)
        cold, kernel = _timed(build, base, progress=progress, layout=layout)
        tree = _source(split_name(source)[0]).tree(split_name(source)[1])
        patch = _one_line_patch(tree.pristine, touch, layout.root / "one-file.patch")
        patched = replace(base, name="bench-incremental", patches=(PatchOp(patch),))
        incremental, pk = _timed(build, patched, progress=progress, layout=layout)
        hit, _ = _timed(build, base, progress=progress, layout=layout)
        figures = {
            "source": source,
            "fragments": list(base.fragments),
            "cpus": os.cpu_count(),
            "compiler": compiler_version(),
            "cold_build_s": cold,
            "cold_make_cpu_s": kernel.extra["build_cpu_seconds"],
            "cold_objects": kernel.extra["objects"],
            "incremental_s": incremental,
            "incremental_make_cpu_s": pk.extra["build_cpu_seconds"],
            "incremental_objects": pk.extra["objects"],
            "cache_hit_s": hit,
            "bzImage_bytes": kernel.image.stat().st_size,
        }
        if vng_kconfig:
            cpu = _children_cpu()
            figures["vng_kconfig_build_s"], figures["vng_kconfig_objects"] = _vng_kconfig_build(tree, layout, progress)
            figures["vng_kconfig_make_cpu_s"] = round(_children_cpu() - cpu, 1)
            figures["lean_vs_vng_ratio"] = round(cold / figures["vng_kconfig_build_s"], 3)
        return figures
    finally:
        if not keep:
            shutil.rmtree(layout.root, ignore_errors=True)


def _vng_kconfig_build(tree, layout: Layout, progress: Progress) -> tuple[float, int]:
    """Full build of virtme-ng's ``vng --kconfig`` config (defconfig + its options), cold ccache."""
    work = layout.work / tree.slot
    src = work / "src"  # the bench's work tree: pristine content at this point
    out = layout.root / "vng-kconfig"
    ccache = layout.root / "vng-ccache"
    env = {**_env(layout), "CCACHE_DIR": str(ccache)}
    out.mkdir(parents=True, exist_ok=True)
    log_path = layout.root / "vng-kconfig.log"
    with FileLock(str(work) + ".lock"):
        patchlib.sync(src, tree.pristine, (), work / "src.state.json", log_path=log_path)
        start = time.monotonic()
        # what `vng --kconfig` runs (x86_64_defconfig + virtme-ng's options), then what `vng -b` runs
        proc.run(["virtme-configkernel", "--defconfig", f"O={out}"], cwd=src, env=env, log_path=log_path)
        watcher = _Watcher(progress, "vng --kconfig build")
        done = proc.run(
            ["make", f"O={out}", "CC=ccache gcc", "LOCALVERSION=-virtme", f"-j{os.cpu_count() or 1}"],
            cwd=src,
            env=env,
            log_path=log_path,
            on_line=watcher,
            check=False,
        )
        if not done.ok:
            raise BuildFailed("vng --kconfig build", watcher.errors, log_path)
        return round(time.monotonic() - start, 1), watcher.objects
