"""Kernel builds: cache keys, the kernel cache, progress (no VM, no real build).

``test_lean_debian_kernel_boots`` (marked ``vm``) builds the lean Debian
6.1.192 kernel through the cache (cheap when cached) and boots it with vng.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.kernels import build as kbuild
from harness.kernels.build import Layout, Variant
from harness.kernels.patches import PatchOp


def test_same_inputs_same_key() -> None:
    assert kbuild.cache_key("src", "p", "CONFIG_A=y\n", "gcc 12") == kbuild.cache_key(
        "src", "p", "CONFIG_A=y\n", "gcc 12"
    )


@pytest.mark.parametrize(
    "changed",
    [
        ("src2", "p", "CONFIG_A=y\n", "gcc 12"),  # source identity
        ("src", "p2", "CONFIG_A=y\n", "gcc 12"),  # patch content
        ("src", "p", "CONFIG_A=m\n", "gcc 12"),  # final .config
        ("src", "p", "CONFIG_A=y\n", "gcc 13"),  # compiler
    ],
)
def test_any_input_changes_the_key(changed: tuple[str, str, str, str]) -> None:
    assert kbuild.cache_key(*changed) != kbuild.cache_key("src", "p", "CONFIG_A=y\n", "gcc 12")


def test_patch_content_reaches_the_key(tmp_path: Path) -> None:
    from harness.kernels import patches

    p = tmp_path / "fix.patch"
    p.write_text("one\n")
    before = kbuild.cache_key("src", patches.digest([PatchOp(p)]), "c", "gcc")
    p.write_text("two\n")
    assert kbuild.cache_key("src", patches.digest([PatchOp(p)]), "c", "gcc") != before


def test_variant_names() -> None:
    assert Variant("debian-src:6.1.192").kernel_name == "debian-src:6.1.192"
    assert Variant("debian-src:6.1.192", name="unfixed").kernel_name == "debian-src:6.1.192/unfixed"
    assert Variant("debian-src:6.1.192").fragments == ("lean", "filesystems")


def test_patch_op_arguments(tmp_path: Path) -> None:
    p = tmp_path / "x.patch"
    p.write_text("")
    assert kbuild.patch_op(str(p)) == PatchOp(p.resolve(), False)
    assert kbuild.patch_op(f"revert:{p}") == PatchOp(p.resolve(), True)
    with pytest.raises(SpecError):
        kbuild.patch_op(str(tmp_path / "missing.patch"))


def test_prebuilt_kind_is_not_buildable() -> None:
    with pytest.raises(SpecError, match="prebuilt"):
        kbuild.build(Variant("debian:6.1.0-47"), layout=Layout(Path("/nonexistent")))


def test_watcher_counts_objects_and_keeps_errors() -> None:
    seen: list[str] = []
    w = kbuild._Watcher(seen.append, "k", every=0.0)
    for line in ["  CC      fs/ext4/inline.o", "  AR      fs/built-in.a", "  LD      vmlinux.o", "  HOSTCC  x"]:
        w(line)
    w("fs/ext4/inline.c:12:1: error: expected ';' before '}' token")
    w("make[3]: *** [scripts/Makefile.build:250: fs/ext4/inline.o] Error 1")
    assert w.objects == 3
    assert len(w.errors) == 2 and "error: expected" in w.errors[0]
    assert seen and seen[-1].startswith("k: 3 objects")


def test_watcher_throttles() -> None:
    seen: list[str] = []
    w = kbuild._Watcher(seen.append, "k", every=3600)
    for _ in range(100):
        w("  CC      a.o")
    assert seen == [] and w.objects == 100


def fake_entry(layout: Layout, key: str, size: int, used: float) -> Path:
    entry = layout.built / key
    entry.mkdir(parents=True)
    (entry / "bzImage").write_bytes(b"x" * size)
    (entry / "meta.json").write_text(json.dumps({"key": key, "name": f"debian-src:6.1.192/{key}"}))
    (entry / ".complete").write_text(key)
    (entry / ".last_used").write_text("")
    os.utime(entry / ".last_used", (used, used))
    return entry


def test_list_size_and_lru_eviction(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    now = time.time()
    fake_entry(layout, "old", 1000, now - 300)
    fake_entry(layout, "mid", 1000, now - 200)
    fake_entry(layout, "new", 1000, now - 100)
    (layout.built / ".half-built").mkdir()  # staging dirs are not entries
    assert [r["key"] for r in kbuild.list_cached(layout)] == ["new", "mid", "old"]
    total = kbuild.cache_size(layout)
    assert total > 3000
    assert kbuild.evict(total, layout) == []
    assert kbuild.evict(total - 1, layout) == ["old"]
    assert kbuild.evict(0, layout) == ["mid", "new"]
    assert kbuild.list_cached(layout) == []


def test_cache_hit_builds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the index pointing at a complete entry, build() never touches a source tree."""
    layout = Layout(tmp_path)
    from harness.kernels import sources

    tree = sources.Tree("dir:/x", "dir:/x:abc", "dir-x", tmp_path, "dir")
    monkeypatch.setattr(sources.DirSource, "tree", lambda self, rest, progress=None: tree)
    monkeypatch.setattr(kbuild, "compiler_version", lambda cc="gcc": "gcc 12")
    variant = Variant("dir:/x")
    fragments = [kbuild.kconfig.fragment_path(f) for f in variant.fragments]
    text = kbuild.kconfig.render(kbuild.kconfig.merge(fragments))
    entry = fake_entry(layout, "k1", 10, time.time() - 1000)
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").write_text(json.dumps({**meta, "release": "6.1.192", "version": "6.1.192"}))
    layout.index.mkdir(parents=True)
    (layout.index / kbuild.inputs_key(tree.identity, "", text, "gcc 12")).write_text("k1\n")

    def boom(*a, **k):
        raise AssertionError("must not check out or build")

    monkeypatch.setattr(sources.DirSource, "checkout", boom)
    kernel = kbuild.build(variant, layout=layout)
    assert kernel.image == entry / "bzImage" and kernel.kind == "build" and kernel.root is None
    assert kernel.extra["cached"] is True
    assert (entry / ".last_used").stat().st_mtime > time.time() - 60  # LRU refreshed


