# --- syzkaller environment (harness/repro/syzkaller.py) ---
harness_syz_nap() {  # harness_syz_nap SECONDS: sleep without starting a program
  [ -n "$HARNESS_SYZ_FD" ] || exec {HARNESS_SYZ_FD}<> <(:) 2>/dev/null || HARNESS_SYZ_FD=
  if [ -n "$HARNESS_SYZ_FD" ]; then read -r -t "$1" -u "$HARNESS_SYZ_FD" _; else sleep "$1"; fi
  return 0
}
harness_syz_mounted() {  # harness_syz_mounted PATH: something is mounted on PATH
  local d m _
  while read -r d m _; do [ "$m" = "$1" ] && return 0; done < /proc/self/mounts
  return 1
}
harness_syz_fs() {  # harness_syz_fs TYPE OPTION: TYPE registered (/proc/filesystems), loading fs-TYPE if not
  local a b
  while read -r a b; do [ "${b:-$a}" = "$1" ] && { echo "harness-syz: filesystem $1: available"; return 0; }; done < /proc/filesystems
  if modprobe -q "fs-$1" 2>/dev/null; then
    while read -r a b; do [ "${b:-$a}" = "$1" ] && { echo "harness-syz: filesystem $1: module loaded"; return 0; }; done < /proc/filesystems
  fi
  echo "harness-syz: filesystem $1: not in this kernel ($2): its $1 mounts fail"
}
harness_syz_feature() {  # NAME PATH MODULES CONFIGS EFFECT: probe a feature, loading its modules if missing
  local m i
  if [ ! -e "$2" ] && [ -n "$3" ]; then
    for m in $3; do modprobe -q "$m" 2>/dev/null; done
    for ((i = 0; i < 20; i++)); do [ -e "$2" ] && break; harness_syz_nap 0.05; done
  fi
  if [ -e "$2" ]; then echo "harness-syz: has $1 ($2)"; else echo "harness-syz: lacks $1: no $2 ($4): $5"; fi
  return 0
}
harness_syz_setup() {
  echo 'harness-syz: syzkaller environment: loop0..loop7 + /dev/loop-control (loop loaded)'
  echo 'harness-syz: syzkaller environment: filesystems ext4 (modules loaded when needed)'
  echo 'harness-syz: syzkaller environment: working directory /tmp/harness-syz (tmpfs, fresh each run)'
  echo 'harness-syz: syzkaller environment: boot options panic_on_warn=1 oops=panic'
  echo 'harness-syz: syzkaller environment: checked: cgroups'
  echo 'harness-syz: syzkaller environment: its time limit is its normal end'
  local n made=
  if [ ! -e /dev/loop-control ] && [ ! -d /sys/module/loop ]; then
    modprobe loop || echo "harness-syz: modprobe loop failed"
  fi
  [ -e /dev/loop-control ] || [ -d /sys/module/loop ] || {
    echo "harness-syz: no loop driver in this kernel (CONFIG_BLK_DEV_LOOP): the reproducer cannot attach its images"; return 1; }
  if [ ! -c /dev/loop-control ]; then
    mknod -m 0660 /dev/loop-control c 10 237 2>/dev/null && made+=" loop-control"
    [ -c /dev/loop-control ] || { echo "harness-syz: cannot make /dev/loop-control"; return 1; }
  fi
  for ((n = 0; n < 8; n++)); do
    [ -b /dev/loop$n ] && continue
    mknod -m 0660 /dev/loop$n b 7 $n 2>/dev/null && made+=" loop$n"
    [ -b /dev/loop$n ] || { echo "harness-syz: cannot make /dev/loop$n"; return 1; }
  done
  echo "harness-syz: loop0..loop7 and loop-control ready in /dev (made:${made:- none, all there})"
  harness_syz_fs ext4 CONFIG_EXT4_FS
  harness_syz_feature cgroups /sys/fs/cgroup '' CONFIG_CGROUPS 'its cgroup setup is skipped'
  harness_syz_mounted /tmp/harness-syz && umount -l /tmp/harness-syz
  [ -d /tmp/harness-syz ] || mkdir -p /tmp/harness-syz
  mount -t tmpfs -o mode=1777 harness-syz /tmp/harness-syz || { echo "harness-syz: cannot mount a tmpfs on /tmp/harness-syz"; return 1; }
  cd /tmp/harness-syz || return 1
  echo "harness-syz: scratch /tmp/harness-syz (tmpfs): the reproducer's working directory"
  local f line t
  local -a s
  HARNESS_SYZ_LOOPS=" "
  for f in /sys/block/loop*/loop/backing_file; do
    [ -e "$f" ] || continue
    f=${f%/loop/backing_file}; HARNESS_SYZ_LOOPS+="${f##*/} "
  done
  [ "$HARNESS_SYZ_LOOPS" = " " ] || echo "harness-syz: loop devices attached before the run (kept):$HARNESS_SYZ_LOOPS"
  read -r line < /proc/$$/stat; line=${line##*) }; s=($line); HARNESS_SYZ_SID=${s[3]}
  read -r line < /proc/1/stat; line=${line##*) }; s=($line)
  [ "${s[3]}" = "$HARNESS_SYZ_SID" ] && echo "harness-syz: note: the harness shares init's session $HARNESS_SYZ_SID"
  harness_syz_nap 0.02
  read -r t _ < /proc/uptime; HARNESS_SYZ_T0=$((10#${t/./}))
  echo "harness-syz: after the run, processes of session $HARNESS_SYZ_SID started after uptime $t are leftovers"
}
step environment 0 harness_syz_setup || exit 0
