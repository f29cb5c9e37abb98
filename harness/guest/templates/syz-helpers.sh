# --- syzkaller environment (harness/repro/syzkaller.py) ---
harness_syz_nap() {  # harness_syz_nap SECONDS: sleep without starting a program
  [ -n "$HARNESS_SYZ_FD" ] || exec {HARNESS_SYZ_FD}<> <(:) 2>/dev/null || HARNESS_SYZ_FD=
  if [ -n "$HARNESS_SYZ_FD" ]; then read -r -t "$1" -u "$HARNESS_SYZ_FD" _; else sleep "$1"; fi
  return 0
}
harness_syz_mounted() {  # harness_syz_mounted PATH: something is mounted on PATH
  local d m _
  while read -r d m _; do [ "$m" = "$1" ] && return 0; done < @PROC@/self/mounts
  return 1
}
harness_syz_fs() {  # harness_syz_fs TYPE OPTION: TYPE registered (/proc/filesystems), loading fs-TYPE if not
  local a b
  while read -r a b; do [ "${b:-$a}" = "$1" ] && { echo "@TAG@ filesystem $1: available"; return 0; }; done < @PROC@/filesystems
  if modprobe -q "fs-$1" 2>/dev/null; then
    while read -r a b; do [ "${b:-$a}" = "$1" ] && { echo "@TAG@ filesystem $1: module loaded"; return 0; }; done < @PROC@/filesystems
  fi
  echo "@TAG@ filesystem $1: not in this kernel ($2): its $1 mounts fail"
}
harness_syz_feature() {  # NAME PATH MODULES CONFIGS EFFECT: probe a feature, loading its modules if missing
  local m i
  if [ ! -e "$2" ] && [ -n "$3" ]; then
    for m in $3; do modprobe -q "$m" 2>/dev/null; done
    for ((i = 0; i < 20; i++)); do [ -e "$2" ] && break; harness_syz_nap 0.05; done
  fi
  if [ -e "$2" ]; then echo "@TAG@ has $1 ($2)"; else echo "@TAG@ lacks $1: no $2 ($4): $5"; fi
  return 0
}
