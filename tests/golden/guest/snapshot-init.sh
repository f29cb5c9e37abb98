#!/bin/bash
# harness snapshot guest init (generated; do not edit)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
fail() { echo "@@harness snapshot-guest error: $*" > /dev/console; exec sleep infinity; }
mount -t proc proc /proc && mount -t sysfs sys /sys && mount -t devtmpfs dev /dev || fail "cannot mount /proc /sys /dev"
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
exec < /dev/console > /dev/console 2>&1
modprobe -q -a virtio_pci virtio_blk virtio_net loop fs-ext4 || echo 'some modules did not load: virtio_pci virtio_blk virtio_net loop fs-ext4'
nic=
for n in /sys/class/net/*; do n=${n##*/}; [[ $n != lo ]] && { nic=$n; break; }; done
[ -n "$nic" ] || fail "no network interface (the kernel needs virtio-net)"
printf '%s\n' "link set lo up" "addr add 10.0.2.15/24 dev $nic" "link set $nic up" | ip -batch - || fail "cannot configure $nic"
# -r: no re-exec of sshd for each connection (under TCG a connection then takes 0.2 s, not 0.35 s);
# an OpenSSH that no longer takes -r (9.8 split sshd-session off) starts without it
/usr/sbin/sshd -r -e -f /run/harness-ssh/sshd_config -E /run/sshd.log 2>/dev/null ||
    /usr/sbin/sshd -e -f /run/harness-ssh/sshd_config -E /run/sshd.log || fail "sshd did not start: $(cat /run/sshd.log)"
read -r UP _ < /proc/uptime
echo "@@harness snapshot-guest ready $UP kernel $(</proc/sys/kernel/osrelease) nic $nic"
while :; do wait; sleep 3600; done
