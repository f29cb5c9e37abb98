"""Saved guests kept across sessions: ``$HARNESS_CACHE/snapshots/<key>/``.

A saved post-boot guest (QEMU's migration state) costs a boot and a save to
make (10-20 s under TCG) and 0.2 s to restore, so it is kept in the cache,
keyed by everything that makes it (``key_fields``): the kernel QEMU loads
(its path, release and sha256), the initramfs's inputs (the host programs and
libraries, the kernel's modules, /init: ``initramfs.inputs_digest``), the
machine (QEMU's command line with its paths left out: accelerator, vCPUs,
memory, kernel command line, devices and the disk's serial), the disk's
size, QEMU's version (``qemu-system-x86_64 --version``) and the modules
loaded before the save.  One entry::

    <key>/entry.json       the key's fields, the initramfs's sha256, when it was made
    <key>/keys/            the SSH keys the guest's sshd was booted with (the client's, its own host key)
    <key>/initramfs.cpio
    <key>/boot-N/state     boot N's saved guest (a spec's ``guest: {boots: K}``: K separate boots)
    <key>/boot-N/boot.json the state's sha256 and size, the key's fields, when and how it was made

Everything is written atomically (a boot is made in ``.boot-N.tmp*`` and
renamed), under a file lock per entry and per boot: of two harnesses that
need the same boot, one makes it and the other waits, then reuses it.
Before a boot is reused its state's sha256 and size and the key's fields
are checked against what was recorded when it was made: a damaged boot (a
truncated file) is removed and made again, never restored.  An entry whose
kernel file is gone (the kernel cache evicted it) or whose QEMU version is
not the installed one is removed when a store opens (``sweep``); the
kernel cache's eviction drops the entries of the kernels it removes
(``drop_kernel``); and the whole store is held under
``$HARNESS_SNAPSHOT_CACHE_MAX`` (default 4G), least recently used first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from filelock import FileLock, Timeout

from harness.kernels import cache as kernel_cache
from harness.kernels.integrity import sha256_file
from harness.paths import cache_dir
from harness.sizes import parse_size

log = logging.getLogger(__name__)

RECIPE = "snapshot-1"  # what a saved guest holds and how it is made: a change here makes every entry anew
ENTRY = "entry.json"
BOOT = "boot.json"
STATE = "state"
LAST_USED = ".last_used"
CACHE_MAX = "HARNESS_SNAPSHOT_CACHE_MAX"
DEFAULT_CACHE_MAX = "4G"
ROOT_ENV = "HARNESS_SNAPSHOT_CACHE"  # the store's folder (default $HARNESS_CACHE/snapshots)
RECENT = 600.0  # seconds: an entry restored more recently is not evicted for room (another harness may be using it)
LOCK_WAIT = 600.0  # seconds a harness waits for another one's boot and save (a boot under TCG: 10-60 s)


def root() -> Path:
    env = os.environ.get(ROOT_ENV)
    if env:
        path = Path(env)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return cache_dir("snapshots")


# --- the key ---------------------------------------------------------------------------------------


@cache
def qemu_version(qemu: str = "qemu-system-x86_64") -> str:
    """The first line of ``qemu --version`` ("" when it does not run: such a QEMU restores nothing)."""
    try:
        done = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.splitlines()[0].strip() if done.returncode == 0 and done.stdout else ""


def key_fields(*, kernel: dict, initramfs: str, machine: list[str], disk_size: int, qemu: str,
               preload: tuple[str, ...], lean: bool) -> dict:
    """What a saved guest is made of (pure): two requests with the same fields may share one."""
    return {"recipe": RECIPE, "kernel": kernel, "initramfs_inputs": initramfs, "machine": machine,
            "disk_size": disk_size, "qemu": qemu, "preload": list(preload), "lean": lean}


def entry_key(fields: dict) -> str:
    """The entry's folder name: 20 hex digits of the fields' sha256 (pure)."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]


