"""ssh:NAME: run the guest steps on a machine the user names in a config file.

The config (``$HARNESS_TARGETS``, else ~/.config/kernel-repro-harness/targets.yaml)
says how to reach each machine and what it may be used for; nothing of it
comes from the command line::

    targets:
      lab1:
        host: 192.0.2.10
        port: 22                       # default 22
        user: root                     # default root
        key: ~/.ssh/id_ed25519         # required
        known_hosts: ~/.ssh/known_hosts  # default; the host's key must already be in it
        loop_dir: /var/tmp/harness     # images go here, attached to loop devices, or
        disks: [/dev/disk/by-id/ata-SPARE]  # spare disks the harness may overwrite
        workdir: /var/tmp/harness      # scripts, sources, compiled binaries
        sudo: false                    # prefix commands with `sudo -n`

``--backend ssh:lab1`` uses the first disk (or loop_dir when no disk is
named); ``ssh:lab1:/dev/sdb`` picks one of the named disks, and any other
is refused before anything is written.  A disk must also be a block device
that nothing has mounted or swaps on.

Per run (harness.guest.remote.run_over): the run's inputs (source, guest
steps, wrapper) are copied to ``workdir/runs/<run>``, the image copy to
``loop_dir`` (or written onto the disk); the same steps run (compiled on the
target with its own compiler; the binary comes home to the run folder); the
kernel log is read before and after (``dmesg-before.txt``,
``dmesg-after.txt``) and the new lines are the run's console.log for the
parser.  A machine whose kernel
got tainted cannot be rebooted from here: the run records it and the next
runs say they ran on a tainted kernel.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from harness.errors import GuestError, SpecError, UnknownName
from harness.guest.machine import BACKENDS, Backend, GuestRequest, GuestRun
from harness.guest.protocol import LoopImage, SpareDisk
from harness.guest.remote import Staging, dmesg_new, run_over
from harness.guest.ssh import Connection, Endpoint
from harness.yamlio import Fields, load_mapping


def config_path() -> Path:
    env = os.environ.get("HARNESS_TARGETS")
    return Path(env) if env else Path(platformdirs.user_config_dir("kernel-repro-harness")) / "targets.yaml"


@dataclass(frozen=True)
class Target:
    name: str
    host: str
    key: Path
    known_hosts: Path
    port: int = 22
    user: str = "root"
    loop_dir: str | None = None
    disks: tuple[str, ...] = ()
    workdir: str = "/var/tmp/kernel-repro-harness"
    sudo: bool = False

    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port, self.user, self.key, known_hosts=self.known_hosts, name=f"ssh:{self.name}")

    def device(self, requested: str | None) -> str | None:
        """The disk to use (None: a loop image); refuses one the config does not name."""
        if requested:
            if requested not in self.disks:
                named = ", ".join(self.disks) or "none"
                raise GuestError(f"target {self.name}: disk {requested} is not among its config's disks ({named}): "
                                 "refusing to touch it")
            return requested
        if self.disks:
            return self.disks[0]
        if not self.loop_dir:
            raise GuestError(f"target {self.name}: its config names neither disks nor a loop_dir")
        return None


_KEYS = {"host", "port", "user", "key", "known_hosts", "loop_dir", "disks", "workdir", "sudo"}


def parse_targets(data: dict, where: str) -> dict[str, Target]:
    body = data.get("targets", data) if isinstance(data, dict) else {}
    if not isinstance(body, dict):
        raise SpecError(f"{where}: targets: expected a mapping of names to targets")
    out: dict[str, Target] = {}
    for name, entry in body.items():
        w = f"{where}: targets: {name}"
        if not isinstance(entry, dict):
            raise SpecError(f"{w}: expected a mapping")
        f = Fields(entry, w, _KEYS)
        port = f.get("port", int, 22)
        if not 0 < port < 65536:
            raise SpecError(f"{w}: port: {port} is not a TCP port")
        disks = f.strings("disks")
        for d in disks:
            if not d.startswith("/dev/"):
                raise SpecError(f"{w}: disks: {d!r} is not a /dev path")
        loop_dir = f.get("loop_dir", str, None)
        if loop_dir is not None and not posixpath.isabs(loop_dir):
            raise SpecError(f"{w}: loop_dir: {loop_dir!r} is not an absolute path")
        if not disks and not loop_dir:
            raise SpecError(f"{w}: name a loop_dir or spare disks: the harness needs one of them for its images")
        workdir = f.get("workdir", str, loop_dir or Target.workdir)
        if not posixpath.isabs(workdir):
            raise SpecError(f"{w}: workdir: {workdir!r} is not an absolute path")
        out[str(name)] = Target(
            name=str(name),
            host=f.get("host", str, required=True),
            key=Path(f.get("key", str, required=True)).expanduser(),
            known_hosts=Path(f.get("known_hosts", str, "~/.ssh/known_hosts")).expanduser(),
            port=port,
            user=f.get("user", str, "root"),
            loop_dir=loop_dir,
            disks=disks,
            workdir=workdir,
            sudo=f.get("sudo", bool, False),
        )
    return out


def load_target(name: str, path: Path | None = None) -> Target:
    path = path or config_path()
    if not path.exists():
        raise UnknownName(f"target {name!r}: no targets file {path}", hint="write it, or point $HARNESS_TARGETS at one")
    targets = parse_targets(load_mapping(path), str(path))
    if name not in targets:
        raise UnknownName(f"Unknown target {name!r} in {path}. Available: {', '.join(sorted(targets)) or '(none)'}")
    return targets[name]


class DmesgConsole:
    """A machine's kernel log: the run's console is the lines dmesg gained (harness.guest.remote.Console)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def _dmesg(self, conn: Connection) -> str:
        if not conn.active:
            return ""
        done, text = conn.run(f"{self.prefix}dmesg", timeout=60)
        return text if done.ok else ""

    def mark(self, conn: Connection) -> str:
        return self._dmesg(conn)

    def window(self, mark: str, token: str, conn: Connection, run_dir: Path) -> str:
        after = self._dmesg(conn)
        (run_dir / "dmesg-before.txt").write_text(mark)
        (run_dir / "dmesg-after.txt").write_text(after)
        return dmesg_new(mark, after) if after else ""

    def text(self) -> None:
        return None  # no live console: nothing to wait for


