from pathlib import Path

import pytest

from harness.errors import GuestError, UnknownName
from harness.guest import accel as accel_mod
from harness.guest.accel import choose_accel
from harness.guest.backends import BACKENDS, select
from harness.guest.machine import Disk
from harness.guest.vng import UNUSED_MODULES, VngBoot, drive_opts, vng_argv
from harness.kernels import Kernel

KERNEL = Kernel("debian:6.1.0-47", "6.1.0-47-amd64", "6.1.170", Path("/k/boot/vmlinuz-6.1.0-47-amd64"))


def request(**kw) -> VngBoot:
    base = dict(kernel=KERNEL, command=("bash", "/run/guest.sh"), accel="tcg")
    return VngBoot(**{**base, **kw})


def test_tcg_argv_is_complete_and_ordered():
    argv = vng_argv(
        request(
            disks=(Disk(Path("/run/disk.img"), "harness-img0"),),
            rwdirs=(Path("/run"),),
            cmdline=("oops=panic",),
            cwd=Path("/run"),
            cpus=2,
            memory="1G",
        ),
        vng="/venv/bin/vng",
    )
    assert argv[:3] == ["/venv/bin/vng", "--run", "/k/boot/vmlinuz-6.1.0-47-amd64"]
    assert "--verbose" in argv  # the console goes to stderr only with --verbose
    assert "--disable-kvm" in argv
    assert argv[argv.index("--cpus") + 1] == "2" and argv[argv.index("--memory") + 1] == "1G"
    appended = [argv[i + 1] for i, a in enumerate(argv) if a == "--append"]
    assert appended[0] == "loglevel=1"
    assert appended[-1] == "oops=panic"  # the spec's options come last and win
    assert any(a.startswith("module_blacklist=kvm,") for a in appended)
    qemu = [a for a in argv if a.startswith("--qemu-opts=")]
    assert qemu == [
        "--qemu-opts=-drive if=none,id=hdisk0,file=/run/disk.img,format=raw,cache=unsafe "
        "-device virtio-blk-pci,drive=hdisk0,serial=harness-img0"
    ]
    # --qemu-opts is greedy in virtme-run: it must be the last option before --.
    assert argv.index(qemu[0]) == argv.index("--") - 1
    assert argv[-3:] == ["--", "bash", "/run/guest.sh"]


def test_kvm_argv_has_no_disable_flag():
    assert "--disable-kvm" not in vng_argv(request(accel="kvm"))


def test_bad_accel_rejected():
    with pytest.raises(ValueError):
        vng_argv(request(accel="hvf"))


def test_not_lean_keeps_modules():
    argv = vng_argv(request(lean=False))
    assert not any(a.startswith("module_blacklist=") for a in argv)


def test_blacklist_keeps_what_filesystems_need():
    for needed in ("crc32c_intel", "ext4", "xfs", "virtio_blk", "9p", "9pnet_virtio", "virtio_console"):
        assert needed not in UNUSED_MODULES


def test_disk_path_with_comma_rejected():
    with pytest.raises(GuestError, match="contains ','"):
        drive_opts(request(disks=(Disk(Path("/a,b/disk.img"), "x"),)))


def test_accel_forced(monkeypatch):
    monkeypatch.delenv("HARNESS_ACCEL", raising=False)
    assert choose_accel("tcg", KERNEL) == ("tcg", "forced by --accel")
    assert choose_accel("kvm", KERNEL)[0] == "kvm"
    monkeypatch.setenv("HARNESS_ACCEL", "tcg")
    assert choose_accel("auto", KERNEL) == ("tcg", "forced by HARNESS_ACCEL")
    with pytest.raises(GuestError):
        choose_accel("fast", KERNEL)


def test_accel_auto_probe_is_cached(monkeypatch):
    calls = []

    def fake_probe(kernel, timeout):
        calls.append(kernel.name)
        return False, "a KVM boot did not finish in 45 s"

    monkeypatch.delenv("HARNESS_ACCEL", raising=False)
    monkeypatch.setattr(accel_mod, "probe_kvm", fake_probe)
    assert choose_accel("auto", KERNEL)[0] == "tcg"
    accel, why = choose_accel("auto", KERNEL)
    assert accel == "tcg" and "earlier" in why
    assert calls == ["debian:6.1.0-47"]


def test_backend_registry():
    assert select("vng").name == "vng"
    with pytest.raises(UnknownName, match="Unknown guest backend 'qemu'. Available: snapshot, ssh, vng, vng-ssh"):
        select("qemu")
    assert "vng" in BACKENDS
