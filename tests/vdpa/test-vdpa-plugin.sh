#!/usr/bin/env bash
# Guest test: the nbdkit plugin serves a vDPA device (qemu-storage-daemon's
# vduse-blk export, made with vdpa-setup.sh) through the
# virtio-blk-vhost-vdpa driver.  Data copied in with nbdcopy is in the
# backend's image and reads back the same through a second nbdkit
# instance, also with the device given as an fd; a read-only export
# refuses writes.  With zero-copy=true the same holds with nbdkit's
# buffers lent to the device.
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
# zero-copy=true (not the default here): nbdkit's own buffers are lent to
# the device.  A lent buffer is two mappings to VDUSE (the chunk's first
# page is a VMA of its own), which qemu-storage-daemon only takes because
# the library declares its indirect tables at full length on vhost-vdpa:
# before that, the first lent request was dropped ("Looped descriptor")
# and never completed.  nbdkit serves in the foreground here, from the
# process that opened the device: under --run it serves from a forked
# child, where the device would look lent buffers up in the parent's
# memory, so nothing is lent there (checked last).  nbdcopy's 256 KiB
# requests are large enough to lend.  Sanitizer runtimes replace glibc's
# allocator: nothing is lent there, so only the data is checked.
zc_serve ()
{
    rm -f "$tmp/zc.sock"
    nbdkit -v -U "$tmp/zc.sock" -f "$plugin" driver=virtio-blk-vhost-vdpa \
        path="$dev" zero-copy=true 2>"$tmp/zc-$1.log" &
    zc_pid=$!
    for _ in $(seq 100); do
        [ -S "$tmp/zc.sock" ] && return 0
        kill -0 $zc_pid || { cat "$tmp/zc-$1.log"; exit 1; }
        sleep 0.1
    done
    echo "nbdkit did not start"; exit 1
}
zc_stop ()
{
    kill $zc_pid
    wait $zc_pid || true
}
head -c $size /dev/urandom > "$tmp/data2"
zc_serve write
timeout 120 nbdcopy --flush "$tmp/data2" "nbd+unix:///?socket=$tmp/zc.sock"
zc_stop
cmp -n $size "$tmp/data2" "$tmp/disk.img"
zc_serve read
timeout 120 nbdcopy "nbd+unix:///?socket=$tmp/zc.sock" "$tmp/back3"
zc_stop
cmp -n $size "$tmp/data2" "$tmp/back3"
lent_in ()
{
    grep -Ec "request buffer 0x[0-9a-f]+ .* lent to the device" "$1" || true
}
if [ -z "$preload" ]; then
    for phase in write read; do
        lent=$(lent_in "$tmp/zc-$phase.log")
        echo "zero-copy, $phase: $lent request buffers lent"
        [ "$lent" -ge 1 ] || { grep zero-copy "$tmp/zc-$phase.log"; exit 1; }
    done
fi
# Under --run: the same data, bounced, and no lending attempted.
timeout 120 nbdkit -v -U - -f "$plugin" driver=virtio-blk-vhost-vdpa \
    path="$dev" zero-copy=true \
    --run "nbdcopy \"\$uri\" '$tmp/back4'" 2>"$tmp/zc-run.log"
cmp -n $size "$tmp/data2" "$tmp/back4"
[ "$(lent_in "$tmp/zc-run.log")" = 0 ]
if grep "mapping a request buffer" "$tmp/zc-run.log"; then
    echo "a buffer was mapped from the forked server"; exit 1
fi
grep -q "zero-copy: off in this process" "$tmp/zc-run.log"