# --- the real thing ------------------------------------------------------------------

GUEST_SCRIPT = r"""
set -e
cd "$1"
mkdir -p m2 m4 mx
mount -o loop ext2.img m2
mount -o loop ext4.img m4
mount -o loop xfs.img mx
echo hi > m2/f; echo hi > m4/f; echo hi > mx/f; sync
grep -E ' (m2|m4|mx) ' /proc/mounts | awk '{print "MOUNT", $2, $3}'
dmesg | grep -i 'using the ext4 subsystem' && echo EXT2_VIA_EXT4 || true
grep -w ext2 /proc/filesystems | sed 's/^/FS /'
umount m2 m4 mx
echo GUEST-OK
exit 3
"""


@pytest.mark.vm
def test_lean_debian_kernel_boots(tmp_path: Path) -> None:
    for tool in ("vng", "mkfs.ext2", "mkfs.ext4", "mkfs.xfs"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    kernel = kbuild.build(Variant("debian-src:6.1.192"), progress=print)
    work = Path(tempfile_dir()) / f"kbuild-vm-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        for fs, cmd in (("ext2", ["mkfs.ext2", "-q"]), ("ext4", ["mkfs.ext4", "-q"]), ("xfs", ["mkfs.xfs", "-q"])):
            image = work / f"{fs}.img"
            with open(image, "wb") as fh:
                fh.truncate(320 << 20)
            subprocess.run([*cmd, str(image)], check=True)
        (work / "guest.sh").write_text(GUEST_SCRIPT)
        done = subprocess.run(
            [
                "vng",
                "--disable-kvm",
                "--memory",
                "1G",
                "--rwdir",
                str(work),
                "-r",
                str(kernel.image),
                "--",
                "bash",
                str(work / "guest.sh"),
                str(work),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            stdin=subprocess.DEVNULL,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = done.stdout
    assert "GUEST-OK" in out, f"rc={done.returncode}\nstdout:\n{out}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 3  # the script's exit code comes back through vng's ports
    mounts = dict(line.split()[1:3] for line in out.splitlines() if line.startswith("MOUNT "))
    assert {Path(k).name: v for k, v in mounts.items()} == {"m2": "ext2", "m4": "ext4", "mx": "xfs"}
    assert "EXT2_VIA_EXT4" not in out
    assert "FS ext2" in out


def tempfile_dir() -> str:
    return os.environ.get("TMPDIR", "/tmp")
