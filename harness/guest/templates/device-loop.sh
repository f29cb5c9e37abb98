# device: a loop device over the run's image copy (a long-lived guest gets no new virtio disk per run)
HARNESS_LOOP=
HARNESS_STAGED=
find_device() {
  local img=@IMAGE@
  modprobe loop 2>/dev/null
@STAGING@
  DEV=$(losetup --find --show "$img") || { echo "losetup $img failed"; return 1; }
  HARNESS_LOOP=$DEV
}
harness_cleanup() {
  cd /
  mountpoint -q @MNT@ && umount -l @MNT@
  [ -n "$HARNESS_LOOP" ] && losetup -d "$HARNESS_LOOP"
}
trap harness_cleanup EXIT
