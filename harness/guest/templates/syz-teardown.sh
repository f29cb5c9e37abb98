# --- syzkaller environment: the reproducer's leftovers ---
harness_syz_scan() {  # the run's leftover processes -> HARNESS_SYZ_FOUND
  local f line pid changed
  local -a s
  local -A parent=() mine=()
  HARNESS_SYZ_FOUND=()
  for f in @PROC@/[0-9]*/stat; do
    read -r line < "$f" 2>/dev/null || continue
    pid=${line%% *}; line=${line##*) }
    s=($line)  # 0 state, 1 ppid, 2 pgrp, 3 session, 6 flags, 19 start time (numbers: no glob, no here-string)
    [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] || [ "${s[0]}" = Z ] && continue
    (( s[6] & 0x200000 || s[19] < HARNESS_SYZ_T0 )) && continue  # kernel threads, older processes
    case " $HARNESS_KEEP_PIDS $HARNESS_FAULTS_MARKER " in *" $pid "*) continue ;; esac
    parent[$pid]=${s[1]}
    [ "${s[3]}" = "$HARNESS_SYZ_SID" ] && mine[$pid]=1
  done
  changed=1
  while [ -n "$changed" ]; do  # their children in other sessions (setsid)
    changed=
    for pid in "${!parent[@]}"; do
      [ -z "${mine[$pid]}" ] && [ -n "${mine[${parent[$pid]}]}" ] && { mine[$pid]=1; changed=1; }
    done
  done
  HARNESS_SYZ_FOUND=("${!mine[@]}")
}
harness_syz_kill() {  # stop, then kill, the leftovers, in rounds; name the ones that do not die
  local round pid line c w left=0
  local -A seen=()
  for ((round = 0; round < 30; round++)); do
    harness_syz_scan
    [ ${#HARNESS_SYZ_FOUND[@]} -eq 0 ] && break
    kill -STOP "${HARNESS_SYZ_FOUND[@]}" 2>/dev/null  # frozen: nothing forks while the tree is read again
    harness_syz_scan
    [ ${#HARNESS_SYZ_FOUND[@]} -eq 0 ] && break
    kill -KILL "${HARNESS_SYZ_FOUND[@]}" 2>/dev/null
    for pid in "${HARNESS_SYZ_FOUND[@]}"; do seen[$pid]=1; done
    harness_syz_nap 0.1
  done
  if [ ${#seen[@]} -gt 0 ]; then echo "@TAG@ killed ${#seen[@]} leftover processes"; else echo "@TAG@ no leftover processes"; fi
  for pid in "${HARNESS_SYZ_FOUND[@]}"; do
    read -r line < @PROC@/$pid/stat 2>/dev/null || continue
    c=${line#*(}; c=${c%)*}; line=${line##*) }; w=
    read -r w < @PROC@/$pid/wchan 2>/dev/null
    echo "@TAG@ pid $pid ($c) did not die: state ${line%% *}${w:+, in $w}"; left=$((left + 1))
  done
  return $((left > 0))
}
harness_syz_unmount() {  # swap files, then every mount under the scratch directory, deepest first
  local d m p _ depth max=0
  local -a found=() order=()
  while read -r d _; do
    case "$d" in @S@/*) swapoff "$d" && echo "@TAG@ swapoff $d" ;; esac
  done < @PROC@/swaps
  while read -r d m _; do
    printf -v m -- "${m//%/%%}"  # \040 and other octal escapes
    case "$m" in @S@/*) found+=("$m"); p=${m//[!\/]/}; (( ${#p} > max )) && max=${#p} ;; esac
  done < @PROC@/self/mounts
  for ((depth = max; depth > 0; depth--)); do
    for m in "${found[@]}"; do p=${m//[!\/]/}; [ ${#p} -eq $depth ] && order+=("$m"); done
  done
  [ ${#order[@]} -eq 0 ] || echo "@TAG@ unmounting ${#order[@]} mounts under @S@ (lazily, deepest first): ${order[*]}"
  harness_syz_mounted @S@ && order+=(@S@)
  [ ${#order[@]} -eq 0 ] && return 0
  umount -l "${order[@]}" || echo "@TAG@ umount -l failed for some of them"
  for m in "${order[@]}"; do harness_syz_mounted "$m" && { echo "@TAG@ still mounted: $m"; return 1; }; done
  return 0
}
harness_syz_detach() {  # loop devices attached since the setup (not the harness's own)
  local f name bf
  local -a gone=()
  for f in @SYS@/block/loop*/loop/backing_file; do
    [ -e "$f" ] || continue
    name=${f#@SYS@/block/}; name=${name%%/*}
    case "$HARNESS_SYZ_LOOPS" in *" $name "*) continue ;; esac
    bf=; read -r bf < "$f" 2>/dev/null
    gone+=("@DEV@/$name"); echo "@TAG@ detaching $name (${bf:-?})"
  done
  [ ${#gone[@]} -eq 0 ] && return 0
  losetup -d "${gone[@]}" || { echo "@TAG@ losetup -d failed for some of ${gone[*]}"; return 1; }
}
harness_syz_cleanup() {
  local rc=0
  cd /
  [ -n "$HARNESS_SYZ_T0" ] || { echo "@TAG@ no environment was set up: nothing to clean"; return 0; }
  harness_syz_kill || rc=1
  harness_syz_unmount || rc=1
  harness_syz_detach || rc=1
  echo "@TAG@ cleanup done"
  return $rc
}
