#!/bin/sh
# Guest test: the NVMe controller given with --nvme* is there, with its
# generic char device (the nvme-io_uring path) and a working admin queue.
set -e
[ "${BLKIO_VM:-}" = 1 ] || { echo "not in the test VM"; exit 77; }
[ -n "$BLKIO_VM_NVME" ] || { echo "BLKIO_VM_NVME is not set"; exit 1; }
[ -c "$BLKIO_VM_NVME" ] || { echo "$BLKIO_VM_NVME is not a char device"; ls -l /dev/ng* /dev/nvme* || true; exit 1; }
# With a single controller, the names are fixed.
if [ -z "${BLKIO_VM_NVME_ZONED:-}" ]; then
    [ -c /dev/ng0n1 ] || { echo "/dev/ng0n1 is missing"; ls -l /dev/ng* /dev/nvme* || true; exit 1; }
    [ "$BLKIO_VM_NVME" = /dev/ng0n1 ] || { echo "BLKIO_VM_NVME=$BLKIO_VM_NVME, expected /dev/ng0n1"; exit 1; }
fi
ctrl=${BLKIO_VM_NVME_BLOCK%n[0-9]*}
command -v nvme >/dev/null || { echo "nvme-cli is not installed on the host"; exit 77; }
nvme id-ctrl "$ctrl" > /tmp/id-ctrl
head -n 8 /tmp/id-ctrl
grep -q '^sn *: *blkionvme0' /tmp/id-ctrl || { echo "serial number not found in id-ctrl"; exit 1; }
# One 4 KiB read through the block device proves I/O works end to end.
dd if="$BLKIO_VM_NVME_BLOCK" of=/dev/null bs=4096 count=1 iflag=direct
