"""Where a fault happens: private caches and results, the harness as a user starts it, its processes by tag.

Every harness the suite starts runs the way a user's would: the virtualenv's
``bin/harness`` with a PATH that does not hold the virtualenv (not
activated), its own ``HARNESS_CACHE`` and ``HARNESS_RESULTS`` under the
chaos folder, so the user's cache is only ever read (copied from).  Each
start carries ``HARNESS_CHAOS_TAG=<id>`` in its environment; every process
it starts inherits it (apt-get and its methods, make and cc1, vng,
virtme-run, QEMU), so "no process of that run alive" is a scan of
``/proc/*/environ`` for that tag: other users' guests and builds on the same
machine carry another tag or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.guest.protocol import GuestOutput
from harness.paths import PROJECT_ROOT

TAG = "HARNESS_CHAOS_TAG"
SETTLE = 10.0  # seconds a run's processes get to die after the harness did
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ChaosError(Exception):
    """The suite could not set a fault up (not a verdict on the harness)."""


# --- processes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    name: str
    cmdline: str

    def __str__(self) -> str:
        return f"{self.name}[{self.pid}]"


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def tagged(tag: str) -> list[Proc]:
    """Live (not zombie) processes whose environment carries ``HARNESS_CHAOS_TAG=tag``."""
    needle = f"{TAG}={tag}\0".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        base = f"/proc/{entry.name}"
        if needle not in _read(f"{base}/environ") + b"\0":
            continue
        stat = _read(f"{base}/stat").decode(errors="replace")
        if not stat or stat[stat.rfind(")") + 2:][:1] in ("Z", "X"):
            continue
        cmd = _read(f"{base}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        found.append(Proc(int(entry.name), _read(f"{base}/comm").decode().strip(), cmd))
    return found


def survivors(tag: str, settle: float = SETTLE) -> list[Proc]:
    """The tagged processes still alive after up to ``settle`` seconds (none: [])."""
    deadline = time.monotonic() + settle
    while True:
        left = tagged(tag)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def kill_tagged(tag: str) -> None:
    """The suite's own clean-up after a fault (what the harness left is already recorded)."""
    for p in tagged(tag):
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)


