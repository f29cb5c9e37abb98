"""Direct PVH boot: the uncompressed vmlinux inside a bzImage, for QEMU's -kernel.

Under TCG the kernel's own decompressor is the slowest part of a boot's first
seconds: Debian's 6.1 vmlinuz (XZ, 8 MB -> 66 MB) takes about 5 s to unpack
itself before the first console line.  A kernel built with CONFIG_PVH=y
carries a Xen ELF note (XEN_ELFNOTE_PHYS32_ENTRY) that QEMU's -kernel
understands: given the ELF vmlinux, QEMU loads it and jumps to the 32-bit
PVH entry, skipping the real-mode setup and the decompressor.  The host
unpacks the payload once (Python's lzma/zlib, or the ``zstd`` tool) and keeps
it beside the vmlinuz, so virtme-ng still finds the modules next to it.

The kernel is the same code either way; only the boot path differs, and PVH
boots without KASLR ("Kernel Offset: disabled"), so addresses match
System.map directly.

The unpacked vmlinux's sum is recorded beside it (``vmlinux-R.sha256``) and
checked on every use: a truncated or altered one is unpacked again.
"""

from __future__ import annotations

import logging
import lzma
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import harness.kernels.integrity as integrity
from harness.errors import KernelError

log = logging.getLogger(__name__)
XEN_ELFNOTE_PHYS32_ENTRY = 18
_PT_NOTE = 4
_MAGICS = {
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x1f\x8b": "gzip",
}


def enabled() -> bool:
    """Direct PVH boot is on unless ``HARNESS_PVH=0`` (then every kernel boots its bzImage)."""
    return os.environ.get("HARNESS_PVH", "1") != "0"


def payload(bzimage: bytes) -> tuple[str, bytes]:
    """(format, compressed bytes) of a bzImage's kernel payload, from its setup header."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        raise KernelError("not a bzImage (no 'HdrS' setup header)")
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    if offset == 0 or length == 0:
        raise KernelError("this bzImage's setup header has no payload offset (boot protocol < 2.08)")
    start = (setup_sects + 1) * 512 + offset
    data = bzimage[start:start + length]
    for magic, fmt in _MAGICS.items():
        if data.startswith(magic):
            return fmt, data
    raise KernelError(f"unsupported bzImage compression (payload starts {data[:6].hex()}): "
                      "xz, zstd and gzip are supported")


def decompress(fmt: str, data: bytes) -> bytes:
    """The payload unpacked: the kernel appends its 4-byte size after the stream, which is ignored."""
    if fmt == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if fmt == "gzip":
        return zlib.decompressobj(wbits=31).decompress(data)
    if fmt == "zstd":
        zstd = shutil.which("zstd")
        if zstd is None:
            raise KernelError("this kernel is zstd-compressed and the zstd tool is missing",
                              hint="apt-get install zstd (or run `harness setup`)")
        # zstd -d refuses trailing garbage after the frame: cut the kernel's size suffix
        done = subprocess.run([zstd, "-q", "-d", "-c"], input=data[:-4], capture_output=True, check=False)
        if done.returncode != 0:
            raise KernelError(f"zstd could not unpack the kernel: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout
    raise KernelError(f"unsupported compression {fmt!r}")


def has_pvh_note(elf: bytes) -> bool:
    """True for an x86-64 ELF with a Xen PHYS32_ENTRY note (CONFIG_PVH=y)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:  # ELFCLASS64, little-endian
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != _PT_NOTE:
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def pvh_path(image: Path) -> Path:
    """Where the unpacked ELF of ``image`` lives: beside it (vmlinuz-R -> vmlinux-R)."""
    name = image.name
    return image.with_name("vmlinux-" + name.removeprefix("vmlinuz-") if name.startswith("vmlinuz-") else name + ".pvh")


def ensure_pvh(image: Path) -> Path | None:
    """The PVH-bootable ELF for ``image`` (unpacked once, kept beside it), or None
    when the kernel has no PVH entry.  The caller holds the kernel's lock."""
    out = pvh_path(image)
    if out.exists():
        damaged = integrity.file_problem(out)
        if damaged is None:
            return out
        log.warning("%s is damaged (%s): unpacking it again", out, damaged)
        out.unlink()  # never booted
    marker = out.with_name(out.name + ".no-pvh")
    if marker.exists():
        return None
    elf = decompress(*payload(image.read_bytes()))
    if not has_pvh_note(elf):
        marker.write_text("the unpacked kernel has no XEN_ELFNOTE_PHYS32_ENTRY (CONFIG_PVH is off)\n")
        return None
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    tmp.write_bytes(elf)
    tmp.replace(out)
    integrity.record_file(out)
    return out
