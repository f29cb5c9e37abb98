"""Direct PVH boot: the vmlinux unpacked from a bzImage, and the Xen note that says QEMU can boot it."""

from __future__ import annotations

import gzip
import lzma
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from harness.errors import KernelError
from harness.kernels import pvh


def _elf(notes: list[tuple[bytes, int]]) -> bytes:
    """A minimal ELF64 with one PT_NOTE segment holding ``notes`` (name, type)."""
    blob = b""
    for name, ntype in notes:
        n = name + b"\0"
        desc = b"\x00\x00\x00\x01"
        blob += struct.pack("<III", len(n), len(desc), ntype) + n.ljust((len(n) + 3) // 4 * 4, b"\0") + desc
    phoff, phentsize = 64, 56
    note_off = phoff + phentsize
    header = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0xFFFFFFFF81000000, phoff, 0, 0, 64, phentsize, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 4, 4, note_off, 0, 0, len(blob), len(blob), 4)
    return header + phdr + blob


def _bzimage(payload: bytes, setup_sects: int = 3) -> bytes:
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    offset = 0x40
    struct.pack_into("<II", setup, 0x248, offset, len(payload) + 4)
    return bytes(setup) + b"\0" * offset + payload + struct.pack("<I", 12345) + b"trailing setup data"


def test_has_pvh_note_reads_the_xen_phys32_entry_note():
    assert pvh.has_pvh_note(_elf([(b"Xen", 6), (b"Xen", pvh.XEN_ELFNOTE_PHYS32_ENTRY)]))
    assert not pvh.has_pvh_note(_elf([(b"Xen", 6), (b"GNU", pvh.XEN_ELFNOTE_PHYS32_ENTRY)]))
    assert not pvh.has_pvh_note(b"MZ not an elf at all" + b"\0" * 100)


def _zstd(data: bytes) -> bytes:
    if shutil.which("zstd") is None:
        pytest.skip("zstd is not installed (harness setup installs it)")
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


@pytest.mark.parametrize("fmt, pack", [("xz", lambda b: lzma.compress(b, format=lzma.FORMAT_XZ)),
                                        ("gzip", gzip.compress), ("zstd", _zstd)])
def test_payload_is_found_through_the_setup_header_and_unpacked(fmt, pack):
    elf = _elf([(b"Xen", pvh.XEN_ELFNOTE_PHYS32_ENTRY)])
    found, data = pvh.payload(_bzimage(pack(elf)))
    assert found == fmt
    assert pvh.decompress(found, data) == elf  # the kernel's 4-byte size suffix is left alone


def test_payload_refuses_what_is_not_a_bzimage():
    with pytest.raises(KernelError, match="not a bzImage"):
        pvh.payload(b"\0" * 4096)
    with pytest.raises(KernelError, match="unsupported bzImage compression"):
        pvh.payload(_bzimage(b"BZh91AY&SY" + b"\0" * 64))


def test_ensure_pvh_unpacks_once_beside_the_image_or_remembers_there_is_none(tmp_path):
    boot = tmp_path / "boot"
    boot.mkdir()
    good = boot / "vmlinuz-6.1.0-56-amd64"
    good.write_bytes(_bzimage(lzma.compress(_elf([(b"Xen", pvh.XEN_ELFNOTE_PHYS32_ENTRY)]), format=lzma.FORMAT_XZ)))
    out = pvh.ensure_pvh(good)
    assert out == boot / "vmlinux-6.1.0-56-amd64" and pvh.has_pvh_note(out.read_bytes())
    good.write_bytes(b"changed")  # a second call uses what is there
    assert pvh.ensure_pvh(good) == out
    plain = boot / "bzImage"
    plain.write_bytes(_bzimage(gzip.compress(_elf([(b"Xen", 6)]))))
    assert pvh.ensure_pvh(plain) is None
    assert (boot / "bzImage.pvh.no-pvh").exists() and not (boot / "bzImage.pvh").exists()


def test_pvh_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("HARNESS_PVH", "0")
    assert not pvh.enabled()
    monkeypatch.delenv("HARNESS_PVH")
    assert pvh.enabled()


def test_pvh_path_names():
    assert pvh.pvh_path(Path("/b/vmlinuz-6.12.117+deb12-amd64")) == Path("/b/vmlinux-6.12.117+deb12-amd64")
    assert pvh.pvh_path(Path("/b/bzImage")) == Path("/b/bzImage.pvh")
