"""The harness installed from its wheel works from any directory: reproducers, image recipes, kconfig fragments and
templates are package data, and a user's own reproducers ($HARNESS_REPRODUCERS, ./reproducers) sit beside them.

The wheel is built from a copy of the checkout (no build isolation: no index is asked) and installed with
``pip --no-deps --no-index`` into a fresh venv outside the checkout; its dependencies come from the venv running
the tests (a .pth line naming its site-packages, so nothing is downloaded).  Every command runs in an empty
directory with the checkout nowhere on the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA_FOLDERS = ("reproducers", "images", "kconfigs")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the venv, the wheel) with the harness installed from its wheel."""
    base = tmp_path_factory.mktemp("installed")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("harness", *DATA_FOLDERS):  # harness/_data's symlinks point at the top-level folders
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src), "-w", str(base)])
    (wheel,) = base.glob("*.whl")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
         "--no-index", str(wheel)])
    site = Path(run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]))
    deps = dict.fromkeys((sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]))
    (site / "zz_harness_test_deps.pth").write_text("".join(f"{p}\n" for p in deps))  # after the wheel's own
    return venv, wheel


def run(argv: list[str], **kw) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)
    assert done.returncode == 0, f"{argv}: {done.stdout}{done.stderr}"
    return done.stdout.strip()


def env_of(venv: Path, cache: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"HARNESS_REPRODUCERS", "HARNESS_IMAGES", "HARNESS_KCONFIGS", "PYTHONPATH", "VIRTUAL_ENV"}}
    # the wheel's venv first; then the test venv's bin: the dependencies' commands (vng, b4) come with their code
    env["PATH"] = os.pathsep.join((str(venv / "bin"), str(Path(sys.executable).parent), env.get("PATH", "")))
    if cache is not None:
        env["HARNESS_CACHE"] = str(cache)
    return {**env, **extra}


def harness(venv: Path, cwd: Path, *args: str, cache: Path | None, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "harness"), *args], capture_output=True, text=True, cwd=cwd,
                          env=env_of(venv, cache, **extra), timeout=1800)


def look(venv: Path, cwd: Path, cache: Path, **extra: str) -> dict:
    """What the installed harness finds, asked through its own modules."""
    script = textwrap.dedent("""
        import json, harness
        from harness import images, paths
        from harness.fstests import subsets
        from harness.guest import protocol
        from harness.kernels import kconfig
        from harness.repro import spec
        debug = spec.load("ext4_inline/debug")
        print(json.dumps({
            "harness": harness.__file__, "checkout": str(paths.checkout()),
            "available": spec.available(), "ext4_inline": str(spec.load("ext4_inline").folder),
            "fragments": kconfig.available(), "lean": str(kconfig.fragment_path("lean")),
            "debug_fragments": [str(kconfig.fragment_path(f)) for v in debug.variants for f in v.kconfig],
            "recipe": str(images.load_recipe("ext4-inline-fullbitmap").source),
            "templates": sorted(p.name for p in protocol.TEMPLATES.iterdir()),
            "subsets": subsets.names(), "new_goes_to": str(paths.reproducers_dir()),
            "builtin": str(paths.builtin_dir("reproducers")),
        }))
    """)
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, cwd=cwd,
                          env=env_of(venv, cache, **extra), timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def user_reproducer(root: Path, name: str, summary: str = "mine") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "repro.c").write_text("int main(void) { return 0; }\n")
    (folder / "repro.yaml").write_text(f"summary: {summary}\nsource: repro.c\nimage: none\n")
    return folder


def test_the_wheel_carries_the_data_folders_whole(installed):
    _, wheel = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in DATA_FOLDERS:
        shipped = {f"harness/_data/{p.relative_to(ROOT).as_posix()}" for p in (ROOT / folder).rglob("*") if p.is_file()}
        assert shipped and shipped <= names, sorted(shipped - names)
    assert not [n for n in names if n.startswith(DATA_FOLDERS)]  # inside the package, not beside it


