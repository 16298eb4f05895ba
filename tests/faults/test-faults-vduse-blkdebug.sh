#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Guest test (tests/vm/run-in-vm.sh): test-faults-blkdebug's faults under
# a VDUSE export instead of vhost-user.  vdpa-setup.sh starts
# qemu-storage-daemon's vduse-blk export through qsd-blkdebug.sh (first in
# PATH), nbdkit serves the vDPA device with the plugin's
# virtio-blk-vhost-vdpa driver, and blkdebug-client.py checks that exactly
# the requests touching the failing sectors fail, with EIO.
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "$0: SKIP: $*"; exit 77; }
[ "${BLKIO_VM:-}" = 1 ] || skip "not in the test VM"
[ -n "${BLKIO_VM_GUEST_DIR:-}" ] || skip "BLKIO_VM_GUEST_DIR is not set"
[ -c /dev/vduse/control ] || skip "no /dev/vduse/control (no VDUSE)"
source "$here/../plugin/functions.sh"
requires_driver virtio-blk-vhost-vdpa
requires /usr/bin/python3 -c 'import nbd'

mkdir "$tmp/bin"
ln -s "$here/qsd-blkdebug.sh" "$tmp/bin/qemu-storage-daemon"
export QSD_REAL
QSD_REAL=$(command -v qemu-storage-daemon)
setup=$BLKIO_VM_GUEST_DIR/vdpa-setup.sh
truncate -s 8M "$tmp/disk.img"
dev=$(PATH=$tmp/bin:$PATH "$setup" start "$tmp/disk.img")
cleanup_fn "$setup" stop
set -x

start_nbdkit virtio-blk-vhost-vdpa path="$dev"
/usr/bin/python3 "$here/blkdebug-client.py" "$(uri)"
