#!/usr/bin/env bash
# nbdcopy with 4 connections and 64 requests in flight each way.
source "$(dirname "$0")/functions.sh"
requires nbdcopy --version
requires_driver io_uring
set -x

size=$((64 * 1024 * 1024))
truncate -s $size "$tmp/disk"
make_random "$tmp/data" $size
start_nbdkit io_uring path="$tmp/disk"

timeout -k 5 60 nbdcopy --connections=4 --requests=64 --flush "$tmp/data" "$(uri)"
cmp "$tmp/data" "$tmp/disk"
timeout -k 5 60 nbdcopy --connections=4 --requests=64 "$(uri)" "$tmp/back"
cmp "$tmp/data" "$tmp/back"
