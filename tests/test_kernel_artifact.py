"""A cache entry carried between machines (`harness kernel export` / `import`): sums checked, recipe found again."""

from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

import pytest
from test_build import fake  # noqa: F401  (the fixture: a fake tree behind debian-src, fake make)

from harness.errors import HarnessError, KernelError
from harness.kernels import artifact, integrity
from harness.kernels import build as kbuild
from harness.kernels.build import Layout, Variant
from harness.kernels.kernel import Kernel


def _members(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def test_export_then_import_elsewhere_finds_the_recipe_without_its_tree(fake, tmp_path):  # noqa: F811
    layout, _, _ = fake
    variant = Variant("debian-src:6.1.999", "mine", (), ("lean", "filesystems"))
    built = kbuild.build(variant, layout=layout)
    tar = tmp_path / "k.tar"
    header = artifact.export(built, tar)
    assert (header.kind, header.name, header.key) == ("build", "debian-src:6.1.999/mine", built.extra["key"])
    assert header.recipe == artifact.variant_recipe(variant) and header.compiler == "gcc (fake) 12"
    names = _members(tar)
    assert names[0] == artifact.HEADER
    assert {"entry/bzImage", "entry/vmlinux", "entry/meta.json", "entry/.sha256", "entry/.complete"} <= set(names)
    assert "entry/.last_used" not in names  # this machine's state stays here

    other = Layout(tmp_path / "other")
    assert artifact.find_recipe(variant, other) == (None, "no imported kernel of that recipe")
    done = artifact.import_(tar, other)
    assert done.installed and done.path == other.built / built.extra["key"]
    kernel, why = artifact.find_recipe(variant, other)
    assert why == f"imported {built.extra['key']}"
    assert kernel.image.read_bytes() == built.image.read_bytes() and kernel.image.parent == done.path
    assert kernel.name == "debian-src:6.1.999/mine" and kernel.release == built.release
    # the same recipe under another name (a plain source, another spec's variant of the same stack) finds it too
    assert artifact.find_recipe(Variant("debian-src:6.1.999", "x", (), ("lean", "filesystems")), other)[0]
    # ... and another recipe does not
    assert artifact.find_recipe(Variant("debian-src:6.1.999"), other)[0] is None
    assert not artifact.import_(tar, other).installed  # a second import: the cache holds it already


def test_a_damaged_artifact_is_refused_and_installs_nothing(fake, tmp_path):  # noqa: F811
    layout, _, _ = fake
    built = kbuild.build(Variant("debian-src:6.1.999"), layout=layout)
    good, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    artifact.export(built, good)
    with tarfile.open(good) as src, tarfile.open(bad, "w") as dst:  # the bzImage's bytes changed in transit
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name == "entry/bzImage":
                data = b"X" + data[1:]
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    other = Layout(tmp_path / "other")
    with pytest.raises(HarnessError, match=r"bad.tar: damaged kernel artifact \(bzImage: checksum mismatch\)"):
        artifact.import_(bad, other)
    assert not any(other.built.iterdir()) and not (other.root / artifact.RECIPES).exists()


def test_a_kernel_built_by_another_compiler_is_not_taken(fake, tmp_path, monkeypatch):  # noqa: F811
    layout, _, _ = fake
    variant = Variant("debian-src:6.1.999")
    artifact.export(kbuild.build(variant, layout=layout), tmp_path / "k.tar")
    other = Layout(tmp_path / "other")
    artifact.import_(tmp_path / "k.tar", other)
    monkeypatch.setattr(kbuild, "compiler_version", lambda cc="gcc": "gcc (other) 14")
    kernel, why = artifact.find_recipe(variant, other)
    assert kernel is None and why == "it was built by 'gcc (fake) 12', this machine has 'gcc (other) 14'"


def test_recipe_id_follows_patches_and_fragment_text(fake, tmp_path):  # noqa: F811
    _, _, tmp = fake
    a = artifact.recipe_id("debian-src:6.1.999", "", ("lean",))
    assert a == artifact.recipe_id("debian-src:6.1.999", "", ("lean",))
    assert a != artifact.recipe_id("debian-src:6.1.999", "ab", ("lean",))
    assert a != artifact.recipe_id("debian-src:6.1.192", "", ("lean",))
    (tmp / "kconfigs" / "lean.config").write_text("CONFIG_64BIT=y\nCONFIG_EXT4_FS=y\n")
    assert a != artifact.recipe_id("debian-src:6.1.999", "", ("lean",))


def _debian_unpack(root: Path) -> Kernel:
    boot = root / "boot"
    (root / "lib/modules/6.1.0-9-amd64/kernel").mkdir(parents=True)
    boot.mkdir()
    (boot / "vmlinuz-6.1.0-9-amd64").write_bytes(b"bz" * 100)
    (root / "lib/modules/6.1.0-9-amd64/kernel/ext4.ko").write_bytes(b"ko")
    integrity.Manifest(root).record([boot / "vmlinuz-6.1.0-9-amd64"], [root / "lib/modules/6.1.0-9-amd64/kernel/ext4.ko"])
    (root / ".complete").write_text("linux-image-6.1.0-9-amd64\n")
    return Kernel("debian:6.1.0-9", "6.1.0-9-amd64", "6.1.99", boot / "vmlinuz-6.1.0-9-amd64", root=root, kind="debian")


def test_a_debian_image_goes_where_the_debian_source_looks_first(tmp_path, monkeypatch):
    kernel = _debian_unpack(tmp_path / "there" / "6.1.0-9")
    header = artifact.export(kernel, tmp_path / "d.tar")
    assert (header.kind, header.key, header.recipe) == ("debian", "6.1.0-9", None)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "here"))
    done = artifact.import_(tmp_path / "d.tar")
    assert done.path == tmp_path / "here" / "kernels" / "debian" / "6.1.0-9"
    assert (done.path / "lib/modules/6.1.0-9-amd64/kernel/ext4.ko").read_bytes() == b"ko"
    assert integrity.Manifest(done.path).problems() == []