def _write_json(path: Path, data: dict) -> None:
    """Whole or not at all: a reader never sees half a record."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Memo:
    """Answers keyed by a file's (path, size, mtime, inode), kept in one JSON file: the sha256 of a
    kernel image and the libraries ldd finds for a program are computed again only when the file changes."""

    def __init__(self, path: Path):
        self.path = path
        self.data = _read_json(path) or {}
        self.dirty = False

    def get(self, kind: str, file: str, compute: Callable[[str], object]):
        try:
            st = os.stat(file)
        except OSError:
            return compute(file)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        table = self.data.setdefault(kind, {})
        hit = table.get(file)
        if isinstance(hit, list) and len(hit) == 2 and hit[0] == stamp:
            return hit[1]
        value = compute(file)
        table[file] = [stamp, value]
        self.dirty = True
        return value

    def save(self) -> None:
        if self.dirty:
            with contextlib.suppress(OSError):
                _write_json(self.path, self.data)
            self.dirty = False


# --- entries and boots -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Boot:
    """A verified saved guest: boot ``index`` of entry ``key``."""

    key: str
    index: int
    folder: Path
    state: Path
    meta: dict
    made_now: bool  # made by this call (a boot and a save), not reused

    @property
    def label(self) -> str:
        return f"{self.key}/boot-{self.index}"


class Store:
    """The saved guests (see the module doc)."""

    def __init__(self, folder: Path | None = None):
        self.root = folder or root()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "locks").mkdir(exist_ok=True)
        self.memo = Memo(self.root / "memo.json")

    def folder(self, key: str) -> Path:
        return self.root / key

    def lock(self, key: str, what: str = "entry") -> FileLock:
        """Held while a part of entry ``key`` is made or removed (lock files live apart: never deleted
        while someone waits on one).  Not thread-local: one backend's threads share it."""
        return FileLock(str(self.root / "locks" / f"{key}.{what}.lock"), thread_local=False)

    # --- the entry's shared parts: keys and initramfs ---

    def entry(self, key: str, fields: dict, make: Callable[[Path], dict]) -> dict:
        """Entry ``key``'s record, made with ``make(folder)`` (writes keys/ and initramfs.cpio into the
        folder, returns what went in) when it is missing or damaged."""
        found = self._entry_ok(key, fields)
        if found:
            self.touch(key)  # in use: not evicted for room meanwhile
            return found
        with self.lock(key).acquire(timeout=LOCK_WAIT):
            found = self._entry_ok(key, fields)
            if found:
                self.touch(key)
                return found
            self._remove(key)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp", dir=self.root))
            try:
                what = make(tmp)
                record = {"fields": fields, "initramfs_sha256": sha256_file(tmp / "initramfs.cpio"),
                          "made": time.strftime("%Y-%m-%d %H:%M:%S"), "initramfs": what}
                _write_json(tmp / ENTRY, record)
                tmp.chmod(0o700)  # the guest's private host key and the client's key
                tmp.rename(self.folder(key))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return record

    def _entry_ok(self, key: str, fields: dict) -> dict | None:
        folder = self.folder(key)
        record = _read_json(folder / ENTRY)
        if record is None:
            return None
        problem = None
        if record.get("fields") != fields:
            problem = "made for other inputs"
        elif not all((folder / "keys" / n).is_file() for n in ("client", "guest_host_key.pub")):
            problem = "its SSH keys are missing"
        elif not (folder / "initramfs.cpio").is_file() or \
                sha256_file(folder / "initramfs.cpio") != record.get("initramfs_sha256"):
            problem = "its initramfs does not match its sha256"
        if problem:
            log.warning("saved guest %s is damaged (%s): making it again", key, problem)
            return None
        return record

    # --- one boot ---

    def boot(self, key: str, index: int, fields: dict, make: Callable[[Path], dict], *,
             wait: float | None = None, on_wait: Callable[[], None] | None = None) -> Boot:
        """Boot ``index`` of entry ``key``, verified; made with ``make(state_path)`` (boots a guest and saves
        it to that path; returns facts for boot.json) when it is missing or damaged.  Another harness making
        the same boot is waited for (up to ``wait`` s, LOCK_WAIT by default: ``on_wait()`` says so first), then
        its boot is reused; raises filelock.Timeout when it takes longer."""
        found = self.verified(key, index, fields)
        if found:
            return found
        lock = self.lock(key, f"boot-{index}")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if on_wait:
                on_wait()
            lock.acquire(timeout=LOCK_WAIT if wait is None else wait)
        try:
            return self.verified(key, index, fields) or self._make_boot(key, index, fields, make)
        finally:
            lock.release()

    def _make_boot(self, key: str, index: int, fields: dict, make: Callable[[Path], dict]) -> Boot:
        folder = self.folder(key)
        tmp = Path(tempfile.mkdtemp(prefix=f".boot-{index}.tmp", dir=folder))
        try:
            facts = make(tmp / STATE)
            state = tmp / STATE
            meta = {**facts, "boot": index, "key": key, "fields": fields, "state_bytes": state.stat().st_size,
                    "state_sha256": sha256_file(state), "made": time.strftime("%Y-%m-%d %H:%M:%S")}
            _write_json(tmp / BOOT, meta)
            self._remove_boot(key, index)
            tmp.rename(folder / f"boot-{index}")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.touch(key)
        done = folder / f"boot-{index}"
        return Boot(key, index, done, done / STATE, meta, made_now=True)

    def verified(self, key: str, index: int, fields: dict) -> Boot | None:
        """Boot ``index`` of ``key`` if it is whole and was made for ``fields``; a damaged one is removed
        (made again, never restored); None when there is none."""
        folder = self.folder(key) / f"boot-{index}"
        meta = _read_json(folder / BOOT)
        if meta is None:
            return None
        state = folder / STATE
        problem = None
        if meta.get("fields") != fields or meta.get("boot") != index:
            problem = "made for other inputs"
        elif not state.is_file() or state.stat().st_size != meta.get("state_bytes"):
            problem = (f"its state is {state.stat().st_size if state.is_file() else 'missing'} bytes, "
                       f"{meta.get('state_bytes')} when it was saved")
        elif sha256_file(state) != meta.get("state_sha256"):
            problem = "its state does not match the sha256 recorded when it was saved"
        if problem:
            log.warning("saved guest %s/boot-%d is damaged (%s): booting it again", key, index, problem)
            with self.lock(key, f"boot-{index}").acquire(timeout=LOCK_WAIT):
                if _read_json(folder / BOOT) == meta:  # nobody made it again meanwhile
                    self._remove_boot(key, index)
            return None
        self.touch(key)
        return Boot(key, index, folder, state, meta, made_now=False)

    def touch(self, key: str) -> None:
        with contextlib.suppress(OSError):
            (self.folder(key) / LAST_USED).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")

    # --- removal ---

    def _remove_boot(self, key: str, index: int) -> None:
        folder = self.folder(key) / f"boot-{index}"
        if folder.exists():
            gone = folder.with_name(f".gone-boot-{index}-{os.getpid()}-{time.monotonic_ns()}")
            folder.rename(gone)
            shutil.rmtree(gone, ignore_errors=True)

    def _remove(self, key: str) -> None:
        folder = self.folder(key)
        if folder.exists():
            gone = self.root / f".gone-{key}-{os.getpid()}-{time.monotonic_ns()}"
            folder.rename(gone)
            shutil.rmtree(gone, ignore_errors=True)

    def entries(self) -> list[tuple[str, dict]]:
        """(key, entry record) of every whole entry."""
        out = []
        for path in sorted(self.root.glob(f"*/{ENTRY}")):
            record = _read_json(path)
            if record is not None:
                out.append((path.parent.name, record))
        return out

    def drop(self, key: str, why: str) -> bool:
        """Remove entry ``key`` unless a harness is making a part of it right now; True if removed."""
        try:
            with self.lock(key).acquire(timeout=0):
                if any(self._busy(key, f"boot-{i}") for i in self._boot_indices(key)):
                    return False
                self._remove(key)
        except Timeout:
            return False
        log.info("saved guest %s removed: %s", key, why)
        return True

    def _boot_indices(self, key: str) -> set[int]:
        """The boots entry ``key`` has, whole or being made (``boot-N``, ``.boot-N.tmp*``)."""
        out = set()
        for path in self.folder(key).glob("*boot-*"):
            digits = path.name.lstrip(".").removeprefix("boot-").split(".")[0]
            if digits.isdigit():
                out.add(int(digits))
        return out

    def _busy(self, key: str, what: str) -> bool:
        try:
            with self.lock(key, what).acquire(timeout=0):
                return False
        except Timeout:
            return True

    def _litter(self) -> None:
        """What a killed harness left: half-made boots and entries (their lock free), folders being removed."""
        for tmp in self.root.glob("*/.boot-*.tmp*"):
            index = tmp.name.removeprefix(".boot-").split(".")[0]
            if not self._busy(tmp.parent.name, f"boot-{index}"):
                shutil.rmtree(tmp, ignore_errors=True)
        for tmp in self.root.glob(".*.tmp*"):
            if tmp.is_dir() and not self._busy(tmp.name[1:].split(".")[0], "entry"):
                shutil.rmtree(tmp, ignore_errors=True)
        for gone in (*self.root.glob(".gone-*"), *self.root.glob("*/.gone-*")):
            shutil.rmtree(gone, ignore_errors=True)

    def sweep(self, qemu: str, *, keep: tuple[str, ...] = ()) -> list[str]:
        """Remove the entries no harness can restore any more (their kernel file is gone or changed, another
        QEMU made them), then the least recently used ones over ``$HARNESS_SNAPSHOT_CACHE_MAX``; the keys
        removed."""
        self._litter()
        removed = []
        for key, record in self.entries():
            why = stale(record, qemu)
            if why and key not in keep and self.drop(key, why):
                removed.append(key)
        limit = parse_size(os.environ.get(CACHE_MAX, DEFAULT_CACHE_MAX), bare="B", what=f"${CACHE_MAX}")
        rows = sorted(((self._last_used(k), k) for k, _ in self.entries() if k not in removed))
        total = sum(self._size(k) for _, k in rows)
        for used, key in rows:
            if total <= limit:
                break
            if key in keep or time.time() - used < RECENT:  # a harness may be restoring it right now
                continue
            size = self._size(key)
            if self.drop(key, f"the saved guests hold more than {os.environ.get(CACHE_MAX, DEFAULT_CACHE_MAX)}"):
                total -= size
                removed.append(key)
        self.memo.save()
        return removed

    def drop_kernel(self, paths: tuple[str, ...]) -> list[str]:
        """Remove the entries of a kernel the kernel cache evicts (its files under ``paths``)."""
        removed = []
        for key, record in self.entries():
            image = str(record.get("fields", {}).get("kernel", {}).get("image", ""))
            if any(image == p or image.startswith(p.rstrip("/") + "/") for p in paths) and \
                    self.drop(key, "its kernel was evicted"):
                removed.append(key)
        return removed

    def _last_used(self, key: str) -> float:
        folder = self.folder(key)
        marker = folder / LAST_USED
        with contextlib.suppress(OSError):
            return (marker if marker.exists() else folder / ENTRY).stat().st_mtime
        return 0.0

    def _size(self, key: str) -> int:
        return sum(p.stat().st_size for p in self.folder(key).rglob("*") if p.is_file() and not p.is_symlink())


def stale(record: dict, qemu: str) -> str | None:
    """Why an entry can never be restored again on this host (one line), or None (pure but for a stat)."""
    fields = record.get("fields") or {}
    kernel = fields.get("kernel") or {}
    image = kernel.get("image")
    if fields.get("recipe") != RECIPE:
        return "made by another version of the harness"
    if fields.get("qemu") != qemu:
        return f"made by {fields.get('qemu') or 'an unknown QEMU'}, not {qemu or 'the installed QEMU'}"
    if not image or not os.path.exists(image):
        return f"its kernel {image} is gone"
    return None


def _kernels_evicted(paths: list[str]) -> None:
    """The kernel cache evicted the entries at ``paths``: their saved guests go with them."""
    Store().drop_kernel(tuple(paths))


kernel_cache.ON_EVICT.append(_kernels_evicted)
