step device 0 find_device || exit 0
mark "device $DEV"
step mount 60 mount -t @FS_TYPE@ @MOUNT_OPTS@"$DEV" @MNT@ || exit 0