def test_export_refuses_a_damaged_entry_and_import_a_stranger(tmp_path):
    kernel = _debian_unpack(tmp_path / "6.1.0-9")
    (tmp_path / "6.1.0-9/boot/vmlinuz-6.1.0-9-amd64").write_bytes(b"short")
    with pytest.raises(KernelError, match=r"its cache entry is damaged \(boot/vmlinuz-6.1.0-9-amd64: checksum mismatch\)"):
        artifact.export(kernel, tmp_path / "d.tar")
    with tarfile.open(tmp_path / "stranger.tar", "w") as tar:
        tar.add(tmp_path / "6.1.0-9" / ".complete", "README")
    with pytest.raises(HarnessError, match="stranger.tar: not a readable kernel artifact"):
        artifact.import_(tmp_path / "stranger.tar")
    (tmp_path / "junk.tar").write_text("junk")
    with pytest.raises(HarnessError, match="junk.tar: not a readable kernel artifact"):
        artifact.import_(tmp_path / "junk.tar")


def test_cli_export_and_import(fake, tmp_path, capsys, monkeypatch):  # noqa: F811
    from harness.cli import kernel as kernel_cli  # the whole CLI: only this test needs it

    layout, _, _ = fake
    monkeypatch.setattr(Layout, "default", classmethod(lambda cls: layout))
    built = kbuild.build(Variant("debian-src:6.1.999"), layout=layout)
    p = argparse.ArgumentParser()
    kernel_cli.add_parsers(p.add_subparsers(dest="command"))
    args = p.parse_args(["kernel", "export", built.extra["key"], str(tmp_path / "k.tar")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"debian-src:6.1.999\t{built.extra['key']}\t{tmp_path / 'k.tar'} (")
    args = p.parse_args(["kernel", "import", str(tmp_path / "k.tar")])
    assert args.func(args) == 0
    assert "\talready in the cache, sums checked\t" in capsys.readouterr().out
    args = p.parse_args(["kernel", "export", "0" * 24, str(tmp_path / "x.tar")])
    with pytest.raises(HarnessError, match="no cached kernel with key 0{24}"):
        args.func(args)
