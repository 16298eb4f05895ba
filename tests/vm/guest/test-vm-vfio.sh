#!/bin/sh
# Guest test: the virtio-blk-pci device given with --virtio-blk* can be bound
# to vfio-pci with vfio-bind.sh and gets a VFIO group node.
set -e
[ "${BLKIO_VM:-}" = 1 ] || { echo "not in the test VM"; exit 77; }
[ -n "${BLKIO_VM_VIRTIO_BLK_BDF:-}" ] || { echo "BLKIO_VM_VIRTIO_BLK_BDF is not set"; exit 1; }
dev=/sys/bus/pci/devices/$BLKIO_VM_VIRTIO_BLK_BDF
# Modern virtio-blk (disable-legacy=on) is 1af4:1042.
[ "$(cat $dev/vendor):$(cat $dev/device)" = 0x1af4:0x1042 ] ||
    { echo "unexpected device $(cat $dev/vendor):$(cat $dev/device)"; exit 1; }
group=$("$BLKIO_VM_GUEST_DIR/vfio-bind.sh" "$BLKIO_VM_VIRTIO_BLK_BDF")
echo "bound to vfio-pci, group $group"
[ -c "$group" ] && [ -c /dev/vfio/vfio ]
