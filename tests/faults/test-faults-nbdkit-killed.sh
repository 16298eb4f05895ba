#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Crash consistency: nbdkit is SIGKILLed in the middle of a stream of
# writes (crash-writer.py); every write acknowledged with FUA, or before
# an acknowledged flush, must be on the backend afterwards.  Backends:
# io_uring with direct=true on a file, and a vhost-user export of
# qemu-storage-daemon (which stays up; its image is read directly).
# A process kill, not a power cut: what it proves is that nothing is
# acknowledged before the backend has it.
if [ -z "${VU_SOCK:-}" ]; then
    exec "$(dirname "$0")/../vhost-user/qsd-run.sh" --size 32M -- "$0" "$@"
fi
source "$(dirname "$0")/../plugin/functions.sh"
requires_driver io_uring
requires_driver virtio-blk-vhost-user
requires /usr/bin/python3 -c 'import nbd'
set -x
writer=$(dirname "$0")/crash-writer.py

truncate -s 32M "$tmp/disk"
if [ "$(direct_works)" = false ]; then
    echo "$0: SKIP: O_DIRECT not supported in $tmp"
    exit 77
fi
for mode in --fua --flush; do
    start_nbdkit io_uring path="$tmp/disk" direct=true
    timeout -k 5 60 /usr/bin/python3 "$writer" "$(uri)" "$tmp/disk" \
        "$(cat "$pidfile")" $mode

    start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2
    timeout -k 5 60 /usr/bin/python3 "$writer" "$(uri)" "$VU_IMG" \
        "$(cat "$pidfile")" $mode
done
