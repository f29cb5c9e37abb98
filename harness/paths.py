"""Where the harness keeps its caches and results."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def cache_dir(*parts: str) -> Path:
    """The cache root (``$HARNESS_CACHE`` or the platform's user cache dir)."""
    root = os.environ.get("HARNESS_CACHE") or platformdirs.user_cache_dir("kernel-repro-harness")
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    """Where run folders go (``$HARNESS_RESULTS`` or ./results)."""
    return Path(os.environ.get("HARNESS_RESULTS") or Path.cwd() / "results")


def reproducers_dir() -> Path:
    return Path(os.environ.get("HARNESS_REPRODUCERS") or PROJECT_ROOT / "reproducers")


def images_dir() -> Path:
    return Path(os.environ.get("HARNESS_IMAGES") or PROJECT_ROOT / "images")


def kconfigs_dir() -> Path:
    return Path(os.environ.get("HARNESS_KCONFIGS") or PROJECT_ROOT / "kconfigs")


FSTESTS_FETCHED = "fstests-src"  # the cache folder `harness setup --fstests` fetches into (harness.fstests.fetch)


def fetched_fstests() -> Path | None:
    """The fstests tree ``harness setup --fstests`` fetched (the cache's ``current`` link), or None."""
    link = cache_dir(FSTESTS_FETCHED) / "current"
    return link if link.exists() else None


def oops_corpus_dir() -> Path:
    """The syzkaller console-log corpus (``$HARNESS_OOPS_CORPUS``, or ../shared beside the project)."""
    return Path(os.environ.get("HARNESS_OOPS_CORPUS") or PROJECT_ROOT.parent / "shared" / "oops-corpus" / "syzkaller")