class Connected:
    """The machine as harness.guest.remote.Guest sees it: gone when the connection is."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def gone(self) -> str | None:
        return None if self.conn.active else "the SSH connection is down"

    def wait_gone(self, timeout: float) -> bool:
        return not self.conn.active


class SshTarget(Backend):
    """The ssh:NAME backend."""

    name = "ssh"
    usage = "ssh:NAME[:DISK]"
    help = "a machine named in targets.yaml ($HARNESS_TARGETS), running its own kernel; it is never rebooted"
    persistent = True
    own_toolchain = True

    def __init__(self, target: Target, disk: str | None):
        super().__init__()
        self.target = target
        self.disk = disk
        self.name = f"ssh:{target.name}"
        self.conn: Connection | None = None
        self.release = ""  # the target's `uname -r`: the kernel the runs really ran on
        self._disk_checked = False

    @classmethod
    def parse(cls, arg: str) -> SshTarget:
        name, _, disk = arg.partition(":")
        if not name:
            raise GuestError("backend ssh needs a target name: --backend ssh:NAME")
        target = load_target(name)
        return cls(target, target.device(disk or None))

    # --- session ------------------------------------------------------------------------

    def open(self, folder: Path, *, progress=None) -> None:
        super().open(folder, progress=progress)
        conn = self._connect()
        self.release = conn.check("uname -r", what="uname", timeout=60).strip()
        self.event(f"connected to {self.target.user}@{self.target.host}:{self.target.port}, kernel {self.release}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        super().close()

    def replace(self, reason: str) -> None:
        """A machine this backend cannot reboot: the later runs say they ran on an unfit kernel."""
        if not self.unfit:  # kept: this machine is never replaced
            super().replace(reason)
            self.event(f"the last run left the kernel unfit ({reason}); this backend cannot reboot {self.target.host}")

    def _connect(self) -> Connection:
        if self.conn is None or not self.conn.active:
            if self.conn is not None:
                self.conn.close()
            self.conn = Connection(self.target.endpoint()).connect()
        return self.conn

    @property
    def _prefix(self) -> str:
        return "sudo -n " if self.target.sudo else ""

    def check_disk(self, conn: Connection) -> str:
        """The disk, resolved on the target, after the allow-list and safety checks."""
        q = shlex.quote
        allowed = " ".join(q(d) for d in self.target.disks)
        script = f"""set -e
