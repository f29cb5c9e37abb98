"""The snapshot backend's pure parts: initramfs contents, module closure, QEMU argv, QMP."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.errors import GuestError
from harness.guest.backends import select
from harness.guest.machine import Disk, GuestRequest
from harness.guest.protocol import SNAPSHOT_READY, GuestPlan
from harness.guest.snapshot import initramfs, machine, qmp
from harness.kernels import Kernel
from harness.repro.binaries import BinaryCache, compile_on_host

snap = SimpleNamespace(**{k: v for m in (initramfs, machine, qmp) for k, v in vars(m).items() if not k.startswith("__")},
                       READY=SNAPSHOT_READY)

KERNEL = Kernel(name="debian:6.1.0-56", release="6.1.0-56-amd64", version="6.1.192", image=Path("/k/vmlinuz"),
                boot_image=Path("/k/vmlinux"))


def _req(**kw) -> GuestRequest:
    plan = GuestPlan("t", "ext4", "", "/r/f/run-01/repro.c", (), ("{mnt}",), 60, None)
    base = dict(kernel=KERNEL, plan=plan, run_dir=Path("/r/f/run-01"), accel="tcg", cmdline=("oops=panic",),
                disks=(Disk(Path("/r/f/run-01/disk.img"), "harness-img0"),), preload=("fs-ext4",))
    return GuestRequest(**{**base, **kw})


def test_parse_ldd_takes_libraries_and_the_loader():
    text = """\tlinux-vdso.so.1 (0x00007ffd)
