#!/bin/bash
# harness vng-ssh guest (generated; do not edit)
# Under TCG every program started costs ~0.4 s (loaded over 9p, dynamically
# linked, emulated), so this script runs four: mkdir, modprobe, ip, sshd.  The
# rest is bash builtins.
exec 2>&1 </dev/null
fail() { echo "@@harness ssh-guest error: $*"; exit 1; }
read -r UP _ < /proc/uptime
echo "@@harness ssh-guest boot $UP kernel $(</proc/sys/kernel/osrelease)"
echo 8 > /proc/sys/kernel/printk
S=/run/harness-ssh
umask 077
mkdir -p $S /run/sshd || fail "cannot make $S"
printf '%s\n' "$(</tmp/harness-ssh-k/guest_host_key)" > $S/ssh_host_ed25519_key || fail "cannot read the host key"
printf '%s\n' "$(</tmp/harness-ssh-k/client.pub)" > $S/authorized_keys || fail "cannot read the client key"
printf '%s' '# sshd of a harness guest (generated; /run is a tmpfs of the guest)
Port 22
ListenAddress 0.0.0.0
HostKey /run/harness-ssh/ssh_host_ed25519_key
AuthorizedKeysFile /run/harness-ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
PidFile /run/harness-ssh/sshd.pid
MaxSessions 64
MaxStartups 64
Subsystem sftp internal-sftp
' > $S/sshd_config
fstype_of() {  # FSTYPE of the mount holding $1 (what findmnt --target says)
  local dev mnt type rest len=-1
  FSTYPE=none
  while read -r dev mnt type rest; do
    if [[ $mnt == / || $1 == "$mnt" || $1 == "$mnt"/* ]] && (( ${#mnt} > len )); then
      FSTYPE=$type len=${#mnt}
    fi
  done < /proc/self/mounts
}
edit_root() {  # edit_root FILE EXPR: root's line ($line) of FILE replaced by EXPR, in place
  local line out=
  while IFS= read -r line || [[ -n $line ]]; do
    [[ $line == root:* ]] && eval "line=$2"
    out+=$line$'\n'
  done < "$1"
  printf '%s' "$out" > "$1"
}
# Without PAM, sshd refuses a root whose password field is locked ('*', '!').  The
# guest's /etc/shadow is its own (virtme-ng-init bind-mounts a tmpfs copy; else the
# /etc overlay): unlock root there, in place.  The host's file is never written.
fstype_of /etc/shadow
case $FSTYPE in
  tmpfs|overlay) edit_root /etc/shadow '"root:harness-pubkey-only:${line#root:*:}"' || fail "cannot unlock root in the guest's /etc/shadow" ;;
  *) fail "/etc/shadow is not the guest's own copy ($FSTYPE): not touching it" ;;
esac
# Commands run through root's login shell: make it sh, so no ~/.bashrc of the host's
# root (pyenv, conda...) runs before each command.  Same rule: the guest's own copy only.
fstype_of /etc/passwd
case $FSTYPE in tmpfs|overlay) edit_root /etc/passwd '"${line%:*}:/bin/sh"' ;; esac
umask 022
# virtio_net is udev's job when the guest has udev (see lean_prefix)
modprobe -q -a loop virtio_net
nic=
for ((i = 0; i < 300; i++)); do
  for n in /sys/class/net/*; do
    n=${n##*/}; [[ $n != lo && $n != "*" ]] && { nic=$n; break 2; }
  done
  sleep 0.1
done
[ -n "$nic" ] || fail "no network interface (virtio_net missing?)"
printf '%s\n' "link set lo up" "addr add 10.0.2.15/24 dev $nic" "link set $nic up" | ip -batch - \
  || fail "cannot configure $nic"
read -r UP _ < /proc/uptime
echo "@@harness ssh-guest ready $UP nic $nic"
(modprobe -q -a fs-ext4 &)
exec /usr/sbin/sshd -D -e -f $S/sshd_config
