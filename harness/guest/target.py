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

Per run: the run folder's inputs (source, guest steps) are copied to
``workdir`` with the harness's paths rewritten to theirs, the image copy to
``loop_dir`` (or onto the disk); the same steps run (compile on the target
with its own compiler, binary kept in ``workdir/binaries``); the kernel log
is read before and after (``dmesg-before.txt``, ``dmesg-after.txt``) and the
new lines are the run's console.log for the parser.  A machine whose kernel
got tainted cannot be rebooted from here: the run records it and the next
runs say they ran on a tainted kernel.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from harness import report
from harness.errors import GuestError, SpecError, UnknownName
from harness.guest import PARAMETRIC, GuestRequest, GuestRun, Persistent
from harness.guest.remote import (
    RunSignals,
    dmesg_new,
    kill_command,
    parse_taint,
    reboot_reason,
    taint_letters,
    with_block_device,
    wrapper,
)
from harness.guest.ssh import Connection, Endpoint
from harness.guest.steps import parse_steps
from harness.yamlio import Fields, load_mapping

PROBE_TIMEOUT = 15.0
UPLOAD_SKIP = ("disk.img", "result.json", "result.json.tmp", "guest.log", "console.log")


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


def rewrite_paths(text: str, mapping: dict[str, str]) -> str:
    """Replace local folder paths by their remote counterparts (longest first)."""
    for local in sorted(mapping, key=len, reverse=True):
        text = text.replace(local, mapping[local])
    return text


