#!/usr/bin/env bash
# Random data written through NBD lands in the file, and reads back the same:
# with nbdcopy's defaults, then with 4 connections and 64 requests in
# flight each way.
source "$(dirname "$0")/functions.sh"
requires nbdcopy --version
requires_driver io_uring
set -x

size=$((64 * 1024 * 1024))
make_random "$tmp/data" $size

for opts in "" "--connections=4 --requests=64"; do
    rm -f "$tmp/disk" "$tmp/back"
    truncate -s $size "$tmp/disk"
    start_nbdkit io_uring path="$tmp/disk"

    timeout -k 5 60 nbdcopy $opts --flush "$tmp/data" "$(uri)"
    cmp "$tmp/data" "$tmp/disk"
    timeout -k 5 60 nbdcopy $opts "$(uri)" "$tmp/back"
    cmp "$tmp/data" "$tmp/back"
    _stop_nbdkit
done
