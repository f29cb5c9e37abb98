  harness_syz_mounted @S@ && umount -l @S@
  [ -d @S@ ] || mkdir -p @S@
  mount -t tmpfs -o mode=1777 harness-syz @S@ || { echo "@TAG@ cannot mount a tmpfs on @S@"; return 1; }
  cd @S@ || return 1
  echo "@TAG@ scratch @S@ (tmpfs): the reproducer's working directory"
  local f line t
  local -a s
  HARNESS_SYZ_LOOPS=" "
  for f in @SYS@/block/loop*/loop/backing_file; do
    [ -e "$f" ] || continue
    f=${f%/loop/backing_file}; HARNESS_SYZ_LOOPS+="${f##*/} "
  done
  [ "$HARNESS_SYZ_LOOPS" = " " ] || echo "@TAG@ loop devices attached before the run (kept):$HARNESS_SYZ_LOOPS"
  read -r line < @PROC@/$$/stat; line=${line##*) }; s=($line); HARNESS_SYZ_SID=${s[3]}
  read -r line < @PROC@/1/stat; line=${line##*) }; s=($line)
  [ "${s[3]}" = "$HARNESS_SYZ_SID" ] && echo "@TAG@ note: the harness shares init's session $HARNESS_SYZ_SID"
  harness_syz_nap @NAP@
  read -r t _ < @PROC@/uptime; HARNESS_SYZ_T0=$((10#${t/./}))
  echo "@TAG@ after the run, processes of session $HARNESS_SYZ_SID started after uptime $t are leftovers"
