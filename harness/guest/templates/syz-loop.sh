  local n made=
  if [ ! -e @DEV@/loop-control ] && [ ! -d @SYS@/module/loop ]; then
    modprobe loop || echo "@TAG@ modprobe loop failed"
  fi
  [ -e @DEV@/loop-control ] || [ -d @SYS@/module/loop ] || {
    echo "@TAG@ no loop driver in this kernel (CONFIG_BLK_DEV_LOOP): the reproducer cannot attach its images"; return 1; }
  if [ ! -c @DEV@/loop-control ]; then
    mknod -m 0660 @DEV@/loop-control c 10 237 2>/dev/null && made+=" loop-control"
    [ -c @DEV@/loop-control ] || { echo "@TAG@ cannot make @DEV@/loop-control"; return 1; }
  fi
  for ((n = 0; n < @LOOPS@; n++)); do
    [ -b @DEV@/loop$n ] && continue
    mknod -m 0660 @DEV@/loop$n b 7 $n 2>/dev/null && made+=" loop$n"
    [ -b @DEV@/loop$n ] || { echo "@TAG@ cannot make @DEV@/loop$n"; return 1; }
  done
  echo "@TAG@ loop0..loop@LAST@ and loop-control ready in @DEV@ (made:${made:- none, all there})"
