#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Guest test: crash consistency on nvme-io_uring.  nbdkit serving the NVMe
# namespace is SIGKILLed in the middle of a stream of writes
# (crash-writer.py); every write acknowledged with FUA, or before an
# acknowledged flush, must be on the namespace afterwards, read back
# through the block device (its page cache dropped first, so the reads
# reach the device).
[ "${BLKIO_VM:-}" = 1 ] || { echo "$0: SKIP: not in the test VM"; exit 77; }
source "$(dirname "$0")/../plugin/functions.sh"
requires_driver nvme-io_uring
requires /usr/bin/python3 -c 'import nbd'
dev=${BLKIO_VM_NVME:?} blk=${BLKIO_VM_NVME_BLOCK:?}
[ -c "$dev" ] && [ -b "$blk" ] || { echo "$0: SKIP: no $dev or $blk"; exit 77; }
set -x
writer=$(dirname "$0")/crash-writer.py

for mode in --fua --flush; do
    # The partition scan at boot cached the first blocks: drop them.
    sync
    echo 3 > /proc/sys/vm/drop_caches
    start_nbdkit nvme-io_uring path="$dev"
    timeout -k 5 120 /usr/bin/python3 "$writer" "$(uri)" "$blk" \
        "$(cat "$pidfile")" $mode
done
