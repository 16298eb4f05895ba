#!/bin/sh
# Guest test: the zoned NVMe namespace given with --nvme-zoned* is there as a
# host-managed zoned device with its generic char device.
set -e
[ "${BLKIO_VM:-}" = 1 ] || { echo "not in the test VM"; exit 77; }
[ -n "${BLKIO_VM_NVME_ZONED:-}" ] || { echo "BLKIO_VM_NVME_ZONED is not set"; exit 1; }
[ -c "$BLKIO_VM_NVME_ZONED" ] || { echo "$BLKIO_VM_NVME_ZONED is not a char device"; exit 1; }
blk=$(basename "$BLKIO_VM_NVME_ZONED_BLOCK")
zoned=$(cat "/sys/block/$blk/queue/zoned")
echo "$blk: zoned=$zoned chunk_sectors=$(cat /sys/block/$blk/queue/chunk_sectors) nr_zones=$(cat /sys/block/$blk/queue/nr_zones)"
[ "$zoned" = host-managed ] || { echo "expected host-managed"; exit 1; }
