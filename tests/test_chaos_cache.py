"""Chaos in CI, the cache (issue 18): damaged entries are noticed and made again; two harnesses share one cache.

Every entry kind records its sums when it is made (harness.kernels.integrity);
these tests make real entries through the harness's own code (an image with
mke2fs, a PVH vmlinux unpacked from a bzImage, a kernel stored in the build
cache, a Debian unpack's manifest, a compiled binary), cut the file in half
on disk, and check that the next use makes it again instead of handing it
out.  Then two ``harness image`` processes at once on one empty cache: one
builds, the other waits, both print the same image.  About 5 s.
"""

from __future__ import annotations

import lzma
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_pvh import _bzimage, _elf

from harness import images
from harness.kernels import cache as kcache
from harness.kernels import debian, integrity, pvh
from harness.matrix.spec import load_matrix
from harness.repro.binaries import BinaryCache, sha256_file
from tools.chaos.checks import audit
from tools.chaos.storage import truncate

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "name: chaos-unit\nfs: ext4\nsize: 8M\n"


def _mkfs():
    if shutil.which("mke2fs") is None:
        pytest.skip("mke2fs missing (harness setup installs e2fsprogs)")


def test_a_truncated_image_is_built_again(tmp_path):
    _mkfs()
    recipe = images.parse_recipe({"name": "chaos-unit", "fs": "ext4", "size": "8M"}, "test")
    said: list[str] = []
    first = images.build(recipe, progress=said.append)
    assert integrity.file_problem(first, adopt=False) is None  # recorded when it was made
    truncate(first)
    assert audit(first.parent.parent) == [f"image {first.name}: {first.name}: checksum mismatch"]
    again = images.build(recipe, progress=said.append)
    assert again == first and integrity.file_problem(again, adopt=False) is None
    assert any("is damaged" in s for s in said) and said.count("building image chaos-unit (ext4, 8 MiB)") == 2


def test_a_truncated_pvh_vmlinux_is_unpacked_again(tmp_path):
    elf = _elf([(b"Xen", pvh.XEN_ELFNOTE_PHYS32_ENTRY)]) + b"\0" * 4096
    image = tmp_path / "vmlinuz-6.1.0-99-amd64"
    image.write_bytes(_bzimage(lzma.compress(elf, format=lzma.FORMAT_XZ)))
    out = pvh.ensure_pvh(image)
    assert out.read_bytes() == elf and integrity.sidecar(out).exists()
    truncate(out)
    assert pvh.ensure_pvh(image).read_bytes() == elf  # unpacked again, never handed out cut


def _store_fake_kernel(layout: kcache.Layout, key: str) -> Path:
    builddir = layout.root / "O"
    for name, rel in kcache.ARTIFACTS.items():
        (builddir / rel).parent.mkdir(parents=True, exist_ok=True)
        (builddir / rel).write_bytes(f"{name} of {key}\n".encode() * 1000)
    log = layout.root / "build.log"
    log.write_text("make\n")
    return kcache.store(layout, key, builddir, log, {"key": key, "name": "chaos", "source": "debian-src:6.1.192"})


def test_a_built_kernel_with_a_truncated_bzimage_is_dropped_not_booted(tmp_path):
    layout = kcache.Layout(tmp_path / "kernels")
    entry = _store_fake_kernel(layout, "k" * 24)
    assert kcache.lookup(layout, entry.name) == entry and audit(tmp_path) == []
    truncate(entry / "bzImage")
    assert audit(tmp_path) == [f"built {entry.name}: bzImage: checksum mismatch"]
    assert kcache.lookup(layout, entry.name) is None  # so build() builds it again
    assert not entry.exists() and kcache.find_named("chaos", layout) is None


def test_a_kernel_built_before_sums_were_kept_is_summed_on_first_use(tmp_path):
    layout = kcache.Layout(tmp_path / "kernels")
    entry = _store_fake_kernel(layout, "o" * 24)
    (entry / integrity.MANIFEST).unlink()
    assert kcache.lookup(layout, entry.name) == entry and (entry / integrity.MANIFEST).exists()


def _fake_unpack(dest: Path) -> Path:
    (dest / "boot").mkdir(parents=True)
    (dest / "boot" / "vmlinuz-6.1.0-99-amd64").write_bytes(b"bzImage" * 5000)
    (dest / "boot" / "config-6.1.0-99-amd64").write_text("CONFIG_EXT4_FS=y\n")
    modules = dest / "lib" / "modules" / "6.1.0-99-amd64" / "kernel" / "fs"
    modules.mkdir(parents=True)
    (modules / "ext4.ko").write_bytes(b"\x7fELF" + b"m" * 3000)
    return dest


