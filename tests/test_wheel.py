"""The wheel holds the product only: ``harness`` and its templates, not the test tools (tools/chaos, tools/bench).

Built from a copy of the checkout (setuptools writes build/ and *.egg-info
next to the sources), without build isolation, so no index is asked (~5 s).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(tmp_path: Path) -> list[str]:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("harness", "tools"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           str(src), "-w", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "out").glob("*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_wheel_ships_the_product_only(tmp_path: Path) -> None:
    names = build_wheel(tmp_path)
    top = {n.split("/")[0] for n in names}
    assert top == {"harness", "kernel_repro_harness-0.1.0.dist-info"}, top
    assert not [n for n in names if "chaos" in n or "bench" in n]
    # and the product whole: its command, its guest templates, its fstests subsets
    assert {"harness/cli/__init__.py", "harness/guest/templates/steps.sh", "harness/fstests/subsets/tcg20.txt"} <= set(names)
    templates = {p.relative_to(ROOT).as_posix() for p in (ROOT / "harness").rglob("templates/*") if p.is_file()}
    assert templates and templates <= set(names), templates - set(names)
