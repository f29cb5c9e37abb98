find_device() {  # the run's image: the virtio disk whose serial is @SERIAL@
  local d i
  for ((i = 0; i < 100; i++)); do
    for d in /sys/block/vd*; do
      [ -r "$d/serial" ] && [ "$(<"$d/serial")" = @SERIAL@ ] && DEV=/dev/${d##*/} && [ -b "$DEV" ] && return 0
    done
    sleep 0.1
  done
  echo "no virtio disk with serial "@SERIAL@; return 1
}
