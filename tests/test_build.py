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
from harness.kernels import cache as kcache
from harness.kernels.build import Variant
from harness.kernels.cache import Layout
from harness.kernels.patches import PatchOp
from tools.bench import builds as bench_builds
from tools.bench import figures as bench_figures


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
    assert Variant("debian-src:6.1.192").fragments == ("lean", "filesystems", "faults")


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
    assert [r["key"] for r in kcache.list_cached(layout)] == ["new", "mid", "old"]
    total = kcache.cache_size(layout)
    assert total > 3000
    assert kcache.evict(total, layout) == []
    assert kcache.evict(total - 1, layout) == ["old"]
    assert kcache.evict(0, layout) == ["mid", "new"]
    assert kcache.list_cached(layout) == []


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
mount LABEL=harnessxfs mx  # the image attached with `vng --disk`
for fs in m2 m4 mx; do echo hi > $fs/f; done
sync
awk '$2 ~ /\/m[24x]$/ {print "MOUNT", $2, $3, $1}' /proc/mounts
for d in /sys/block/*/device/driver; do echo "DISK $(echo $d | cut -d/ -f4) $(basename $(readlink $d))"; done
# ext4 lists each fs it drives in /sys/fs/ext4 (also an ext2 one under EXT4_USE_FOR_EXT2)
dev() { basename "$(awk -v m="$1" '$2 ~ m"$" {print $1}' /proc/mounts)"; }
[ -e /sys/fs/ext4/"$(dev /m4)" ] && echo EXT4_SYSFS
[ -e /sys/fs/ext4/"$(dev /m2)" ] && echo EXT2_VIA_EXT4
dmesg | grep -q 'using the ext4 subsystem' && echo EXT2_VIA_EXT4
grep -qw ext2 /proc/filesystems && echo FS_EXT2
dmesg | grep -q 'KernelAddressSanitizer initialized' && echo KASAN_ON
[ -e /proc/lockdep ] && echo LOCKDEP_ON
dmesg | grep -E 'BUG:|WARNING:|possible circular|possible recursive' | sed 's/^/DMESG-SPLAT /'
umount m2 m4 mx
echo GUEST-OK
exit 3
"""


def _images(work: Path) -> None:
    for fs, cmd in (
        ("ext2", ["mkfs.ext2", "-q"]),
        ("ext4", ["mkfs.ext4", "-q"]),
        ("xfs", ["mkfs.xfs", "-q", "-L", "harnessxfs"]),
    ):
        image = work / f"{fs}.img"
        with open(image, "wb") as fh:
            fh.truncate(320 << 20)
        subprocess.run([*cmd, str(image)], check=True)


@pytest.mark.vm
@pytest.mark.build
@pytest.mark.parametrize(
    "fragments",
    [
        pytest.param(("lean", "filesystems", "faults"), marks=pytest.mark.ci, id="lean"),
        pytest.param(("lean", "filesystems", "faults", "debug", "syzkaller"), id="debug"),
    ],
)
def test_lean_debian_kernel_boots(vm, tmp_path: Path, fragments: tuple[str, ...]) -> None:
    """Debian 6.1.192 built lean (built once, then cached) boots under vng and mounts ext2/ext4/XFS.

    ``lean`` runs in CI (a cold build there); ``debug`` adds KASAN and lockdep.
    """
    for tool in ("mkfs.ext2", "mkfs.ext4", "mkfs.xfs"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    kernel = kbuild.build(Variant("debian-src:6.1.192", fragments=fragments), progress=print)
    assert kernel.config_value("EXT4_USE_FOR_EXT2") is None and kernel.config_value("MODULES") is None
    if "debug" in fragments:
        assert kernel.config_value("KASAN") == "y" and kernel.config_value("PROVE_LOCKING") == "y"
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"kbuild-vm-{os.getpid()}"  # host-visible path
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _images(work)
        (work / "guest.sh").write_text(GUEST_SCRIPT)
        argv = ["vng", "--disable-kvm", "--memory", "1G", "--rwdir", str(work), "--disk", str(work / "xfs.img")]
        argv += ["-r", str(kernel.image), "--", "bash", str(work / "guest.sh"), str(work)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = done.stdout
    assert "GUEST-OK" in out, f"rc={done.returncode}\nstdout:\n{out}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 3  # the script's exit code comes back through vng's ports
    mounts = {Path(line.split()[1]).name: line.split()[2] for line in out.splitlines() if line.startswith("MOUNT ")}
    assert mounts == {"m2": "ext2", "m4": "ext4", "mx": "xfs"}
    assert "EXT4_SYSFS" in out and "FS_EXT2" in out and "EXT2_VIA_EXT4" not in out
    if "debug" in fragments:  # the debug options are live in the guest, and found nothing at boot
        assert "KASAN_ON" in out and "LOCKDEP_ON" in out
        assert "DMESG-SPLAT" not in out, out  # no KASAN / lockdep / WARNING report from boot, mount, umount


# --- the whole pipeline against a fake kernel tree (real make, real patch) ---------------

FAKE_MAKEFILE = r"""
O ?= .
SRC := $(CURDIR)
OBJS := $(O)/fs/a.o $(O)/fs/b.o

tinyconfig:
	@mkdir -p $(O)
	@printf 'CONFIG_64BIT=y\n# CONFIG_EXT2_FS is not set\n' > $(O)/.config
olddefconfig:
	@sed -i '/CONFIG_NOPE/d' $(O)/.config
kernelversion:
	@echo 6.1.999
bzImage: $(O)/arch/x86/boot/bzImage

$(O)/fs/%.o: $(SRC)/fs/%.c $(O)/.config
	@mkdir -p $(dir $@)
	@echo "  CC      fs/$*.o"
	@if grep -q '#error' $<; then echo "fs/$*.c:1:2: error: boom"; exit 1; fi
	@cat $< > $@

$(O)/arch/x86/boot/bzImage: $(OBJS)
	@mkdir -p $(dir $@) $(O)/include/config
	@echo "  LD      vmlinux"
	@cat $(OBJS) > $(O)/vmlinux
	@cp $(O)/vmlinux $@
	@echo map > $(O)/System.map
	@echo 6.1.999-fake > $(O)/include/config/kernel.release
"""


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fake kernel tree behind the debian-src kind, fragments in a temp kconfigs/."""
    from harness.kernels import sources

    pristine = tmp_path / "pristine"
    (pristine / "fs").mkdir(parents=True)
    (pristine / "Makefile").write_text(FAKE_MAKEFILE)
    (pristine / "fs/a.c").write_text("a1\na2\na3\n")
    (pristine / "fs/b.c").write_text("b1\nb2\nb3\n")
    old = time.time() - 3600
    for p in pristine.rglob("*"):
        os.utime(p, (old, old))
    frags = tmp_path / "kconfigs"
    frags.mkdir()
    (frags / "lean.config").write_text("CONFIG_64BIT=y\n")
    (frags / "filesystems.config").write_text("CONFIG_EXT2_FS=y\nCONFIG_NOPE=y\n")
    (frags / "faults.config").write_text("CONFIG_FAULT_INJECTION=y  # optional\n")
    monkeypatch.setenv("HARNESS_KCONFIGS", str(frags))
    tree = sources.Tree(
        "debian-src:6.1.999", "linux-source-6.1=6.1.999-1", "debian-src-6.1.999-1", pristine, "debian-src"
    )
    monkeypatch.setattr(sources.DebianSource, "tree", lambda self, rest, progress=None: tree)
    monkeypatch.setattr(kbuild, "compiler_version", lambda cc="gcc": "gcc (fake) 12")
    return Layout(tmp_path / "cache"), pristine, tmp_path


def patch_file(tmp_path: Path, name: str, rel: str, old: str, new: str) -> PatchOp:
    import difflib

    path = tmp_path / name
    path.write_text("".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel}")))
    return PatchOp(path)


def test_pipeline_builds_caches_and_rebuilds_only_what_a_patch_touches(fake) -> None:
    layout, pristine, tmp = fake
    base = Variant("debian-src:6.1.999")
    k = kbuild.build(base, layout=layout)
    assert (k.name, k.release, k.version, k.kind, k.root) == (
        "debian-src:6.1.999",
        "6.1.999-fake",
        "6.1.999",
        "build",
        None,
    )
    assert k.image.read_text() == "a1\na2\na3\nb1\nb2\nb3\n"
    assert {p.name for p in Path(k.extra["entry"]).iterdir()} >= {
        "bzImage",
        "vmlinux",
        "System.map",
        "config",
        "build.log",
    }
    assert k.extra["objects"] == 3 and not k.extra["cached"]
    assert k.config_value("EXT2_FS") == "y"
    assert k.extra["config_mismatches"] == ["CONFIG_NOPE=y requested, got unset (no such option in this tree)"]

    again = kbuild.build(base, layout=layout)
    assert again.extra["cached"] and again.image == k.image

    pa = patch_file(tmp, "a.patch", "fs/a.c", "a1\na2\na3\n", "a1\nA2\na3\n")
    ka = kbuild.build(Variant(base.source, "fix-a", (pa,)), layout=layout)
    assert ka.name == "debian-src:6.1.999/fix-a" and ka.image != k.image
    assert ka.image.read_text().startswith("a1\nA2\n")
    assert ka.extra["objects"] == 2  # a.o + link: b.o reused from the shared O= dir

    pb = patch_file(tmp, "b.patch", "fs/b.c", "b1\nb2\nb3\n", "b1\nB2\nb3\n")
    kb = kbuild.build(Variant(base.source, "fix-b", (pb,)), layout=layout)
    # a.c went back to pristine (a new, newer file): a.o must be rebuilt too
    assert kb.image.read_text() == "a1\na2\na3\nb1\nB2\nb3\n"
    assert kb.extra["objects"] == 3
    assert (pristine / "fs/a.c").read_text() == "a1\na2\na3\n"  # the pristine tree never changes
    assert len(kcache.list_cached(layout)) == 3


def test_entry_keeps_the_patched_files_for_the_reports_source_lines(fake) -> None:
    """A report's file:line in a patched file is read in the file as built, not in the unpatched tree
    (the patch shifts its lines): the entry keeps the stack's files, and source_roots puts them first."""
    layout, pristine, tmp = fake
    pa = patch_file(tmp, "a.patch", "fs/a.c", "a1\na2\na3\n", "a0\na1\na2\na3\n")
    ka = kbuild.build(Variant("debian-src:6.1.999", "shifted", (pa,)), layout=layout)
    entry = Path(ka.extra["entry"])
    assert (entry / kcache.PATCHED_SOURCE / "fs/a.c").read_text() == "a0\na1\na2\na3\n"
    assert not (entry / kcache.PATCHED_SOURCE / "fs/b.c").exists()  # untouched: the pristine tree has it
    assert kcache.source_roots(ka.extra) == (entry / kcache.PATCHED_SOURCE, pristine)
    base = kbuild.build(Variant("debian-src:6.1.999"), layout=layout)
    assert kcache.source_roots(base.extra) == (pristine,)  # no patches: nothing kept


def test_pipeline_patch_and_build_failures(fake) -> None:
    from harness.kernels.patches import PatchFailed

    layout, pristine, tmp = fake
    bad = patch_file(tmp, "bad.patch", "fs/a.c", "x1\nx2\nx3\n", "x1\nX2\nx3\n")
    with pytest.raises(PatchFailed) as err:
        kbuild.build(Variant("debian-src:6.1.999", "bad", (bad,)), layout=layout)
    assert "+X2" in err.value.hunk

    broken = patch_file(tmp, "err.patch", "fs/b.c", "b1\nb2\nb3\n", "b1\n#error\nb3\n")
    with pytest.raises(kbuild.BuildFailed) as failed:
        kbuild.build(Variant("debian-src:6.1.999", "broken", (broken,)), layout=layout)
    assert failed.value.errors[0] == "fs/b.c:1:2: error: boom"
    assert failed.value.log_path.exists() and "error: boom" in failed.value.log_path.read_text()
    assert failed.value.exit_code == 6

    ok = kbuild.build(Variant("debian-src:6.1.999"), layout=layout)  # the tree recovers
    assert ok.image.read_text() == "a1\na2\na3\nb1\nb2\nb3\n"


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_pipeline_git_source_moves_between_commits_incrementally(fake) -> None:
    layout, pristine, tmp = fake
    git = ["git", "-C", str(pristine), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    first = Variant(f"git:{pristine}@HEAD")
    k1 = kbuild.build(first, layout=layout)
    assert k1.extra["objects"] == 3 and k1.extra["identity"].startswith("git:")
    (pristine / "fs/b.c").write_text("b1\nb2 v2\nb3\n")
    subprocess.run([*git, "commit", "-qam", "two"], check=True)
    k2 = kbuild.build(Variant(f"git:{pristine}@HEAD"), layout=layout)
    assert k2.image.read_text().endswith("b2 v2\nb3\n")
    assert k2.extra["objects"] == 2  # only b.o + link
    pa = patch_file(tmp, "a.patch", "fs/a.c", "a1\na2\na3\n", "a1\nA2\na3\n")
    k3 = kbuild.build(Variant(f"git:{pristine}@HEAD~1", "fix", (pa,)), layout=layout)
    assert k3.image.read_text() == "a1\nA2\na3\nb1\nb2\nb3\n"
    assert subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout == ""


def test_bench_figures_on_the_fake_tree(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    layout, pristine, tmp = fake
    monkeypatch.setenv("HARNESS_CACHE", str(tmp / "harness-cache"))
    figures = bench_builds.bench_figures("debian-src:6.1.999", touch="fs/a.c")
    assert figures["cold_objects"] == 3 and figures["incremental_objects"] == 2
    assert figures["cache_hit_s"] < figures["cold_build_s"] + 5
    assert "vng_kconfig_build_s" not in figures
    assert not (tmp / "harness-cache" / "kernels" / "bench").exists()  # cleaned up


# --- size limit, CLI, bench rows ---------------------------------------------------------


def test_cache_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_KERNEL_CACHE_MAX", raising=False)
    assert kcache.cache_limit() == 30 << 30
    assert kcache.cache_limit("1.5k") == 1536 and kcache.cache_limit("123") == 123  # a bare number is bytes
    with pytest.raises(SpecError, match="cache size '12X' is not a size"):
        kcache.cache_limit("12X")
    monkeypatch.setenv("HARNESS_KERNEL_CACHE_MAX", "5M")
    assert kcache.cache_limit() == 5 << 20 and kcache.cache_limit("2MiB") == 2 << 20
    monkeypatch.setenv("HARNESS_KERNEL_CACHE_MAX", "lots")
    with pytest.raises(SpecError, match=r"\$HARNESS_KERNEL_CACHE_MAX 'lots' is not a size"):
        kcache.cache_limit()


def test_evict_never_removes_kept_keys(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    now = time.time()
    fake_entry(layout, "old", 1000, now - 300)
    fake_entry(layout, "new", 1000, now - 100)
    assert kcache.evict(0, layout, keep=("old",)) == ["new"]
    assert [r["key"] for r in kcache.list_cached(layout)] == ["old"]


def test_store_evicts_down_to_the_limit(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new kernel pushes the least recently used one out when the cache is over its limit."""
    layout, pristine, tmp = fake
    monkeypatch.setenv("HARNESS_KERNEL_CACHE_MAX", "1")  # one byte: only the newest survives
    first = kbuild.build(Variant("debian-src:6.1.999"), layout=layout)
    pa = patch_file(tmp, "a.patch", "fs/a.c", "a1\na2\na3\n", "a1\nA2\na3\n")
    second = kbuild.build(Variant("debian-src:6.1.999", "fix-a", (pa,)), layout=layout)
    assert [r["key"] for r in kcache.list_cached(layout)] == [second.extra["key"]]
    assert not Path(first.extra["entry"]).exists()


def test_kernel_cli_build_list_evict(fake, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from harness import cli

    layout, pristine, tmp = fake
    monkeypatch.setattr(kbuild.Layout, "default", classmethod(lambda cls: layout))
    assert cli.main(["kernel", "build", "debian-src:6.1.999", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["name"] == "debian-src:6.1.999" and row["cached"] is False and row["objects"] == 3
    assert cli.main(["kernel", "build", "debian-src:6.1.999", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True  # the second request builds nothing
    pa = patch_file(tmp, "a.patch", "fs/a.c", "a1\na2\na3\n", "a1\nA2\na3\n")
    assert cli.main(["kernel", "build", "debian-src:6.1.999", "-p", str(pa.path), "--name", "fix"]) == 0
    assert "debian-src:6.1.999/fix" in capsys.readouterr().out
    assert cli.main(["kernel", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 kernels") and "debian-src:6.1.999/fix" in out
    assert cli.main(["kernel", "evict", "--max-size", "0"]) == 0
    assert capsys.readouterr().out.startswith("evicted 2 kernels")
    assert cli.main(["kernel", "build", "debian-src:6.1.999", "-f", "nope"]) == 4
    assert "Unknown kconfig fragment 'nope'" in capsys.readouterr().err
    assert cli.main(["kernel", "build", "ext4_inline"]) == 3  # prebuilt-only reproducer: said so
    assert "no source-built variants" in capsys.readouterr().err
    assert cli.main(["kernel", "build", "xfs_mkwrite_delalloc", "--variant", "nope"]) == 4
    assert "Available: xfs-unfixed, stock" in capsys.readouterr().err


def test_bench_build_rows_on_the_fake_tree(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    layout, pristine, tmp = fake
    monkeypatch.setenv("HARNESS_CACHE", str(tmp / "harness-cache"))
    real = bench_builds.bench_figures
    monkeypatch.setattr(bench_builds, "bench_figures", lambda **kw: real("debian-src:6.1.999", touch="fs/a.c", **kw))
    rows = bench_figures.build_figures(False)
    labels = [r[0] for r in rows]
    assert labels[0].startswith("lean build (lean+filesystems+faults), cold ccache, 3 objects")
    assert any("one-file fs/ patch (2 objects)" in lab for lab in labels) and "cache hit" in labels[-1]
    assert all(isinstance(r[1], float) for r in rows)
