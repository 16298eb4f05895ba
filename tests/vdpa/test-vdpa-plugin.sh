#!/usr/bin/env bash
# Guest test: the nbdkit plugin serves a vDPA device (qemu-storage-daemon's
# vduse-blk export, made with vdpa-setup.sh) through the
# virtio-blk-vhost-vdpa driver.  Data copied in with nbdcopy is in the
# backend's image and reads back the same through a second nbdkit
# instance, also with the device given as an fd; a read-only export
# refuses writes.
# Plugin: $BLKIO_VDPA_PLUGIN, else plugin/nbdkit-blkio-plugin.so under the
# current directory (the build directory under `meson test`).
set -euo pipefail

skip() { echo "$0: SKIP: $*"; exit 77; }
[ "${BLKIO_VM:-}" = 1 ] || skip "not in the test VM"
[ -n "${BLKIO_VM_GUEST_DIR:-}" ] || skip "BLKIO_VM_GUEST_DIR is not set"
[ -c /dev/vduse/control ] || skip "no /dev/vduse/control (no VDUSE)"
plugin=${BLKIO_VDPA_PLUGIN:-$PWD/plugin/nbdkit-blkio-plugin.so}
[ -f "$plugin" ] || skip "plugin $plugin is not built"
command -v nbdkit >/dev/null || skip "nbdkit is not installed"
command -v nbdcopy >/dev/null || skip "nbdcopy is not installed"

# A sanitizer build of the plugin needs its runtime loaded first into
# nbdkit, which is not built with it.
. "$(dirname "$0")/../common/sanitizer.sh"
preload=$(sanitizer_preload "$plugin")
if [ -n "$preload" ]; then
    export LD_PRELOAD=$preload ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
fi

setup=$BLKIO_VM_GUEST_DIR/vdpa-setup.sh
tmp=$(mktemp -d /run/test-vdpa-plugin.XXXXXX)
trap '"$setup" stop; rm -rf "$tmp"' EXIT
truncate -s 32M "$tmp/disk.img"
dev=$("$setup" start "$tmp/disk.img")
size=$((8 * 1024 * 1024))
head -c $size /dev/urandom > "$tmp/data"

set -x
# Write through the plugin and flush; the image has it.
timeout 120 nbdkit -U - -f "$plugin" driver=virtio-blk-vhost-vdpa \
    path="$dev" get=max-queue-size \
    --run "nbdcopy --flush '$tmp/data' \"\$uri\""
cmp -n $size "$tmp/data" "$tmp/disk.img"
# A new instance reads it back; this time the device is an fd nbdkit
# inherits (fd=3).
timeout 120 nbdkit -U - -f "$plugin" driver=virtio-blk-vhost-vdpa fd=3 \
    --run "nbdcopy \"\$uri\" '$tmp/back'" 3<>"$dev"
cmp -n $size "$tmp/data" "$tmp/back"
# The whole device through NBD matches the image.
timeout 120 nbdkit -U - -f "$plugin" driver=virtio-blk-vhost-vdpa \
    path="$dev" --run "nbdcopy \"\$uri\" '$tmp/all'"
cmp "$tmp/disk.img" "$tmp/all"
# Read-only export: writes are refused, reads work.
if timeout 60 nbdkit -r -U - -f "$plugin" driver=virtio-blk-vhost-vdpa \
       path="$dev" --run "nbdcopy '$tmp/data' \"\$uri\"" 2>"$tmp/ro.err"; then
    echo "writing to a read-only export succeeded"; exit 1
fi
timeout 60 nbdkit -r -U - -f "$plugin" driver=virtio-blk-vhost-vdpa \
    path="$dev" --run "nbdcopy \"\$uri\" '$tmp/back2'"
cmp -n $size "$tmp/data" "$tmp/back2"