\tlibtinfo.so.6 => /lib/x86_64-linux-gnu/libtinfo.so.6 (0x00007f1)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f3)
"""
    assert snap.parse_ldd(text) == ["/lib/x86_64-linux-gnu/libtinfo.so.6", "/lib/x86_64-linux-gnu/libc.so.6",
                                    "/lib64/ld-linux-x86-64.so.2"]


def test_module_closure_follows_dependencies_and_aliases():
    deps = snap.parse_modules_dep(
        "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\n"
        "kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\nkernel/lib/crc16.ko:\nkernel/crypto/crc32c_generic.ko:\n"
        "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko\nkernel/drivers/net/net_failover.ko:\n"
        "kernel/fs/xfs/xfs.ko: kernel/lib/libcrc32c.ko\nkernel/lib/libcrc32c.ko:\n")
    aliases = snap.parse_aliases("alias fs-ext4 ext4\nalias fs-ext2 ext4\nalias pci:v00001AF4d* virtio_pci\n")
    assert aliases == {"fs-ext4": "ext4", "fs-ext2": "ext4"}
    got = snap.module_closure(deps, aliases, ["fs-ext4", "virtio-net"], ("kernel/crypto",))
    assert got == sorted(["kernel/fs/ext4/ext4.ko", "kernel/fs/jbd2/jbd2.ko", "kernel/fs/mbcache.ko",
                          "kernel/lib/crc16.ko", "kernel/crypto/crc32c_generic.ko", "kernel/drivers/net/virtio_net.ko",
                          "kernel/drivers/net/net_failover.ko"])
    assert "kernel/fs/xfs/xfs.ko" not in got
    assert snap.module_name("kernel/fs/xfs/xfs.ko.xz") == "xfs" and snap.module_name("a/virtio-net.ko") == "virtio_net"


def test_init_script_is_bash_and_says_ready_last(tmp_path):
    text = snap.init_script(snap.BOOT_MODULES, ("fs-ext4",))
    path = tmp_path / "init"
    path.write_text(text)
    done = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "modprobe -q -a virtio_pci virtio_blk virtio_net loop fs-ext4" in text
    assert text.index("/usr/sbin/sshd") < text.index(snap.READY)
    assert "no modules" in snap.init_script((), ())


def test_qemu_argv_save_and_restore_differ_only_in_incoming(tmp_path):
    kw = dict(initrd=Path("/s/initramfs.cpio"), console=Path("/r/console.log"), qmp=Path("/r/qmp.sock"), port=4022,
              disk=Path("/r/f/run-01/disk.img"))
    save = snap.qemu_argv(_req(), **kw)
    load = snap.qemu_argv(_req(), **kw, incoming=True)
    assert load == save + ["-incoming", "defer"]
    assert save[save.index("-kernel") + 1] == "/k/vmlinux"  # PVH when the kernel has it
    append = save[save.index("-append") + 1]
    assert "rdinit=/init" in append and "oops=panic" in append and "panic=-1" in append
    assert "hostfwd=tcp:127.0.0.1:4022-:22" in " ".join(save) and "restrict=on" in " ".join(save)
    assert "virtio-blk-pci,drive=hdisk0,serial=harness-img0" in save  # what the guest steps look for
    assert save[3:7] == ["-machine", "q35", "-cpu", "max"] and "-no-reboot" in save
    assert "vmcoreinfo" not in save  # only a --vmcore guest has it (a saved guest of its own)
    assert snap.qemu_argv(replace(_req(), vmcore=True), **kw) == save + ["-device", "vmcoreinfo"]
    bz = snap.qemu_argv(_req(kernel=Kernel(name="b", release="r", version="v", image=Path("/b/bzImage"))), **kw)
    assert bz[bz.index("-kernel") + 1] == "/b/bzImage"


def test_snapshot_backend_is_registered_and_refuses_a_kernel_without_virtio_net(tmp_path):
    assert select("snapshot").name == "snapshot"
    with pytest.raises(GuestError, match="takes boots=K"):
        select("snapshot:x")
    config = tmp_path / "config"
    config.write_text("CONFIG_NET=y\n# CONFIG_VIRTIO_NET is not set\n")
    lean = Kernel(name="debian-src:6.1.192", release="6.1.192", version="6.1.192", image=Path("/b"), config=config)
    assert "no virtio-net" in snap.unusable(lean)


def test_qmp_client_skips_events_and_raises_errors(tmp_path):
    path = tmp_path / "q.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)
    seen = []

    def serve():
        conn, _ = server.accept()
        f = conn.makefile("rw")
        f.write(json.dumps({"QMP": {"version": {}}}) + "\n")
        f.flush()
        for line in f:
            msg = json.loads(line)
            seen.append(msg)
            if msg["execute"] == "query-status":
                f.write(json.dumps({"event": "RESUME"}) + "\n")
                f.write(json.dumps({"return": {"status": "paused"}}) + "\n")
            elif msg["execute"] == "bogus":
                f.write(json.dumps({"error": {"class": "CommandNotFound", "desc": "no bogus"}}) + "\n")
            else:
                f.write(json.dumps({"return": {}}) + "\n")
            f.flush()
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    q = snap.Qmp(path, timeout=5)
    assert q.command("query-status") == {"status": "paused"}
    assert q.wait("query-status", lambda s: s["status"] == "paused", 5)["status"] == "paused"
    q.command("migrate-incoming", uri="exec:cat /s/state")
    with pytest.raises(GuestError, match="no bogus"):
        q.command("bogus")
    q.close()
    t.join(5)
    assert seen[0] == {"execute": "qmp_capabilities"}
    assert {"execute": "migrate-incoming", "arguments": {"uri": "exec:cat /s/state"}} in seen
    server.close()


def test_stage_reproduces_the_symlinks_on_the_way(tmp_path):
    host = tmp_path / "host"
    (host / "usr/lib").mkdir(parents=True)
    (host / "usr/lib/libz.so.1.2").write_text("lib")
    (host / "usr/lib/libz.so.1").symlink_to("libz.so.1.2")
    (host / "lib").symlink_to("usr/lib")
    stage = tmp_path / "stage"
    stage.mkdir()
    snap._stage(stage, str(host / "lib/libz.so.1"))
    inner = stage / str(host).lstrip("/")
    assert (inner / "lib").is_symlink() and (inner / "usr/lib/libz.so.1").is_symlink()
    assert (inner / "lib/libz.so.1").read_text() == "lib"


def test_host_compile_writes_the_cache_whole(tmp_path):
    src, out = tmp_path / "repro.c", tmp_path / "host-compile.log"
    src.write_text("int main(void) { return 0; }\n")
    spec = SimpleNamespace(name="repro", compiler="gcc", cflags=("-O2",), source=src)
    cache = BinaryCache(tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    cached = compile_on_host(spec, cache, "abc", out)
    assert cached.path.exists() and subprocess.run([str(cached.path)]).returncode == 0
    assert not [p for p in cached.path.parent.iterdir() if p.name.startswith(".")]  # built beside it, renamed in
    assert cached.meta["compiled_in"] == "host" and cached.meta["command"].startswith("gcc -O2 -o ")
    assert "gcc -O2 -o " in out.read_text()
    assert cache.get("repro", "abc").meta["sha256"] == cached.meta["sha256"]
    cached.path.write_bytes(b"truncated")  # a damaged entry is dropped, never run
    assert cache.get("repro", "abc") is None and not cached.path.exists()


def test_initramfs_inputs_digest_follows_the_modules_and_the_host_files(tmp_path):
    moddir = tmp_path / "root" / "lib" / "modules" / "6.1.0-47-amd64"
    (moddir / "kernel/fs/ext4").mkdir(parents=True)
    (moddir / "kernel/fs/ext4/ext4.ko").write_bytes(b"x" * 10)
    (moddir / "modules.dep").write_text("kernel/fs/ext4/ext4.ko:\n")
    (moddir / "modules.alias").write_text("alias fs-ext4 ext4\n")
    k = Kernel(name="debian:6.1.0-47", release="6.1.0-47-amd64", version="6.1.170", image=Path("/k/vmlinuz"),
               root=tmp_path / "root")
    libs = []
    base = snap.inputs_digest(k, ("fs-ext4",), lambda progs: libs)
    assert snap.inputs_digest(k, ("fs-ext4",), lambda progs: libs) == base
    assert snap.inputs_digest(k, ("fs-xfs",), lambda progs: libs) != base  # another /init
    (moddir / "kernel/fs/ext4/ext4.ko").write_bytes(b"x" * 11)
    assert snap.inputs_digest(k, ("fs-ext4",), lambda progs: libs) != base
    lib = tmp_path / "libfake.so"
    lib.write_text("l")
    with_lib = snap.inputs_digest(k, ("fs-ext4",), lambda progs: [str(lib)])
    lib.write_text("l2")  # a library upgraded
    assert snap.inputs_digest(k, ("fs-ext4",), lambda progs: [str(lib)]) != with_lib
