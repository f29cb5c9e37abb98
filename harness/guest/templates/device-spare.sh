# device: a spare disk the target's config names; the run's image is written onto it first
HARNESS_LOOP=
find_device() {
  DEV=@DISK@
  [ -b "$DEV" ] || { echo "$DEV is not a block device"; return 1; }
  if grep -q "^$(readlink -f "$DEV")[p0-9]* " /proc/mounts; then echo "$DEV is mounted: refusing to overwrite it"; return 1; fi
  dd if=@IMAGE@ of="$DEV" bs=1M conv=fsync status=none || { echo "writing the image to $DEV failed"; return 1; }
}
harness_cleanup() {
  cd /
  mountpoint -q @MNT@ && umount -l @MNT@
}
trap harness_cleanup EXIT
