"""vng: one boot per run (``vng -r KERNEL -- bash guest.sh``) with the console in its own file.

With ``--verbose`` vng sends the kernel console (ttyS0) to its stderr and the
command's output to its stdout; both go straight into files in the run folder.
The guest steps send their own stderr to stdout, so console.log holds only the
kernel (and vng's own few lines).  The guest sees the host's root read-only
(9p) and may write its own run folder only (``--rwdir``): the binary it
compiles is left there and the harness caches it.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.errors import GuestError, MissingTool
from harness.guest.machine import BACKENDS, Backend, Disk, GuestRequest, GuestRun
from harness.guest.protocol import GuestOutput, VirtioDisk, script
from harness.kernels import Kernel

# Boot quietly (console speed under TCG is real time); the guest steps raise
# the console log level before the reproducer starts.
BOOT_CMDLINE = ("loglevel=1",)
# Modules udev would load for QEMU's q35 devices that no run uses.  Under TCG
# each costs seconds (kvm_amd alone ~10-20 s) and virtme-ng's init waits for
# udev to settle before the command starts.  Built-in kernels ignore this.
UNUSED_MODULES = (
    "kvm", "kvm_amd", "kvm_intel", "irqbypass", "ccp", "sr_mod", "cdrom", "sg", "ahci", "libahci",
    "libata", "iTCO_wdt", "iTCO_vendor_support", "intel_pmc_bxt", "i2c_i801", "i2c_smbus", "lpc_ich",
    "psmouse", "pcspkr", "serio_raw", "evdev", "button", "i6300esb", "qemu_fw_cfg", "joydev",
    "snd_pcsp", "intel_rapl_msr", "intel_rapl_common", "powernow_k8", "edac_mce_amd", "sp5100_tco",
    "rapl", "wmi",
    # SIMD crypto drivers run their self-tests at load: ~20 s under TCG.  The
    # generic versions serve the filesystems (crc32c_intel stays: ext4 csums).
    "crct10dif_pclmul", "crc32_pclmul", "ghash_clmulni_intel", "sha512_ssse3", "sha256_ssse3",
    "sha1_ssse3", "aesni_intel", "crypto_simd", "cryptd", "polyval_clmulni", "polyval_generic",
)


def vng_binary() -> str:
    """vng from PATH, or beside the running interpreter (a venv's bin/, not activated)."""
    found = shutil.which("vng") or shutil.which("vng", path=str(Path(sys.executable).parent))
    if not found:
        raise MissingTool("vng (virtme-ng) not found", hint="pip install virtme-ng, or run `harness setup`")
    return found


def vng_env(vng: str) -> dict[str, str]:
    """The environment vng runs in: its own bin/ first on PATH (vng starts virtme-run by name, and a
    virtualenv's harness may run without the venv activated); unbuffered Python output."""
    bindir = str(Path(vng).parent)
    if shutil.which("virtme-run", path=bindir) is None and shutil.which("virtme-run") is None:
        raise MissingTool(f"virtme-run not found beside {vng} nor on PATH",
                          hint="reinstall virtme-ng (pip install virtme-ng), or run `harness setup`")
    return {"PYTHONUNBUFFERED": "1", "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


@dataclass(frozen=True)
class VngBoot:
    """One vng command: a kernel, a guest size, what to share and attach, the command to run."""

    kernel: Kernel
    command: tuple[str, ...]  # argv run inside the guest
    accel: str  # "kvm" or "tcg"
    cpus: int = 2
    memory: str = "1G"
    disks: tuple[Disk, ...] = ()
    rwdirs: tuple[Path, ...] = ()
    cmdline: tuple[str, ...] = ()  # extra kernel boot options
    cwd: Path | None = None
    lean: bool = True  # blacklist the modules no run needs
    qemu_extra: tuple[str, ...] = ()  # more QEMU options (a NIC)


def drive_opts(boot: VngBoot) -> list[str]:
    """QEMU arguments for the test disks: raw virtio-blk, serial as the name."""
    opts: list[str] = []
    for i, disk in enumerate(boot.disks):
        path = str(disk.path)
        if "," in path or "=" in path:
            raise GuestError(f"disk path {path!r} contains ',' or '=': QEMU cannot take it")
        opts += [
            "-drive",
            f"if=none,id=hdisk{i},file={path},format=raw,cache=unsafe",
            "-device",
            f"virtio-blk-pci,drive=hdisk{i},serial={disk.serial}",
        ]
    return opts


def vng_argv(boot: VngBoot, vng: str = "vng") -> list[str]:
    """The full vng command line (pure: no probing, no I/O)."""
    argv = [vng, "--run", str(boot.kernel.boot_image or boot.kernel.image), "--verbose", "--cpus", str(boot.cpus),
            "--memory", boot.memory]
    # QEMU 7.2's C virtiofsd cannot serve vng here; trying it costs ~3 s a boot.
    argv.append("--force-9p")
    if boot.accel == "tcg":
        argv.append("--disable-kvm")
    elif boot.accel != "kvm":
        raise ValueError(f"accel must be kvm or tcg, not {boot.accel!r}")
    if boot.cwd is not None:
        argv += ["--cwd", str(boot.cwd)]
    for d in boot.rwdirs:
        argv += ["--rwdir", str(d)]
    options = (*BOOT_CMDLINE, "module_blacklist=" + ",".join(UNUSED_MODULES)) if boot.lean else BOOT_CMDLINE
    for opt in (*options, *boot.cmdline):
        argv += ["--append", opt]
    qemu = [*drive_opts(boot), *boot.qemu_extra]
    if qemu:
        argv.append("--qemu-opts=" + " ".join(qemu))  # virtme-run's --qemu-opts is greedy: last before --
    argv += ["--", *boot.command]
    return argv


def boot_for(req: GuestRequest, command: tuple[str, ...]) -> VngBoot:
    """A one-run vng boot for ``req``: its disks attached, its run folder the only writable share."""
    return VngBoot(kernel=req.kernel, command=command, accel=req.accel, cpus=req.cpus, memory=req.memory,
                   disks=req.disks, rwdirs=(req.run_dir,), cmdline=req.cmdline, cwd=req.run_dir, lean=req.lean)


class Vng(Backend):
    name = "vng"
    usage = "vng"
    help = "one boot per run (virtme-ng); the guest shares the host's root read-only and compiles there"
    shares_root = True
    attaches_disks = True

    def run(self, req: GuestRequest, *, watchdog=None, timeout: float | None = None) -> GuestRun:
        run_dir = req.run_dir
        steps = run_dir / "guest.sh"
        serial = req.disks[0].serial if req.disks else "none"
        steps.write_text(script(req.plan, VirtioDisk(serial) if req.disks else None))
        vng = vng_binary()
        argv = vng_argv(boot_for(req, ("bash", str(steps))), vng)
        console, output = run_dir / "console.log", run_dir / "guest.log"
        (run_dir / "vng.cmd").write_text(" ".join(argv) + "\n")
        done = proc.run(argv, stdout_path=output, stderr_path=console, timeout=timeout, watchdog=watchdog,
                        check=False, cwd=run_dir, env=vng_env(vng), leash=True)
        out = GuestOutput.parse(output.read_text(errors="replace") if output.exists() else "")
        info = {"backend": self.name, "taint_before": out.taint_before, "taint_after": out.taint_after}
        self.ran()
        detail = ((watchdog() if watchdog else None) or f"no exit within {timeout:.0f} s") if done.timed_out else None
        return GuestRun(done.returncode, done.seconds, console, output, tuple(argv), detail=detail, info=info)


BACKENDS.add("vng", Vng)
