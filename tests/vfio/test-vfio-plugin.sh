#!/usr/bin/env bash
# Guest test: the nbdkit plugin serves the virtio-blk-pci device through the
# virtio-blk-vfio-pci driver; data copied in with nbdcopy reads back the
# same through a second nbdkit instance (the device is bound to vfio-pci, so
# the kernel cannot read it), and a read-only export refuses writes.  With
# zero-copy=true the same holds with nbdkit's buffers lent to the device.
# Plugin: $BLKIO_VFIO_PLUGIN, else plugin/nbdkit-blkio-plugin.so under the
# current directory (the build directory under `meson test`).
set -euo pipefail

skip() { echo "$0: SKIP: $*"; exit 77; }
[ "${BLKIO_VM:-}" = 1 ] || skip "not in the test VM"
bdf=${BLKIO_VM_VIRTIO_BLK_BDF:-}
[ -n "$bdf" ] || skip "BLKIO_VM_VIRTIO_BLK_BDF is not set"
plugin=${BLKIO_VFIO_PLUGIN:-$PWD/plugin/nbdkit-blkio-plugin.so}
[ -f "$plugin" ] || skip "plugin $plugin is not built"
command -v nbdkit >/dev/null || skip "nbdkit is not installed"
command -v nbdcopy >/dev/null || skip "nbdcopy is not installed"

dev=/sys/bus/pci/devices/$bdf
if [ "$(basename "$(readlink -f "$dev/driver" 2>/dev/null)")" != vfio-pci ]; then
    "$BLKIO_VM_GUEST_DIR/vfio-bind.sh" "$bdf" >/dev/null
fi

# A sanitizer build of the plugin needs its runtime loaded first into
# nbdkit, which is not built with it.
. "$(dirname "$0")/../common/sanitizer.sh"
preload=$(sanitizer_preload "$plugin")
if [ -n "$preload" ]; then
    export LD_PRELOAD=$preload ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
fi

tmp=$(mktemp -d /tmp/test-vfio-plugin.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
size=$((8 * 1024 * 1024))
head -c $size /dev/urandom > "$tmp/data"

set -x
# Write through the plugin and flush.
timeout 120 nbdkit -U - -f "$plugin" driver=virtio-blk-vfio-pci path="$dev" \
    --run "nbdcopy --flush '$tmp/data' \"\$uri\""
# A new instance (the device was reset in between) reads it back.
timeout 120 nbdkit -U - -f "$plugin" driver=virtio-blk-vfio-pci path="$dev" \
    --run "nbdcopy \"\$uri\" '$tmp/back'"
cmp -n $size "$tmp/data" "$tmp/back"
# Read-only export: writes are refused, reads work.
if timeout 60 nbdkit -r -U - -f "$plugin" driver=virtio-blk-vfio-pci \
       path="$dev" --run "nbdcopy '$tmp/data' \"\$uri\"" 2>"$tmp/ro.err"; then
    echo "writing to a read-only export succeeded"; exit 1
fi
timeout 60 nbdkit -r -U - -f "$plugin" driver=virtio-blk-vfio-pci path="$dev" \
    --run "nbdcopy \"\$uri\" '$tmp/back2'"
cmp -n $size "$tmp/data" "$tmp/back2"
# zero-copy=true (not the default here): nbdkit's own buffers are lent to
# the device through the vIOMMU; the data written that way reads back the
# same through lent buffers.  nbdcopy's 256 KiB requests are large enough
# to lend.  Sanitizer runtimes replace glibc's allocator: nothing is lent
# there, so only the data is checked.
head -c $size /dev/urandom > "$tmp/data2"
timeout 120 nbdkit -v -U - -f "$plugin" driver=virtio-blk-vfio-pci path="$dev" \
    zero-copy=true --run "nbdcopy --flush '$tmp/data2' \"\$uri\"" 2>"$tmp/zc-write.log"
timeout 120 nbdkit -v -U - -f "$plugin" driver=virtio-blk-vfio-pci path="$dev" \
    zero-copy=true --run "nbdcopy \"\$uri\" '$tmp/back3'" 2>"$tmp/zc-read.log"
cmp -n $size "$tmp/data2" "$tmp/back3"
if [ -z "$preload" ]; then
    for phase in write read; do
        lent=$(grep -Ec "request buffer 0x[0-9a-f]+ .* lent to the device" \
                   "$tmp/zc-$phase.log" || true)
        echo "zero-copy, $phase: $lent request buffers lent"
        [ "$lent" -ge 1 ] || { grep zero-copy "$tmp/zc-$phase.log"; exit 1; }
    done
fi
