"""The snapshot backend: initramfs.py (the guest's root), qmp.py (QEMU's control socket), machine.py (the backend)."""