def test_from_an_empty_directory_the_installed_harness_finds_its_data(installed, tmp_path):
    venv, _ = installed
    empty = tmp_path / "empty"
    empty.mkdir()
    found = look(venv, empty, tmp_path / "cache")
    site = str(venv)
    assert found["harness"].startswith(site) and found["checkout"] == "None", found
    assert {"ext4_inline", "xfs_mkwrite_delalloc", "ext2_iomap_blkseq"} <= set(found["available"])
    for key in ("ext4_inline", "lean", "recipe", *found["debug_fragments"]):
        path = found.get(key, key)
        assert path.startswith(site) and "/harness/_data/" in path, (key, path)
    assert found["debug_fragments"] and {"lean", "filesystems", "debug", "faults"} <= set(found["fragments"])
    assert "steps.sh" in found["templates"] and "tcg20" in found["subsets"]
    assert found["new_goes_to"] == str(empty / "reproducers")  # never into the installed package
    assert found["builtin"] == str(Path(found["ext4_inline"]).parent)
    assert not empty.exists() or not any(empty.iterdir())


def test_the_installed_command_loads_specs_and_lists_patches(installed, tmp_path):
    venv, _ = installed
    empty = tmp_path / "empty"
    empty.mkdir()
    done = harness(venv, empty, "patches", "xfs_mkwrite_delalloc", cache=tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert "0001-xfs-restore-pre-6.1.92-delalloc-punch-on-write-failure.patch" in done.stdout
    assert "kconfig=lean+filesystems" in done.stdout
    done = harness(venv, empty, "repro", "ext4_inline", "--help", cache=tmp_path / "cache")
    assert done.returncode == 0 and "reproducer" in done.stdout


def test_a_users_reproducers_beside_the_built_in_ones(installed, tmp_path):
    venv, _ = installed
    work = tmp_path / "work"
    user_reproducer(work / "reproducers", "mine")
    user_reproducer(work / "reproducers", "ext4_inline", summary="my own ext4_inline")  # shadows the built-in one
    elsewhere = tmp_path / "elsewhere"
    user_reproducer(elsewhere, "theirs")
    found = look(venv, work, tmp_path / "cache", HARNESS_REPRODUCERS=str(elsewhere))
    assert {"mine", "theirs", "ext4_inline", "xfs_mkwrite_delalloc"} <= set(found["available"])
    assert found["ext4_inline"] == str(work / "reproducers" / "ext4_inline")  # ./reproducers before the package's
    assert found["new_goes_to"] == str(elsewhere)
    done = harness(venv, work, "repro", "no-such-repro", cache=tmp_path / "cache", HARNESS_REPRODUCERS=str(elsewhere))
    assert done.returncode == 4, done.stderr
    listed = done.stderr.split("Available:", 1)[1]
    assert all(name in listed for name in ("mine", "theirs", "ext4_inline", "xfs_mkwrite_delalloc")), done.stderr


@pytest.mark.vm
def test_the_installed_harness_reproduces_ext4_inline_from_an_empty_directory(vm, installed, tmp_path):
    """README command one through the wheel: REPRODUCED, with the spec, image recipe and templates from the package."""
    venv, _ = installed
    empty = tmp_path / "empty"
    empty.mkdir()
    package = sorted(p for p in venv.rglob("harness/_data/**/*"))
    done = harness(venv, empty, "repro", "ext4_inline", "--json", "--results", str(tmp_path / "results"), cache=None)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["verdict"] == "REPRODUCED" and result["hits"] == 1, result
    assert result["title"].startswith("kernel BUG in ext4_")
    (run_,) = result["results"]
    assert "kernel BUG at fs/ext4/inline.c" in (Path(run_["folder"]) / "console.log").read_text()
    assert not any(empty.iterdir())  # nothing written where it ran
    assert sorted(p for p in venv.rglob("harness/_data/**/*")) == package  # nor into the installed package
