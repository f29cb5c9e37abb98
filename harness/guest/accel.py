"""The accelerator: ``auto`` boots the kernel once under KVM and falls back to TCG when that hangs or fails.

On these machines /dev/kvm is a paravirtual KVM that hangs or crashes stock
kernels; the answer is cached per host boot and kernel, with its reason.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from filelock import FileLock

from harness import proc
from harness.errors import GuestError
from harness.guest.vng import VngBoot, vng_argv, vng_binary, vng_env
from harness.kernels import Kernel
from harness.options import Accel, RunOptions
from harness.paths import cache_dir

ACCELS = ("auto", "kvm", "tcg")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def probe_kvm(kernel: Kernel, timeout: float = 45.0) -> tuple[bool, str]:
    """Boot ``kernel`` under KVM running `true`; False if it hangs or fails."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not accessible"
    boot = VngBoot(kernel=kernel, command=("true",), accel="kvm", cpus=1, memory="512M")
    probe_dir = cache_dir("accel-probe")
    vng = vng_binary()
    done = proc.run(vng_argv(boot, vng), log_path=probe_dir / "probe.log", timeout=timeout, check=False,
                    capture=True, cwd=probe_dir, env=vng_env(vng), leash=True)
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


def accel_for(options: RunOptions, kernel: Kernel) -> Accel:
    """The accelerator ``kernel`` runs with under ``options`` (none for a machine's own kernel), and why."""
    if options.backend.partition(":")[0] == "ssh":
        return Accel("-", f"not used: {options.backend} runs on the target's own kernel")
    return Accel(*choose_accel(options.accel, kernel))
