step umount 120 umount @MNT@
@CHECK@