@pytest.mark.parametrize("victim", ["boot/vmlinuz-6.1.0-99-amd64", "lib/modules/6.1.0-99-amd64/kernel/fs/ext4.ko"])
def test_a_damaged_debian_unpack_is_noticed(tmp_path, victim):
    dest = _fake_unpack(tmp_path / "6.1.0-99")
    debian._record_sums(dest)
    assert debian._damaged(dest) is None
    truncate(dest / victim)
    assert Path(victim).name in debian._damaged(dest)


def test_a_debian_unpack_from_before_manifests_is_recorded_on_first_use(tmp_path):
    dest = _fake_unpack(tmp_path / "6.1.0-99")
    assert debian._damaged(dest) is None and (dest / integrity.MANIFEST).exists()
    (dest / "boot" / "vmlinuz-6.1.0-99-amd64").write_bytes(b"altered")
    assert "checksum mismatch" in debian._damaged(dest)


def test_a_truncated_binary_is_never_reused(tmp_path):
    cache = BinaryCache(tmp_path / "binaries")
    cache.root.mkdir()
    src = tmp_path / "repro.bin"
    src.write_bytes(b"\x7fELF" + b"x" * 10000)
    put = cache.put("chaos", "k1", src, {"compiled_in": "host"})
    assert cache.get("chaos", "k1").meta["sha256"] == sha256_file(put.path)
    truncate(put.path)
    assert cache.get("chaos", "k1") is None and not put.path.exists()


def test_two_harnesses_build_one_image_once(tmp_path):
    _mkfs()
    recipe = tmp_path / "chaos-pair.yaml"
    recipe.write_text("name: chaos-pair\nfs: ext4\nsize: 64M\nmkfs_options: [-E, lazy_itable_init=0]\n"
                      "tweaks: [mark_free_blocks_used]\n")
    env = {"HARNESS_CACHE": str(tmp_path / "cache"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    argv = [sys.executable, "-m", "harness", "image", str(recipe)]
    pair = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in pair]
    assert [p.returncode for p in pair] == [0, 0], outs
    assert outs[0][0] == outs[1][0] and outs[0][0].strip().endswith(".img")
    assert sum(err.count("building image chaos-pair") for _, err in outs) == 1, outs
    assert audit(tmp_path / "cache") == []


def test_matrix_names_that_do_not_go_stale(tmp_path, frozen_reproducers):
    names = ["debian:6.1.0-47", "debian:6.1.0-56", "debian:6.1.0-57", "debian:6.12.100", "debian:6.12.118"]
    assert debian.pick("6.1", names) == "6.1.0-57" and debian.pick("6.1-oldest", names) == "6.1.0-47"
    assert debian.pick("6.12", names) == "6.12.118" and debian.pick("6.1.0-50", names) is None
    spec = tmp_path / "m.yaml"
    spec.write_text("name: m\nkernels: [debian:6.1-oldest, debian:6.1, debian:6.12]\nreproducers: [ext4_inline]\n")
    cells = load_matrix(spec, available=lambda kind: names if kind == "debian" else []).cells
    assert [c.kernel for c in cells] == ["debian:6.1-oldest", "debian:6.1", "debian:6.12"]  # the ids stay
    # judged as the kernels they name today (frozen_reproducers: only debian:6.1.0-* must reproduce)
    assert [c.expectation for c in cells] == ["reproduce", "reproduce", None]
    shipped = load_matrix(ROOT / "matrix.yaml", available=lambda kind: names if kind == "debian" else []).cells
    assert not [c.kernel for c in shipped if c.kernel in ("debian:6.1.0-56", "debian:6.12.117")]


def test_the_shipped_matrix_pins_nothing_that_goes_stale():
    text = (ROOT / "matrix.yaml").read_text()
    pins = [ln for ln in text.splitlines() if ln.strip().startswith("- debian:") and ("newest" in ln or "oldest" in ln)
            and ln.split()[1].removeprefix("debian:") not in ("6.1", "6.12", "6.1-oldest", "6.12-oldest")]
    assert not pins, pins
    # the workflow generated from it names the aliases too
    assert "debian:6.1-oldest:ext4_inline" in (ROOT / ".github/workflows/matrix.yml").read_text()
