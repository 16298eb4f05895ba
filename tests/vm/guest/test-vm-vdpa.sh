#!/bin/sh
# Guest test: vdpa-setup.sh gives a vhost-vdpa device backed by
# qemu-storage-daemon's vduse-blk export, and removes it again.
set -e
[ "${BLKIO_VM:-}" = 1 ] || { echo "not in the test VM"; exit 77; }
command -v qemu-storage-daemon >/dev/null || { echo "qemu-storage-daemon not installed"; exit 77; }
command -v vdpa >/dev/null || { echo "vdpa (iproute2) not installed"; exit 77; }
h=$BLKIO_VM_GUEST_DIR/vdpa-setup.sh
dev=$("$h" start 16M)
trap '"$h" stop' EXIT
echo "vDPA device $dev"
[ -c "$dev" ]
vdpa dev show
"$h" stop
trap - EXIT
[ ! -e "$dev" ] || { echo "$dev still there after stop"; exit 1; }
