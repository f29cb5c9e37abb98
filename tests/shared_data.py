"""Test data from outside the project: each set named by an environment variable, ``../shared/...`` the default.

CI lays ``../shared/`` beside the clone; a developer's clone has nothing beside it.  A test
that needs a set carries ``@pytest.mark.needs_data("NAME")`` (or ``SETS[NAME].mark``): when
the set is absent it is skipped with a reason that says where to get the set (in CI, where
the set must be there, it fails instead).  A parametrization over a set's files uses
``SETS[NAME].params(values)``: over an absent set it yields one skipped test, never none.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.paths import oops_corpus_dir

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
XFSTESTS = "https://git.kernel.org/pub/scm/fs/xfs/xfstests-dev.git"


@dataclass(frozen=True)
class DataSet:
    name: str
    env: str
    default: Path
    what: str
    where: str  # how to get it
    present: Callable[[Path], bool] = Path.is_dir

    @property
    def path(self) -> Path:
        return Path(os.environ.get(self.env) or self.default)

    def here(self) -> bool:
        return self.present(self.path)

    def reason(self) -> str:
        return f"{self.what}: none at {self.path}; set ${self.env} to {self.where}"

    @property
    def mark(self) -> pytest.MarkDecorator:
        return pytest.mark.needs_data(self.name)

    def params(self, values: Sequence, ids: Sequence[str] | None = None) -> list:
        """``values`` as parameters, or one placeholder (skipped with the reason) when there are none."""
        if values:
            return [pytest.param(v, id=i) for v, i in zip(values, ids or [str(v) for v in values])]
        return [pytest.param(None, id=f"no-{self.name}", marks=self.mark)]


def fstests_tarball(path: Path) -> Path | None:
    """The fstests snapshot at ``path``: the tarball itself, or the newest ``fstests-*.tar.gz`` in the folder."""
    if path.is_file() and tarfile.is_tarfile(path):
        return path
    found = sorted(path.glob("fstests-*.tar.gz")) if path.is_dir() else []
    return found[-1] if found else None


def fstests_tree(path: Path) -> Path | None:
    """What a test hands to ``--fstests``: the snapshot tarball, or ``path`` when it is an fstests checkout."""
    if path.is_dir() and (path / "check").is_file() and (path / "common" / "rc").is_file():
        return path
    return fstests_tarball(path)


SETS: dict[str, DataSet] = {d.name: d for d in (
    DataSet("oops-corpus", "HARNESS_OOPS_CORPUS", oops_corpus_dir(), "the syzkaller console-log corpus",
            "a copy of pkg/report/testdata/linux/report/ of https://github.com/google/syzkaller (commit 1e72964b)",
            present=lambda p: p.is_dir() and any(p.iterdir())),
    DataSet("syzkaller-repros", "HARNESS_SYZ_REPROS", SHARED / "syzkaller-repros",
            "the published syzkaller reproducers",
            "a folder of the C files tests/test_syzkaller.py's INDEX names (each from its syzbot or lore link)",
            present=lambda p: p.is_dir() and any(p.glob("*.c"))),
    DataSet("fstests", "HARNESS_FSTESTS", SHARED / "fstests", "the fstests snapshot",
            f"an fstests checkout, or a folder holding fstests-COMMIT.tar.gz (`git archive --format=tar.gz "
            f"--prefix=fstests/ v2026.01.05` in a clone of {XFSTESTS})",
            present=lambda p: fstests_tree(p) is not None),
)}


def require(name: str) -> Path:
    """The set's path, or skip (fail in CI) with the reason: for fixtures and test bodies."""
    data = SETS[name]
    if not data.here():
        if os.environ.get("CI"):
            pytest.fail(data.reason() + " (CI lays ../shared/ beside the clone)")
        pytest.skip(data.reason())
    return data.path