dev=$(readlink -f {q(self.disk)})
ok=
for a in {allowed}; do [ "$(readlink -f "$a")" = "$dev" ] && ok=1; done
[ -n "$ok" ] || {{ echo "resolves to $dev, which none of the config's disks is"; exit 3; }}
[ -b "$dev" ] || {{ echo "$dev is not a block device"; exit 3; }}
if grep -q "^$dev[p0-9]* " /proc/mounts; then echo "$dev (or a partition) is mounted"; exit 3; fi
if grep -q "^$dev[p0-9]* " /proc/swaps; then echo "$dev (or a partition) is swap"; exit 3; fi
echo "$dev"
"""
        done, text = conn.run(self._prefix + f"bash -c {q(script)}", timeout=60)
        if not done.ok:
            said = text.strip().splitlines()[-1] if text.strip() else f"exit {done.returncode}"
            raise GuestError(f"target {self.target.name}: disk {self.disk}: {said}: refusing to touch it")
        return text.strip().splitlines()[-1]

    # --- one run -------------------------------------------------------------------------

    def _staging(self, req: GuestRequest) -> Staging:
        t = self.target
        tag = f"{(self.folder or req.run_dir.parent).name}-{req.run_dir.name}"
        remote_run = posixpath.join(t.workdir, "runs", tag)
        image = None
        if req.disks:
            image = (posixpath.join(t.loop_dir, f"{tag}.img") if not self.disk and t.loop_dir
                     else posixpath.join(remote_run, "disk.img"))
        device = None if image is None else (SpareDisk(self.disk, image) if self.disk else LoopImage(image))
        mkdir = f"{self._prefix}mkdir -p {shlex.quote(t.loop_dir)}" if t.loop_dir and not self.disk else ""
        return Staging(guest_run=remote_run, device=device, image_to=image, prefix=self._prefix,
                       console_level=False, prepare=mkdir)

    def run(self, req: GuestRequest, *, watchdog=None, timeout: float | None = None) -> GuestRun:
        started = time.monotonic()
        t = self.target
        out = req.run_dir / "guest.log"
        try:
            conn = self._connect()
            if self.disk and not self._disk_checked:
                resolved = self.check_disk(conn)
                self._disk_checked = True
                self.event(f"disk {self.disk} ({resolved}) passed the allow-list and is not in use")
            if not self.release:
                self.release = conn.check("uname -r", what="uname", timeout=60).strip()
            info: dict = {"backend": self.name, "host": t.host, "device": self.disk or "loop",
                          "kernel_release": self.release}
            if self.unfit:
                info["kernel_unfit_before"] = self.unfit
                self.event(f"{req.run_dir.name} runs on a kernel an earlier run left unfit: {self.unfit}", out)
            self.event(f"{req.run_dir.name} on {t.user}@{t.host} ({self.disk or 'loop image in ' + str(t.loop_dir)})",
                       out)
            run = run_over(req, conn, Connected(conn), DmesgConsole(self._prefix), self._staging(req),
                           watchdog=watchdog, timeout=timeout, info=info)
        finally:
            self.ran()
        detail = run.detail
        if detail and "went down" in detail:
            detail = (f"lost the SSH connection to {t.host} during the run (the machine may have crashed: its "
                      "console is not visible over SSH)")
        return GuestRun(run.returncode, time.monotonic() - started, run.console_log, run.output_log,
                        ("ssh", f"{t.user}@{t.host}", "-p", str(t.port)), detail=detail, info=run.info,
                        signals=run.signals)


BACKENDS.add("ssh", SshTarget)
