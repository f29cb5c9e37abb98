"""harness.paths' search path for reproducers, images and kconfigs: $HARNESS_*, ./KIND, the checkout's, the package's."""

from __future__ import annotations

import os
from pathlib import Path

from harness import paths
from harness.repro import spec

ROOT = Path(__file__).resolve().parent.parent


def reproducer(root: Path, name: str) -> Path:
    (root / name).mkdir(parents=True)
    (root / name / "repro.c").write_text("int main(void) { return 0; }\n")
    (root / name / "repro.yaml").write_text(f"summary: {name} of {root.name}\nsource: repro.c\nimage: none\n")
    return root / name


def test_in_the_checkout_the_package_data_is_the_checkouts_folders():
    assert paths.checkout() == ROOT
    for kind in paths.DATA_ENV:
        assert (paths.PACKAGE_DATA / kind).resolve() == (ROOT / kind).resolve(), kind  # harness/_data's symlinks
        assert paths.builtin_dir(kind) == ROOT / kind


def test_order_env_folders_then_cwd_then_checkout_once_each(tmp_path, monkeypatch):
    one, two, work = tmp_path / "one", tmp_path / "two", tmp_path / "work"
    for folder in (one, two, work / "reproducers"):
        folder.mkdir(parents=True)
    monkeypatch.setenv("HARNESS_REPRODUCERS", f"{one}{os.pathsep}{tmp_path / 'absent'}{os.pathsep}{two}")
    monkeypatch.chdir(work)
    assert paths.data_dirs("reproducers") == [one, two, work / "reproducers", ROOT / "reproducers"]
    assert paths.reproducers_dir() == one  # where `harness new` writes
    monkeypatch.chdir(ROOT)  # ./reproducers is the checkout's: listed once
    monkeypatch.delenv("HARNESS_REPRODUCERS")
    assert paths.data_dirs("reproducers") == [ROOT / "reproducers"]
    assert paths.reproducers_dir() == ROOT / "reproducers"


def test_first_match_wins_and_names_are_listed_once(tmp_path, monkeypatch):
    mine, work = tmp_path / "mine", tmp_path / "work"
    reproducer(mine, "ext4_inline")
    reproducer(mine, "only_mine")
    reproducer(work / "reproducers", "only_here")
    reproducer(work / "reproducers", "only_mine")
    monkeypatch.setenv("HARNESS_REPRODUCERS", str(mine))
    monkeypatch.chdir(work)
    names = spec.available()
    assert len(names) == len(set(names)) and {"ext4_inline", "only_mine", "only_here", "xfs_mkwrite_delalloc"} <= set(names)
    assert spec.load("ext4_inline").folder == (mine / "ext4_inline").resolve()  # shadows the built-in one
    assert spec.load("only_mine").folder == (mine / "only_mine").resolve()  # $HARNESS_REPRODUCERS before ./reproducers
    assert spec.load("only_here").folder == (work / "reproducers" / "only_here").resolve()
    assert spec.load("xfs_mkwrite_delalloc/inject").folder == (ROOT / "reproducers" / "xfs_mkwrite_delalloc" / "inject")
    assert paths.data_file("reproducers", "nope/repro.yaml") is None


def test_images_and_kconfigs_take_a_users_folder_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "mine.yaml").write_text("fs: ext4\nsize: 16M\n")
    (tmp_path / "kconfigs").mkdir()
    (tmp_path / "kconfigs" / "mine.config").write_text("CONFIG_A=y\n")
    assert [p.stem for p in paths.data_files("images", "*.yaml")][:1] == ["ext2-4k"]  # sorted over every folder
    assert {"mine", "ext4-inline-fullbitmap"} <= {p.stem for p in paths.data_files("images", "*.yaml")}
    assert paths.data_file("kconfigs", "mine.config") == tmp_path / "kconfigs" / "mine.config"
    assert paths.data_file("kconfigs", "lean.config") == ROOT / "kconfigs" / "lean.config"
