#!/usr/bin/env bash
# get=PROPERTY prints the value in debug output after start, in the
# upstream plugin's format ("get capacity = N"); a property that needs
# connect (num-entries) and num-queues= are applied; a property that does
# not exist is a warning, and nbdkit serves anyway.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
set -x

truncate -s 3M "$tmp/disk"
timeout -k 5 60 "$NBDKIT" -v -U - "$PLUGIN" io_uring path="$tmp/disk" \
    num-entries=64 num-queues=3 \
    get=capacity get=num-entries get=num-queues get=driver \
    get=no-such-property --run 'nbdinfo --size "$uri"' > "$tmp/out" 2>&1
cat "$tmp/out"
grep -q 'get capacity = 3145728' "$tmp/out"
grep -q 'get num-entries = 64' "$tmp/out"
grep -q 'get num-queues = 3' "$tmp/out"
grep -q 'get driver = io_uring' "$tmp/out"
grep -q 'warning: could not get property no-such-property' "$tmp/out"
grep -qx 3145728 "$tmp/out"

# Without num-queues=, an io_uring driver gets a queue per worker thread
# of a connection (16), not the CPU-based default of the virtio drivers.
timeout -k 5 60 "$NBDKIT" -v -U - "$PLUGIN" io_uring path="$tmp/disk" \
    get=num-queues --run 'true' > "$tmp/out" 2>&1
grep 'get num-queues = ' "$tmp/out"
grep -q 'get num-queues = 16' "$tmp/out"
