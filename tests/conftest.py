"""Shared fixtures: unit tests get private caches; VM tests share the real one."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from shared_data import SETS, require

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_data(name): needs an outside data set (tests/shared_data.py): "
                            "skipped with where to get it when absent")


def pytest_collection_modifyitems(config, items):
    """A test that needs an absent data set is skipped with where to get it (reported at the test's line)."""
    for item in items:
        for mark in item.iter_markers("needs_data"):
            absent = [SETS[name] for name in mark.args if not SETS[name].here()]
            if absent and not os.environ.get("CI"):
                item.add_marker(pytest.mark.skip(reason=absent[0].reason()))


def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs_data"):  # in CI, where the data must be: a failure
        for name in mark.args:
            require(name)


@pytest.fixture(autouse=True)
def _isolated(request, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    if request.node.get_closest_marker("vm") is None:
        monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def vm_ready() -> str | None:
    """Why VM tests cannot run here, or None."""
    for prog in ("qemu-system-x86_64", "vng", "udevadm", "mkfs.ext4"):
        if shutil.which(prog) is None and shutil.which(prog, path=str(Path(sys.executable).parent)) is None:
            return f"{prog} missing (run `harness setup`)"
    return None


@pytest.fixture
def vm():
    why = vm_ready()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"VM test cannot run in CI: {why}")
        pytest.skip(why)


@pytest.fixture
def frozen_reproducers(tmp_path, monkeypatch):
    """A copy of the shipped reproducers whose ext4_inline expects only 6.1 to reproduce.

    Tests of matrix bookkeeping need a kernel with no expectation; the shipped
    spec's expectations follow what was measured and may change.
    """
    root = tmp_path / "frozen-reproducers"
    shutil.copytree(ROOT / "reproducers", root)
    spec = root / "ext4_inline" / "repro.yaml"
    text = spec.read_text()
    start = text.index("  reproduce:")
    spec.write_text(text[:start] + '  reproduce: ["debian:6.1.0-*"]\n')
    monkeypatch.setenv("HARNESS_REPRODUCERS", str(root))
    return root


GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture
def golden():
    """compare(relpath, text): the text must equal tests/golden/RELPATH; HARNESS_GOLDEN=1 rewrites it.

    The tuxrun habit: every generated artefact (guest scripts, command lines)
    has a rendered copy in the tree, so a change to one shows in the diff and
    is reviewed as such."""

    def compare(relpath: str, text: str) -> None:
        path = GOLDEN / relpath
        if os.environ.get("HARNESS_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        assert path.exists(), f"{path} missing: run with HARNESS_GOLDEN=1, then review the file"
        assert text == path.read_text(), f"{path} differs: review, then HARNESS_GOLDEN=1 rewrites it"

    return compare
