"""virtme-ng backend: `vng -r KERNEL -- CMD` with the console in its own file.

With ``--verbose`` vng sends the kernel console (ttyS0) to its stderr and the
command's output to its stdout; both go straight into files in the run folder.
The guest steps send their own stderr to stdout, so console.log holds only the
kernel (and vng's own few lines).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from filelock import FileLock

from harness import proc
from harness.errors import GuestError, MissingTool
from harness.guest import BACKENDS, GuestRequest, GuestRun
from harness.kernels import Kernel
from harness.paths import cache_dir

log = logging.getLogger(__name__)

ACCELS = ("auto", "kvm", "tcg")
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
    """vng from PATH, or beside the running interpreter (a venv's bin/)."""
    found = shutil.which("vng") or shutil.which("vng", path=str(Path(sys.executable).parent))
    if not found:
        raise MissingTool("vng (virtme-ng) not found", hint="pip install virtme-ng, or run `harness setup`")
    return found


def drive_opts(req: GuestRequest) -> list[str]:
    """QEMU arguments for the test disks: raw virtio-blk, serial as the name."""
    opts: list[str] = []
    for i, disk in enumerate(req.disks):
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


def vng_argv(req: GuestRequest, vng: str = "vng") -> list[str]:
    """The full vng command line for ``req`` (pure: no probing, no I/O)."""
    argv = [vng, "--run", str(req.kernel.boot_image or req.kernel.image), "--verbose", "--cpus", str(req.cpus), "--memory", req.memory]
    # QEMU 7.2's C virtiofsd cannot serve vng here; trying it costs ~3 s a boot.
    argv.append("--force-9p")
    if req.accel == "tcg":
        argv.append("--disable-kvm")
    elif req.accel != "kvm":
        raise ValueError(f"accel must be kvm or tcg, not {req.accel!r}")
    if req.cwd is not None:
        argv += ["--cwd", str(req.cwd)]
    for d in req.rwdirs:
        argv += ["--rwdir", str(d)]
    boot = (*BOOT_CMDLINE, "module_blacklist=" + ",".join(UNUSED_MODULES)) if req.lean else BOOT_CMDLINE
    for opt in (*boot, *req.cmdline):
        argv += ["--append", opt]
    qemu = drive_opts(req)
    if qemu:
        argv.append("--qemu-opts=" + " ".join(qemu))  # must stay last before --
    argv += ["--", *req.command]
    return argv


class Vng:
    name = "vng"

    def run(self, req: GuestRequest, run_dir: Path, *, timeout: float, watchdog=None) -> GuestRun:
        argv = vng_argv(req, vng_binary())
        console = run_dir / "console.log"
        output = run_dir / "guest.log"
        (run_dir / "vng.cmd").write_text(" ".join(argv) + "\n")
        done = proc.run(
            argv,
            stdout_path=output,
            stderr_path=console,
            timeout=timeout,
            watchdog=watchdog,
            check=False,
            cwd=run_dir,
            env={"PYTHONUNBUFFERED": "1"},
        )
        return GuestRun(done.returncode, done.seconds, console, output, tuple(argv))


BACKENDS.add("vng", Vng)


# --- accelerator choice -------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_kvm(kernel: Kernel, timeout: float = 45.0) -> tuple[bool, str]:
    """Boot ``kernel`` under KVM running `true`; False if it hangs or fails."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not accessible"
    req = GuestRequest(kernel=kernel, command=("true",), accel="kvm", cpus=1, memory="512M")
    probe_dir = cache_dir("accel-probe")
    done = proc.run(
        vng_argv(req, vng_binary()),
        log_path=probe_dir / "probe.log",
        timeout=timeout,
        check=False,
        capture=True,
        cwd=probe_dir,
    )
    if done.timed_out:
        return False, f"a KVM boot did not finish in {timeout:.0f} s (paravirtual KVM hangs stock kernels)"
    if not done.ok:
        last = next((ln for ln in reversed(done.output.splitlines()) if "qemu" in ln or "error" in ln.lower()), "")
        return False, f"a KVM boot failed (exit {done.returncode}{': ' + last.strip()[:160] if last else ''})"
    return True, f"a KVM boot took {done.seconds:.1f} s"


def choose_accel(requested: str, kernel: Kernel, *, timeout: float = 45.0) -> tuple[str, str]:
    """(accel, reason). ``auto`` probes KVM once per host boot and kernel."""
    if requested not in ACCELS:
        raise GuestError(f"--accel must be one of {', '.join(ACCELS)}, not {requested!r}")
    env = os.environ.get("HARNESS_ACCEL")
    if requested == "auto" and env in ("kvm", "tcg"):
        return env, "forced by HARNESS_ACCEL"
    if requested != "auto":
        return requested, "forced by --accel"
    key = hashlib.sha256(f"{_boot_id()}|{kernel.image}|{kernel.release}".encode()).hexdigest()[:16]
    cache = cache_dir("accel-probe") / f"{key}.json"
    with FileLock(str(cache) + ".lock"):
        if cache.exists():
            saved = json.loads(cache.read_text())
            return saved["accel"], saved["reason"] + " (probed earlier this host boot)"
        ok, why = probe_kvm(kernel, timeout)
        accel = "kvm" if ok else "tcg"
        reason = f"auto: {why}"
        cache.write_text(json.dumps({"accel": accel, "reason": reason}))
    return accel, reason
