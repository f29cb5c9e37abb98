"""Saved guests under stress (the snapshot backend's store, ``harness/guest/snapshot/store.py``).

- a saved guest's state file truncated in the cache: detected by the size and
  sha256 recorded when it was saved, booted and saved again, never restored;
- a QEMU whose ``--version`` is not the one that saved the guest (a wrapper
  on PATH that reports another version and runs the real QEMU): the old
  entry is dropped, a new boot is saved, never a restore across versions;
- two harnesses started together on one cache that has no saved guest: one
  boots and saves, the other waits and restores it; both CLEAN.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tools.chaos.sandbox import BASE_PATH, ChaosError, Harness, run_dirs
from tools.chaos.storage import _pair, truncate
from tools.chaos.suite import Context, Row, check, fault

SNAPSHOT = ["--accel", "tcg", "--backend", "snapshot"]
SAVED = "to save a post-boot snapshot"
OTHER_QEMU = "QEMU emulator version 99.9.9 (chaos: not the QEMU that saved the guests)"


def _saves(*hs: Harness) -> int:
    return sum(h.stderr().count(SAVED) for h in hs)


def _clean(h: Harness, results: Path) -> list[str]:
    records = [json.loads((d / "result.json").read_text()) for d in run_dirs(results) if (d / "result.json").exists()]
    verdicts = [r.get("verdict") for r in records]
    if h.popen.returncode == 0 and verdicts and all(v == "CLEAN" for v in verdicts):
        return []
    return [f"{h.tag}: exit {h.popen.returncode}, verdicts {verdicts}: {h.last_line()[:120]}"]


def _states(cache: Path) -> list[Path]:
    return sorted((cache / "snapshots").glob("*/boot-*/state"))


def _run(ctx: Context, cache: Path, label: str, **env: str) -> tuple[Harness, Path]:
    results = ctx.box.folder(f"results-{label}")
    h = ctx.box.run(["repro", "chaos_small", "-k", ctx.kernel, *SNAPSHOT], cache=cache, results=results,
                    label=label, timeout=1800, **env)
    return h, results


def _other_qemu(ctx: Context) -> dict[str, str]:
    """PATH with a ``qemu-system-x86_64`` that says another version and runs the real one."""
    real = shutil.which("qemu-system-x86_64")
    if real is None:
        raise ChaosError("qemu-system-x86_64 missing: run `harness setup`")
    bindir = ctx.box.folder("qemu-other-version")
    wrapper = bindir / "qemu-system-x86_64"
    wrapper.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo "{OTHER_QEMU}"; exit 0; fi\n'
                       f'exec {real} "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": f"{bindir}:{BASE_PATH}"}


@fault("saved guests: truncated, another QEMU, two harnesses on one", "corrupt")
def saved_guests(ctx: Context) -> list[Row]:
    cache = ctx.box.warm_cache("cache-saved")
    first, results = _run(ctx, cache, "saved-first")
    if _clean(first, results) or not _states(cache):
        raise ChaosError(f"the first snapshot run saved no guest: {first.last_line()[:160]}")
    rows = []

    truncate(_states(cache)[0])
    h, results = _run(ctx, cache, "saved-truncated")
    problems = _clean(h, results)
    problems += [] if h.said(r"saved guest .* is damaged") else ["no line said the saved guest was damaged"]
    problems += [] if _saves(h) >= 1 else ["the truncated guest was restored (no new boot was saved)"]
    seen, held = check(problems)
    rows.append(Row("damaged saved guest", "its state file truncated", "detected, booted and saved again, "
                    "never restored", "booted again, run CLEAN" if held else seen, held))

    h, results = _run(ctx, cache, "saved-other-qemu", **_other_qemu(ctx))
    problems = _clean(h, results)
    problems += [] if _saves(h) >= 1 else ["a guest saved by another QEMU version was restored"]
    seen, held = check(problems)
    rows.append(Row("damaged saved guest", "QEMU's version changed", "the old entry dropped, a new boot saved",
                    "booted again, run CLEAN" if held else seen, held))

    shared = ctx.box.warm_cache("cache-saved-pair")
    hs = _pair(ctx, ["repro", "chaos_small", "-k", ctx.kernel, *SNAPSHOT], shared, "saved-pair")
    problems = [p for h in hs for p in _clean(h, ctx.box.folder("results-saved-pair"))][:1]
    n = _saves(*hs)
    problems += [] if n == 1 else [f"{n} boots saved between them (one wanted: the other waits and restores it)"]
    seen, held = check(problems)
    rows.append(Row("two harnesses, one cache", "one saved guest, made by neither yet", "one boots and saves, the "
                    "other waits and restores it, both CLEAN", "saved once, both CLEAN" if held else seen, held))
    return rows
