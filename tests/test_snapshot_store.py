"""Saved guests kept across sessions (harness.guest.snapshot.store) and the backend's use of them.

QEMU is faked where a test needs it: ``Snapshot._save`` (boot, SSH check, migration) is replaced by a
function that writes a state file, and QEMU's version is whatever the test says; everything else (the
key, the store, the locks, the round-robin over boots, the sessions' logs) is the real code.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from harness.errors import GuestError
from harness.guest.backends import select
from harness.guest.machine import Disk, GuestRequest
from harness.guest.protocol import GuestPlan
from harness.guest.snapshot import machine, store
from harness.guest.ssh import make_keys
from harness.kernels import Kernel

FIELDS = store.key_fields(kernel={"release": "r", "image": "/k/vmlinux", "sha256": "ab"}, initramfs="cd",
                          machine=["qemu", "-m", "1G"], disk_size=64 << 20, qemu="QEMU emulator version 7.2.22",
                          preload=("fs-ext4",), lean=True)


def _writer(text: str = "state of the guest"):
    made = []

    def make(state: Path) -> dict:
        made.append(state)
        state.write_text(text)
        return {"boot_seconds": 12.0, "save_seconds": 1.0}

    return make, made


# --- the key --------------------------------------------------------------------------------------


def test_entry_key_is_stable_and_changes_with_every_field():
    key = store.entry_key(FIELDS)
    assert key == store.entry_key(json.loads(json.dumps(FIELDS))) and len(key) == 20
    changed = [{**FIELDS, "qemu": "QEMU emulator version 8.0.0"}, {**FIELDS, "disk_size": 128 << 20},
               {**FIELDS, "kernel": {**FIELDS["kernel"], "sha256": "ff"}}, {**FIELDS, "initramfs_inputs": "ce"},
               {**FIELDS, "machine": ["qemu", "-m", "2G"]}, {**FIELDS, "preload": ["fs-xfs"]}]
    assert len({store.entry_key(f) for f in changed} | {key}) == len(changed) + 1


@pytest.fixture
def kernel(tmp_path) -> Kernel:
    image = tmp_path / "kernel" / "vmlinux"
    image.parent.mkdir()
    image.write_bytes(b"\x7fELF a kernel")
    return Kernel(name="debian:6.1.0-47", release="6.1.0-47-amd64", version="6.1.170", image=image, boot_image=image)


def _req(kernel: Kernel, run_dir: Path, **kw) -> GuestRequest:
    run_dir.mkdir(parents=True, exist_ok=True)
    disk = run_dir / "disk.img"
    if not disk.exists():
        with open(disk, "wb") as fh:
            fh.truncate(kw.pop("disk_size", 64 << 20))
    plan = GuestPlan("t", "ext4", "", str(run_dir / "repro.c"), (), ("{mnt}",), 60, None)
    base = dict(kernel=kernel, plan=plan, run_dir=run_dir, accel="tcg", cmdline=("oops=panic",),
                disks=(Disk(disk, "harness-img0"),), preload=("fs-ext4",))
    return GuestRequest(**{**base, **kw})


@pytest.fixture
def fake_qemu(monkeypatch):
    """QEMU's version as the test sets it; the initramfs a small file (its inputs are the host's, for real)."""
    version = {"text": "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"}
    monkeypatch.setattr(store, "qemu_version", lambda qemu="": version["text"])

    def initramfs(out, kernel, keys, preload=()):
        out.write_bytes(b"070701 cpio of " + keys.client_pub.read_bytes())
        return {"programs": 1, "missing": [], "libraries": 0, "modules": 0, "bytes": out.stat().st_size}

    monkeypatch.setattr(machine, "build_initramfs", initramfs)
    monkeypatch.setattr(machine, "make_keys", make_keys)
    return version


def test_the_key_follows_the_machine_the_kernel_the_disk_and_qemu(tmp_path, kernel, fake_qemu):
    backend = machine.Snapshot()
    backend.open(tmp_path / "session")
    try:
        def key(**kw):
            req = _req(kernel, tmp_path / f"run-{len(kw)}-{sorted(kw.items())!s:.40}".replace(" ", ""), **kw)
            return store.entry_key(backend._fields(req, req.disks[0].path.stat().st_size))

        base = key()
        assert key() == base  # the same request, another run folder
        others = [key(memory="2G"), key(cpus=1), key(accel="kvm"), key(cmdline=("oops=panic", "nokaslr")),
                  key(preload=("fs-xfs",)), key(disk_size=128 << 20)]
        assert base not in others and len(set(others)) == len(others)
        fake_qemu["text"] = "QEMU emulator version 8.2.0"
        assert key() != base
        fake_qemu["text"] = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
        time.sleep(0.01)
        kernel.image.write_bytes(b"\x7fELF another build")  # the same path, another kernel
        assert key() != base
    finally:
        backend.close()


# --- the store: verification, atomic writes, locks, eviction ---------------------------------------


def _entry(st: store.Store, fields: dict = FIELDS) -> str:
    key = store.entry_key(fields)

    def make(tmp: Path) -> dict:
        keys = make_keys(tmp / "keys")
        (tmp / "initramfs.cpio").write_bytes(keys.client_pub.read_bytes())
        return {}

    st.entry(key, fields, make)
    return key


def test_a_boot_is_made_once_then_verified_and_reused(tmp_path):
    st = store.Store(tmp_path / "snapshots")
    key = _entry(st)
    make, made = _writer()
    first = st.boot(key, 1, FIELDS, make)
    assert first.made_now and first.state.read_text() == "state of the guest" and len(made) == 1
    assert first.meta["state_sha256"] == store.sha256_file(first.state) and first.meta["boot_seconds"] == 12.0
    again = st.boot(key, 1, FIELDS, make)
    assert not again.made_now and again.state == first.state and len(made) == 1
    assert not list(st.folder(key).glob(".boot-*"))  # made aside, renamed in: nothing half-made left


@pytest.mark.parametrize("damage", ["truncate", "flip", "missing"])
def test_a_damaged_state_is_made_again_never_restored(tmp_path, damage):
    st = store.Store(tmp_path / "snapshots")
    key = _entry(st)
    make, made = _writer("a" * 4096)
    state = st.boot(key, 1, FIELDS, make).state
    if damage == "truncate":
        with open(state, "r+b") as fh:
            fh.truncate(1000)
    elif damage == "flip":
        state.write_text("b" + "a" * 4095)  # the same size, other bytes
    else:
        state.unlink()
    assert st.verified(key, 1, FIELDS) is None
    assert not (st.folder(key) / "boot-1").exists()  # removed: no harness restores it
    again = st.boot(key, 1, FIELDS, make)
    assert again.made_now and len(made) == 2 and again.state.read_text() == "a" * 4096


def test_a_boot_recorded_for_other_fields_is_not_restored(tmp_path):
    st = store.Store(tmp_path / "snapshots")
    key = _entry(st)
    make, made = _writer()
    st.boot(key, 1, FIELDS, make)
    record = st.folder(key) / "boot-1" / store.BOOT
    meta = json.loads(record.read_text())
    record.write_text(json.dumps({**meta, "fields": {**FIELDS, "qemu": "QEMU emulator version 6.0"}}))
    assert st.verified(key, 1, FIELDS) is None and st.boot(key, 1, FIELDS, make).made_now and len(made) == 2


def test_a_damaged_initramfs_makes_the_whole_entry_again(tmp_path):
    st = store.Store(tmp_path / "snapshots")
    key = _entry(st)
    make, _ = _writer()
    st.boot(key, 1, FIELDS, make)
    (st.folder(key) / "initramfs.cpio").write_bytes(b"cut")
    _entry(st)
    assert not (st.folder(key) / "boot-1").exists()  # its boots booted another initramfs: gone with it
    assert (st.folder(key) / "keys" / "client").is_file()


def _share(root: str, out: str, start: float) -> None:
    """One of two harnesses wanting the same saved guest at once (a process of its own)."""
    st = store.Store(Path(root))
    key = store.entry_key(FIELDS)

    def make(state: Path) -> dict:
        with open(out, "a") as fh:
            fh.write("made\n")
        time.sleep(1.0)  # a boot takes a while: the other harness comes meanwhile
        state.write_text("one saved guest")
        return {}

    while time.time() < start:
        time.sleep(0.01)
    said = []
    boot = st.boot(key, 1, FIELDS, make, on_wait=lambda: said.append("waiting"))
    with open(out, "a") as fh:
        fh.write(f"{'made' if boot.made_now else 'reused'} {boot.meta['state_sha256']} {said}\n")


def test_two_harnesses_sharing_one_saved_guest_one_saves_the_other_waits_and_reuses_it(tmp_path):
    root, out = tmp_path / "snapshots", tmp_path / "log"
    _entry(store.Store(root))
    start = time.time() + 0.5
    ctx = multiprocessing.get_context("spawn")  # two fresh interpreters, as two harness commands
    procs = [ctx.Process(target=_share, args=(str(root), str(out), start)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = out.read_text().splitlines()
    assert lines.count("made") == 1, lines  # one boot and save
    ends = sorted(ln for ln in lines if ln != "made")
    assert ends[0].startswith("made ") and ends[1].startswith("reused ") and "['waiting']" in ends[1]
    assert ends[0].split()[1] == ends[1].split()[1]  # the same state


def test_sweep_drops_entries_of_another_qemu_or_a_gone_kernel_and_holds_the_size_limit(tmp_path, monkeypatch):
    st = store.Store(tmp_path / "snapshots")
    image = tmp_path / "vmlinux"
    image.write_text("k")
    here = {**FIELDS, "kernel": {**FIELDS["kernel"], "image": str(image)}}
    old_qemu = {**here, "qemu": "QEMU emulator version 6.2.0"}
    gone = {**here, "kernel": {**here["kernel"], "image": str(tmp_path / "evicted" / "vmlinux")}}
    keys = {name: _entry(st, f) for name, f in (("here", here), ("old_qemu", old_qemu), ("gone", gone))}
    make, _ = _writer()
    for name, f in (("here", here), ("old_qemu", old_qemu), ("gone", gone)):
        st.boot(keys[name], 1, f, make)
    removed = st.sweep(here["qemu"])
    assert sorted(removed) == sorted([keys["old_qemu"], keys["gone"]])
    assert [k for k, _ in st.entries()] == [keys["here"]]
    monkeypatch.setenv(store.CACHE_MAX, "1")  # over the limit: least recently used first, never a kept one
    assert st.sweep(here["qemu"], keep=(keys["here"],)) == []
    assert st.sweep(here["qemu"]) == []  # restored a moment ago: another harness may be restoring it
    old = time.time() - store.RECENT - 60
    os.utime(st.folder(keys["here"]) / store.LAST_USED, (old, old))
    assert st.sweep(here["qemu"]) == [keys["here"]] and st.entries() == []


def test_sweep_clears_what_a_killed_harness_left_but_not_what_one_is_making(tmp_path):
    st = store.Store(tmp_path / "snapshots")
    key = _entry(st)
    dead, live = st.folder(key) / ".boot-1.tmpabc", st.folder(key) / ".boot-2.tmpdef"
    for d in (dead, live):
        d.mkdir()
        (d / "state").write_text("half")
    with st.lock(key, "boot-2"):
        st.sweep(FIELDS["qemu"], keep=(key,))
        assert not dead.exists() and live.exists()
        assert not st.drop(key, "test")  # boot 2 is being made
    st.sweep(FIELDS["qemu"], keep=(key,))
    assert not live.exists() and st.drop(key, "test")


def test_drop_kernel_removes_the_entries_of_an_evicted_kernel(tmp_path):
    st = store.Store(tmp_path / "snapshots")
    a = {**FIELDS, "kernel": {**FIELDS["kernel"], "image": "/cache/kernels/built/abc/vmlinux"}}
    b = {**FIELDS, "kernel": {**FIELDS["kernel"], "image": "/cache/kernels/built/abcd/vmlinux"}}
    ka, kb = _entry(st, a), _entry(st, b)
    assert st.drop_kernel(("/cache/kernels/built/abc",)) == [ka]
    assert [k for k, _ in st.entries()] == [kb]


def test_an_entry_being_made_is_not_dropped(tmp_path):
    st = store.Store(tmp_path / "snapshots")
    key = _entry(st)
    with st.lock(key, "boot-1"):
        (st.folder(key) / "boot-1").mkdir()
        assert not st.drop(key, "test") and st.folder(key).exists()
    assert st.drop(key, "test") and not st.folder(key).exists()


# --- the backend: sessions, boots, round-robin ------------------------------------------------------


class Session:
    """A Snapshot backend opened on a session folder, its boots faked (no QEMU)."""

    def __init__(self, tmp_path: Path, name: str, kernel: Kernel, monkeypatch, boots: int | None = None):
        self.backend = machine.Snapshot(boots=boots)
        self.folder = tmp_path / name
        self.folder.mkdir(parents=True)
        self.kernel = kernel
        self.made: list[int] = []
        monkeypatch.setattr(self.backend, "_save", self._save)
        self.backend.open(self.folder)

    def _save(self, req, out, entry, boot, state):
        self.made.append(boot)
        state.write_bytes(f"boot {boot} of {entry.key}".encode() * 1000)
        return {"boot_seconds": 15.0, "save_seconds": 1.0}

    def turn(self, i: int, **kw) -> machine.Saved:
        req = _req(self.kernel, self.folder / f"run-{i:02d}", **kw)
        info: dict = {}
        saved = self.backend._ensure_saved(req, req.run_dir / "guest.log", info, self.backend.turn)
        self.backend.turn += 1
        assert isinstance(saved, machine.Saved), saved
        return saved

    def log(self) -> str:
        return (self.folder / "session.log").read_text() if (self.folder / "session.log").exists() else ""


@pytest.fixture
def snapshots(tmp_path, monkeypatch):
    monkeypatch.setenv(store.ROOT_ENV, str(tmp_path / "snapshots"))
    return tmp_path / "snapshots"


def test_runs_are_spread_round_robin_over_k_boots_and_a_second_session_restores_them(
        tmp_path, kernel, fake_qemu, snapshots, monkeypatch):
    one = Session(tmp_path, "first", kernel, monkeypatch, boots=3)
    assert [one.turn(i).boot for i in range(1, 8)] == [1, 2, 3, 1, 2, 3, 1]
    assert one.made == [1, 2, 3]  # one boot each, the first time its turn came
    one.backend.close()
    two = Session(tmp_path, "second", kernel, monkeypatch, boots=3)
    saved = [two.turn(i) for i in range(1, 4)]
    assert two.made == [] and [s.boot for s in saved] == [1, 2, 3]
    log = two.log()
    for s in saved:
        assert f"restored the saved guest {s.entry.key}/boot-{s.boot} (made {s.meta['made']})" in log
    assert len({s.state.read_bytes() for s in saved}) == 3  # three boots, three saved guests
    two.backend.close()


def test_a_request_asks_for_its_boots_and_the_backend_argument_overrides_it(tmp_path, kernel, fake_qemu, snapshots,
                                                                          monkeypatch):
    s = Session(tmp_path, "req", kernel, monkeypatch)
    assert [s.turn(i, boots=2).boot for i in range(1, 5)] == [1, 2, 1, 2]
    s.backend.close()
    forced = Session(tmp_path, "forced", kernel, monkeypatch, boots=1)
    assert [forced.turn(i, boots=2).boot for i in range(1, 4)] == [1, 1, 1]
    forced.backend.close()


@pytest.mark.parametrize("fault", ["truncated", "qemu upgraded"])
def test_a_saved_guest_truncated_or_of_another_qemu_is_booted_again_never_restored(
        tmp_path, kernel, fake_qemu, snapshots, monkeypatch, fault):
    one = Session(tmp_path, "first", kernel, monkeypatch)
    first = one.turn(1)
    one.backend.close()
    if fault == "truncated":
        with open(first.state, "r+b") as fh:
            fh.truncate(100)
    else:
        fake_qemu["text"] = "QEMU emulator version 8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)"
    two = Session(tmp_path, "second", kernel, monkeypatch)
    again = two.turn(1)
    assert two.made == [1] and "restored the saved guest" not in two.log()
    assert again.state.stat().st_size == first.meta["state_bytes"]
    if fault == "qemu upgraded":
        assert again.entry.key != first.entry.key
        assert not snapshots.joinpath(first.entry.key).exists()  # swept: this QEMU cannot restore it
        assert "removed" in two.log()
    two.backend.close()


def test_a_boot_that_fails_is_a_one_line_failure_and_leaves_nothing_in_the_store(tmp_path, kernel, fake_qemu,
                                                                             snapshots, monkeypatch):
    s = Session(tmp_path, "failing", kernel, monkeypatch)

    def fails(req, out, entry, boot, state):
        state.write_text("half a state")
        raise GuestError("the guest was not ready in 240 s; see console.log")

    monkeypatch.setattr(s.backend, "_save", fails)
    req = _req(kernel, s.folder / "run-01")
    got = s.backend._ensure_saved(req, req.run_dir / "guest.log", {}, 0)
    assert got == "the guest was not ready in 240 s; see console.log"
    assert not list(snapshots.glob("*/boot-*")) and not list(snapshots.glob("*/.boot-*"))
    s.backend.close()


def test_backend_argument_boots():
    assert select("snapshot").boots is None
    assert select("snapshot:boots=3").boots == 3 and select("snapshot:2").boots == 2
    for bad in ("snapshot:x", "snapshot:boots=0", "snapshot:boots=-1"):
        with pytest.raises(GuestError, match="boots=K"):
            select(bad)


def test_the_kernel_caches_eviction_takes_the_saved_guests_of_the_kernels_it_removes(tmp_path, snapshots):
    from harness.kernels import cache as kernel_cache  # here: the hook under test is the store's registration

    layout = kernel_cache.Layout(tmp_path / "kernels")
    entries = {}
    for key in ("old", "new"):
        entry = layout.built / key
        entry.mkdir(parents=True)
        (entry / "vmlinux").write_bytes(b"k" * 1000)
        (entry / "meta.json").write_text(json.dumps({"key": key}))
        (entry / ".complete").write_text(key)
        entries[key] = entry
        time.sleep(0.02)  # "old" is the least recently used
    st = store.Store()
    keys = {k: _entry(st, {**FIELDS, "kernel": {**FIELDS["kernel"], "image": str(e / "vmlinux")}})
            for k, e in entries.items()}
    assert kernel_cache.evict(1500, layout) == ["old"]
    assert [k for k, _ in st.entries()] == [keys["new"]]


def test_a_boot_another_harness_holds_too_long_is_a_one_line_failure(tmp_path, kernel, fake_qemu, snapshots,
                                                                    monkeypatch):
    s = Session(tmp_path, "waiting", kernel, monkeypatch)
    req = _req(kernel, s.folder / "run-01")
    entry = s.backend._entry(req, req.run_dir / "guest.log")
    monkeypatch.setattr(store, "LOCK_WAIT", 0.2)
    with s.backend.store.lock(entry.key, "boot-1"):  # another harness is booting it, and takes long
        got = s.backend._ensure_saved(req, req.run_dir / "guest.log", {}, 0)
    assert got.startswith(f"another harness held {entry.key}.boot-1 for 0 s") and s.made == []
    assert f"another harness is saving {entry.key}/boot-1: waiting for it" in s.log()
    s.backend.close()


def test_the_first_connection_to_a_booted_guest_tries_a_reset_again_but_not_a_bad_key(tmp_path, monkeypatch):
    calls = []

    class Flaky:
        def __init__(self, endpoint):
            pass

        def connect(self, timeout):
            calls.append(timeout)
            if len(calls) < 3:
                raise GuestError("ssh root@[127.0.0.1]:1: SSHException: Error reading SSH protocol banner"
                                 "[Errno 104] Connection reset by peer")
            return self

    class Running:
        port = 1

        def gone(self):
            return None

    monkeypatch.setattr(machine, "Connection", Flaky)
    monkeypatch.setattr(machine.time, "sleep", lambda s: None)
    backend = machine.Snapshot()
    keys = make_keys(tmp_path / "keys")
    assert isinstance(backend._first_connect(Running(), keys), Flaky) and len(calls) == 3

    class BadKey(Flaky):
        def connect(self, timeout):
            calls.append(timeout)
            raise GuestError("ssh root@[127.0.0.1]:1: AuthenticationException: Authentication failed.")

    calls.clear()
    monkeypatch.setattr(machine, "Connection", BadKey)
    with pytest.raises(GuestError, match="Authentication failed"):
        backend._first_connect(Running(), keys)
    assert len(calls) == 1
