#!/usr/bin/env bash
# qemu-io and qemu-img as NBD clients: write patterns, read them back,
# compare the whole image with the file.
source "$(dirname "$0")/functions.sh"
requires qemu-io --version
requires qemu-img --version
requires_driver io_uring
set -x

truncate -s 64M "$tmp/disk"
start_nbdkit io_uring path="$tmp/disk"
img="nbd:unix:$sock"

timeout -k 5 60 qemu-io -f raw "$img" \
    -c 'write -P 0x55 0 1M' -c 'write -P 0xaa 1M 3M' \
    -c 'write -z 8M 4M' -c 'discard 16M 1M' -c 'flush' \
    -c 'read -P 0x55 0 1M' -c 'read -P 0xaa 1M 3M' -c 'read -P 0 8M 4M' \
    -c 'aio_write -P 0x11 32M 64k' -c 'aio_write -P 0x22 33M 64k' \
    -c 'aio_flush' -c 'read -P 0x11 32M 64k' -c 'read -P 0x22 33M 64k' \
    | tee "$tmp/out"
if grep -q 'Pattern verification failed\|error' "$tmp/out"; then
    exit 1
fi
timeout -k 5 60 qemu-img compare -f raw -F raw "$img" "$tmp/disk"
