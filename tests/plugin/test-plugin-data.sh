#!/usr/bin/env bash
# Random data written through NBD lands in the file, and reads back the same.
source "$(dirname "$0")/functions.sh"
requires nbdcopy --version
requires_driver io_uring
set -x

size=$((64 * 1024 * 1024))
truncate -s $size "$tmp/disk"
make_random "$tmp/data" $size
start_nbdkit io_uring path="$tmp/disk"

timeout -k 5 60 nbdcopy --flush "$tmp/data" "$(uri)"
cmp "$tmp/data" "$tmp/disk"
timeout -k 5 60 nbdcopy "$(uri)" "$tmp/back"
cmp "$tmp/data" "$tmp/back"