def wait_for(what: str, predicate: Callable[[], object], timeout: float, every: float = 0.05,
             alive: Callable[[], bool] | None = None) -> object:
    """Poll ``predicate`` until it returns something true; ChaosError after ``timeout`` or when ``alive`` fails."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if alive is not None and not alive():
            raise ChaosError(f"the harness ended before {what}")
        if time.monotonic() > deadline:
            raise ChaosError(f"no {what} within {timeout:.0f} s")
        time.sleep(every)


# --- one harness process --------------------------------------------------------------------------------


@dataclass
class Harness:
    """One harness process started by the suite (its output in files, its tag for its processes)."""

    argv: list[str]
    tag: str
    popen: subprocess.Popen
    out: Path
    err: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise ChaosError(f"the harness did not end within {timeout:.0f} s: {' '.join(self.argv[1:4])} ...") from None

    def kill(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def stdout(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def said(self, pattern: str) -> re.Match | None:
        return re.search(pattern, self.stderr() + self.stdout(), re.M)

    def last_line(self) -> str:
        lines = [ln for ln in self.stderr().splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""

    def seconds(self) -> float:
        return time.monotonic() - self.started


# --- the sandbox ----------------------------------------------------------------------------------------


class Sandbox:
    """The suite's folder: private caches, results, fixtures, logs; and how it starts the harness."""

    def __init__(self, root: Path, shared_cache: Path, harness_bin: Path):
        self.root = root
        self.shared = shared_cache
        self.harness_bin = harness_bin
        self.fixtures = root / "fixtures"
        self.logs = root / "logs"
        for d in (self.fixtures, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self._n = 0

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def env(self, tag: str, cache: Path, results: Path, **extra: str) -> dict[str, str]:
        """A user's environment: no virtualenv on PATH, the suite's cache, results and reproducers."""
        keep = {k: v for k, v in os.environ.items() if k in ("HOME", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR")}
        return {**keep, "PATH": BASE_PATH, "HARNESS_CACHE": str(cache), "HARNESS_RESULTS": str(results),
                "HARNESS_REPRODUCERS": str(self.fixtures / "reproducers"), "HARNESS_IMAGES": str(PROJECT_ROOT / "images"),
                "HARNESS_KERNEL_CACHE_MAX": "200G", "COLUMNS": "200", "PYTHONUNBUFFERED": "1", TAG: tag, **extra}

    def start(self, args: list[str], *, cache: Path, results: Path, label: str, argv0: list[str] | None = None,
              **extra: str) -> Harness:
        """Start ``harness ARGS`` (or ``argv0 + ARGS``) in the background, tagged."""
        self._n += 1
        tag = f"{label}-{uuid.uuid4().hex[:10]}"
        stem = self.logs / f"{self._n:02d}-{label}"
        argv = [*(argv0 or [str(self.harness_bin)]), *args]
        out, err = stem.with_suffix(".out"), stem.with_suffix(".err")
        with open(out, "wb") as o, open(err, "wb") as e:
            e.write(("$ " + " ".join(argv) + "\n").encode())
            e.flush()
            popen = subprocess.Popen(argv, stdout=o, stderr=e, stdin=subprocess.DEVNULL, cwd=self.root,
                                     env=self.env(tag, cache, results, **extra), start_new_session=True)
        return Harness(argv, tag, popen, out, err)

    def run(self, args: list[str], *, cache: Path, results: Path, label: str, timeout: float = 1800,
            **extra: str) -> Harness:
        """``harness ARGS`` to its end (ChaosError past ``timeout``)."""
        h = self.start(args, cache=cache, results=results, label=label, **extra)
        h.wait(timeout)
        return h

    # --- caches ---------------------------------------------------------------------------------

    def debian_release(self) -> str:
        """The newest Debian 6.1 kernel unpacked in the user's cache (what the suite copies)."""
        root = self.shared / "kernels" / "debian"
        done = sorted((p.parent.name for p in root.glob("6.1.0-*/.complete")),
                      key=lambda n: [int(x) for x in re.findall(r"\d+", n)])
        if not done:
            raise ChaosError(f"no Debian 6.1 kernel in {root}: run `harness repro ext4_inline` once first")
        return done[-1]

    def warm_cache(self, name: str, *, images: bool = True) -> Path:
        """A private cache holding a copy (never a hard link) of the user's newest Debian 6.1 kernel."""
        cache = self.folder(name)
        release = self.debian_release()
        dest = cache / "kernels" / "debian" / release
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-a", "--reflink=auto", str(self.shared / "kernels" / "debian" / release),
                            str(dest)], check=True)
        if images:
            (cache / "images").mkdir(exist_ok=True)
        return cache


    def source(self) -> tuple[str, Path]:
        """(kernel source name, its unpacked folder) of the newest Debian source in the user's cache."""
        root = self.shared / "kernels" / "src" / "debian-src"
        done = sorted((p.parent for p in root.glob("*/.complete")),
                      key=lambda p: [int(x) for x in re.findall(r"\d+", p.name)])
        if not done:
            raise ChaosError(f"no unpacked Debian kernel source in {root}: run `harness kernel build "
                             "debian-src:6.1.192` once first")
        return f"debian-src:{done[-1].name.split('-')[0]}", done[-1]

    def build_cache(self, name: str) -> Path:
        """A private cache for kernel builds: the source's pristine tree hard-linked, the ccache copied."""
        cache = self.folder(name)
        _, unpacked = self.source()
        dest = cache / "kernels" / "src" / "debian-src" / unpacked.name
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-al", str(unpacked), str(dest)], check=True)
        ccache = self.shared / "kernels" / "ccache"
        if ccache.exists() and not (cache / "kernels" / "ccache").exists():
            subprocess.run(["cp", "-a", str(ccache), str(cache / "kernels" / "ccache")], check=True)
        return cache


# --- what a fault leaves behind ----------------------------------------------------------------------


def unparsable_json(folder: Path) -> list[str]:
    """Every .json under ``folder`` that does not parse, and .jsonl files with a bad line before their last."""
    bad = []
    for path in sorted(folder.rglob("*.json")):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            bad.append(f"{path.relative_to(folder)}: {exc.__class__.__name__}")
    for path in sorted(folder.rglob("*.jsonl")):
        lines = path.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines[:-1]):
            try:
                json.loads(line)
            except ValueError:
                bad.append(f"{path.relative_to(folder)}:{i + 1}: cut line before the last")
    return bad


def records(folder: Path) -> list[dict]:
    """The parsed result.json files under ``folder`` (run folders' and summaries')."""
    out = []
    for path in sorted(folder.rglob("result.json")):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            out.append({**data, "_path": str(path)})
    return out


def guest_state(run_dir: Path) -> str:
    """Where a run's guest is (harness.guest.protocol's state: boot, NAME:begin, done...), or '' before its log."""
    log = run_dir / "guest.log"
    if not log.exists():
        return ""
    return GuestOutput.parse(log.read_text(errors="replace")).state


def run_dirs(results: Path) -> list[Path]:
    return sorted(p.parent for p in results.rglob("run-*/result.json"))


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "8M") -> Iterator[Path]:
    """A small tmpfs mounted at ``path`` (root only), unmounted after."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave: int) -> None:
    """Fill the filesystem of ``path`` until about ``leave`` bytes are free."""
    todo = shutil.disk_usage(path).free - leave
    with open(path / ".filler", "wb") as fh, contextlib.suppress(OSError):
        while todo > 0:
            todo -= fh.write(b"\1" * min(todo, 1 << 20))


def venv_harness() -> Path:
    """The ``harness`` of the virtualenv this suite runs in (a user's `.nox/*/bin/harness`)."""
    found = Path(sys.executable).parent / "harness"
    if not found.exists():
        raise ChaosError(f"{found} missing: run the suite from the virtualenv the harness is installed in")
    return found
