#!/usr/bin/env bash
# Guest test: the nbdkit plugin serves the NVMe namespace through the
# nvme-io_uring driver, and data copied in with nbdcopy reads back the same
# (on the device itself and through NBD).
# Plugin: $BLKIO_NVME_PLUGIN, else plugin/nbdkit-blkio-plugin.so under the
# current directory (the build directory under `meson test`).
set -euo pipefail

dev=${BLKIO_VM_NVME:-/dev/ng0n1}
blockdev=${BLKIO_VM_NVME_BLOCK:-/dev/nvme0n1}
plugin=${BLKIO_NVME_PLUGIN:-$PWD/plugin/nbdkit-blkio-plugin.so}

skip() { echo "$0: SKIP: $*"; exit 77; }
[ -c "$dev" ] || skip "$dev is not there (run inside the test VM)"
[ -f "$plugin" ] || skip "plugin $plugin is not built"
command -v nbdkit >/dev/null || skip "nbdkit is not installed"
command -v nbdcopy >/dev/null || skip "nbdcopy is not installed"

tmp=$(mktemp -d /tmp/test-nvme-plugin.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
size=$((8 * 1024 * 1024))
head -c $size /dev/urandom > "$tmp/data"

set -x
# Write through the plugin, flush, read back through the plugin.
timeout 120 nbdkit -U - -f "$plugin" driver=nvme-io_uring path="$dev" \
    --run "nbdcopy --flush '$tmp/data' \"\$uri\" && \
           nbdcopy \"\$uri\" '$tmp/back'"
cmp -n $size "$tmp/data" "$tmp/back"
# The device itself has the data (read by the kernel's block device).
if [ -b "$blockdev" ]; then
    dd if="$blockdev" of="$tmp/dev" bs=1M count=8 iflag=direct status=none
    cmp "$tmp/data" "$tmp/dev"
fi
# Read-only export: writes are refused, reads work.
if timeout 60 nbdkit -r -U - -f "$plugin" driver=nvme-io_uring path="$dev" \
       --run "nbdcopy '$tmp/data' \"\$uri\"" 2>"$tmp/ro.err"; then
    echo "writing to a read-only export succeeded"; exit 1
fi
timeout 60 nbdkit -r -U - -f "$plugin" driver=nvme-io_uring path="$dev" \
    --run "nbdcopy \"\$uri\" '$tmp/back2'"
cmp -n $size "$tmp/data" "$tmp/back2"