class SshTarget(Persistent):
    """The ssh:NAME backend."""

    name = "ssh"

    def __init__(self, arg: str):
        name, _, disk = arg.partition(":")
        if not name:
            raise GuestError("backend ssh needs a target name: --backend ssh:NAME")
        self.target = load_target(name)
        self.disk = self.target.device(disk or None)
        self.name = f"ssh:{name}"
        self.conn: Connection | None = None
        self.folder: Path | None = None
        self.progress = None
        self.tainted: str | None = None  # set once a run left the kernel unfit
        self.release = ""  # the target's `uname -r`: the kernel the runs really ran on
        self._disk_checked = False

    # --- session ------------------------------------------------------------------------

    def open(self, folder: Path, progress=None) -> None:
        self.folder, self.progress = folder, progress
        conn = self._connect()
        self.release = conn.check("uname -r", what="uname", timeout=60).strip()
        self._event(f"connected to {self.target.user}@{self.target.host}:{self.target.port}, kernel {self.release}")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.folder = None

    def _connect(self) -> Connection:
        if self.conn is None or not self.conn.active:
            if self.conn is not None:
                self.conn.close()
            self.conn = Connection(self.target.endpoint()).connect()
        return self.conn

    @property
    def _prefix(self) -> str:
        return "sudo -n " if self.target.sudo else ""

    def _sudo(self, command: str) -> str:
        return self._prefix + command

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
        done, text = conn.run(self._sudo(f"bash -c {q(script)}"), timeout=60)
        if not done.ok:
            said = text.strip().splitlines()[-1] if text.strip() else f"exit {done.returncode}"
            raise GuestError(f"target {self.target.name}: disk {self.disk}: {said}: refusing to touch it")
        return text.strip().splitlines()[-1]

    # --- one run -------------------------------------------------------------------------

    def _run(self, req: GuestRequest, run_dir: Path, *, timeout: float | None, watchdog) -> GuestRun:
        started = time.monotonic()
        t = self.target
        out, console = run_dir / "guest.log", run_dir / "console.log"
        conn = self._connect()
        if self.disk and not self._disk_checked:
            resolved = self.check_disk(conn)
            self._disk_checked = True
            self._event(f"disk {self.disk} ({resolved}) passed the allow-list and is not in use")
        if not self.release:
            self.release = conn.check("uname -r", what="uname", timeout=60).strip()
        info: dict = {"backend": self.name, "host": t.host, "device": self.disk or "loop", "kernel_release": self.release}
        if self.tainted:
            info["kernel_unfit_before"] = self.tainted
            self._event(f"{run_dir.name} runs on a kernel an earlier run left unfit: {self.tainted}", out)

        tag = f"{(self.folder or run_dir.parent).name}-{run_dir.name}"
        remote_run = posixpath.join(t.workdir, "runs", tag)
        mapping = {str(run_dir): remote_run}
        for d in req.rwdirs:
            if d != run_dir:
                mapping[str(d)] = posixpath.join(t.workdir, d.name)
        q = shlex.quote
        conn.check(self._sudo(f"mkdir -p {' '.join(q(v) for v in mapping.values())}"
                              + (f" {q(t.loop_dir)}" if t.loop_dir and not self.disk else "")),
                   what="mkdir", timeout=60)

        # inputs: the run folder's files (paths rewritten in the scripts), the image
        for f in sorted(run_dir.iterdir()):
            if f.is_file() and f.name not in UPLOAD_SKIP:
                conn.put(f, posixpath.join(remote_run, f.name), prefix=self._prefix)
        image = None
        if req.disks:
            local_img = req.disks[0].path
            image = (posixpath.join(t.loop_dir, f"{tag}.img") if not self.disk and t.loop_dir
                     else posixpath.join(remote_run, "disk.img"))
            conn.put(local_img, image, prefix=self._prefix)
        cmd = list(req.command)
        if len(cmd) == 2 and cmd[0] == "bash":
            steps_text = rewrite_paths(Path(cmd[1]).read_text(), mapping)
            if image is not None:
                steps_text = with_block_device(steps_text, image=image, disk=self.disk)
            local_steps = run_dir / "guest-target.sh"
            local_steps.write_text(steps_text)
            remote_steps = posixpath.join(remote_run, local_steps.name)
            conn.put(local_steps, remote_steps, prefix=self._prefix)
        else:
            raise GuestError(f"{self.name} runs the guest steps script only (got {shlex.join(cmd)})")
        token = f"{run_dir.name}-{uuid.uuid4().hex[:8]}"
        sid = posixpath.join(remote_run, "steps.sid")
        local_wrapper = run_dir / "ssh-run.sh"
        local_wrapper.write_text(wrapper(token, remote_steps, sid, cwd=remote_run, console_level=False))
        conn.put(local_wrapper, posixpath.join(remote_run, local_wrapper.name), prefix=self._prefix)

        before = conn.check(self._sudo("dmesg"), what="dmesg", timeout=60)
        (run_dir / "dmesg-before.txt").write_text(before)
        self._event(f"{run_dir.name} on {t.user}@{t.host} ({self.disk or 'loop image in ' + str(t.loop_dir)})", out)
        done, text = conn.run(self._sudo(f"bash {q(posixpath.join(remote_run, local_wrapper.name))}"),
                              output=out, timeout=timeout, watchdog=watchdog)
        detail = None
        if done.killed:
            ok, said = conn.probe(PROBE_TIMEOUT) if conn.active else (False, "connection down")
            info["probe"] = {"responsive": ok, "said": said}
            if ok:
                conn.run(self._sudo(f"bash -c {q(kill_command(sid))}"), timeout=30)
            detail = (f"{done.killed}; probe: "
                      + ("machine responsive: the reproducer is slow or stuck; its processes were killed" if ok
                         else "machine unresponsive: the kernel hung") + f" ({said})")
        if done.lost:
            detail = detail or (f"lost the SSH connection to {t.host} during the run (the machine may have crashed:"
                                " its console is not visible over SSH)")
        after = ""
        if conn.active:
            after_done, after = conn.run(self._sudo("dmesg"), timeout=60)
            if not after_done.ok:
                after = ""
        (run_dir / "dmesg-after.txt").write_text(after)
        console.write_text(dmesg_new(before, after) if after else "")

        t_before, t_after = parse_taint(text)
        run_step = next((s for s in parse_steps(text) if s.name == "run"), None)
        titles = tuple(r.title for r in report.parse(console.read_text(errors="replace")))
        unfit = reboot_reason(RunSignals(t_before, t_after, lost=done.lost, killed=done.killed, reports=titles,
                                         run_rc=run_step.rc if run_step else 0))
        if unfit and not self.tainted:
            self.tainted = unfit
            self._event(f"{run_dir.name} left the kernel unfit ({unfit}); this backend cannot reboot {t.host}", out)
        info.update(taint_before=taint_letters(t_before), taint_after=taint_letters(t_after),
                    returncode=done.returncode, unfit_after=unfit, ssh_seconds=round(done.seconds, 2))

        if conn.active:
            evidence = "@@lost " in text or any(s.name == "check" and s.rc not in (0, None) for s in parse_steps(text))
            if evidence and image is not None and not self.disk:
                conn.get(image, run_dir / "disk.img", prefix=self._prefix)  # the image is the evidence: bring it home
            cleanup = f"rm -rf {q(remote_run)}" + (f" {q(image)}" if image else "")
            conn.run(self._sudo(cleanup), timeout=60)
        return GuestRun(done.returncode, time.monotonic() - started, console, out,
                        ("ssh", f"{t.user}@{t.host}", "-p", str(t.port)), detail=detail, info=info)


PARAMETRIC["ssh"] = SshTarget
