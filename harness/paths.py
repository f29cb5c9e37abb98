"""Where the harness keeps its caches and results, and where it finds reproducers, image recipes and kconfig fragments.

Reproducers, images and kconfigs are each looked for in a search path, first match wins:
``$HARNESS_REPRODUCERS`` (``$HARNESS_IMAGES``, ``$HARNESS_KCONFIGS``: one folder or several,
``os.pathsep``-separated), then ``./reproducers`` in the current directory, then the
checkout's (when the harness runs from one), then the package's own copy
(``harness/_data/``: symlinks to the checkout's top-level folders, real files in a wheel),
so an installed ``harness`` works from any directory and a user's own reproducers sit
beside the built-in ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PACKAGE = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE.parent
PACKAGE_DATA = PACKAGE / "_data"
# Each kind of data and the variable that names a user's own folders of it.
DATA_ENV = {"reproducers": "HARNESS_REPRODUCERS", "images": "HARNESS_IMAGES", "kconfigs": "HARNESS_KCONFIGS"}


def cache_dir(*parts: str) -> Path:
    """The cache root (``$HARNESS_CACHE`` or the platform's user cache dir)."""
    root = os.environ.get("HARNESS_CACHE") or platformdirs.user_cache_dir("kernel-repro-harness")
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    """Where run folders go (``$HARNESS_RESULTS`` or ./results)."""
    return Path(os.environ.get("HARNESS_RESULTS") or Path.cwd() / "results")


def checkout() -> Path | None:
    """The source checkout the harness runs from, or None (installed from a wheel)."""
    return PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").is_file() else None


def _named(kind: str) -> list[Path]:
    return [Path(p).expanduser() for p in os.environ.get(DATA_ENV[kind], "").split(os.pathsep) if p]


def _cwd() -> Path | None:
    try:
        return Path.cwd()
    except FileNotFoundError:  # the current directory was removed
        return None


def data_dirs(kind: str) -> list[Path]:
    """The existing folders ``kind`` (reproducers, images, kconfigs) is looked for in, first first, each once."""
    here, top = _cwd(), checkout()
    candidates = [*_named(kind), *([here / kind] if here else []), *([top / kind] if top else []), PACKAGE_DATA / kind]
    found: list[Path] = []
    seen: set[Path] = set()
    for folder in candidates:
        if folder.is_dir() and folder.resolve() not in seen:
            seen.add(folder.resolve())
            found.append(folder)
    return found


def data_file(kind: str, rel: str) -> Path | None:
    """The first ``FOLDER/rel`` of ``kind``'s search path that exists, or None."""
    return next((folder / rel for folder in data_dirs(kind) if (folder / rel).exists()), None)


def data_files(kind: str, pattern: str) -> list[Path]:
    """What ``pattern`` matches in ``kind``'s search path; of two with the same relative path, the first."""
    found: dict[str, Path] = {}
    for folder in data_dirs(kind):
        for path in sorted(folder.glob(pattern)):
            found.setdefault(path.relative_to(folder).as_posix(), path)
    return [found[rel] for rel in sorted(found)]


def builtin_dir(kind: str) -> Path:
    """The shipped ``kind`` folder: the checkout's when the harness runs from one, else the installed copy."""
    top = checkout()
    return top / kind if top and (top / kind).is_dir() else PACKAGE_DATA / kind


def reproducers_dir() -> Path:
    """The user's own reproducers folder, where ``harness new`` writes: the first of ``$HARNESS_REPRODUCERS``,
    else ./reproducers (in a checkout run from its top: the checkout's)."""
    named = _named("reproducers")
    return named[0] if named else (_cwd() or PROJECT_ROOT) / "reproducers"


FSTESTS_FETCHED = "fstests-src"  # the cache folder `harness setup --fstests` fetches into (harness.fstests.fetch)


def fetched_fstests() -> Path | None:
    """The fstests tree ``harness setup --fstests`` fetched (the cache's ``current`` link), or None."""
    link = cache_dir(FSTESTS_FETCHED) / "current"
    return link if link.exists() else None


def oops_corpus_dir() -> Path:
    """The syzkaller console-log corpus (``$HARNESS_OOPS_CORPUS``, or ../shared beside the project)."""
    return Path(os.environ.get("HARNESS_OOPS_CORPUS") or PROJECT_ROOT.parent / "shared" / "oops-corpus" / "syzkaller")
