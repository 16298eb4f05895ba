#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# test-vm-limits.sh - deliberate differences D11 and D12
# (docs/DIFFERENCES.md) on the test VM's virtio-blk devices, run by
# conform-vm.sh inside the guest: conform-limits on our library and on
# libblkio 1.5.
#
# D11 (virtio-blk-vfio-pci and virtio-blk-vhost-vdpa): max-queue-size is
#   the device's limit.  Ours refuses a queue-size above it when it is set,
#   naming queue-size and max-queue-size, and I/O works at max-queue-size.
#   libblkio 1.5 reports 32768, accepts that value and blkio_start() then
#   fails.  Fails if ours stops refusing, if I/O at our max-queue-size
#   fails, or if libblkio's max-queue-size starts to work (the reason
#   would be gone).
# D12 (virtio-blk-vhost-vdpa on VDUSE): max-mem-regions is what the
#   device takes.  Ours maps exactly max-mem-regions regions (the next one
#   is refused with -ENOSPC naming max-mem-regions) and I/O works through
#   the last.  libblkio 1.5 reports UINT64_MAX and fails to map the region
#   after ours' limit.  Fails if either stops being true.
#
# Environment: LIMITS_BIN (conform-limits), BLKIO_REFERENCE (a root with
# libblkio 1.5), BLKIO_VM_VIRTIO_BLK_BDF, BLKIO_VM_GUEST_DIR.
set -u
bin=${LIMITS_BIN:?LIMITS_BIN not set}
reflib=${BLKIO_REFERENCE:?BLKIO_REFERENCE not set}/usr/lib/x86_64-linux-gnu
guest=${BLKIO_VM_GUEST_DIR:?not in the test VM}
[ -e "$reflib/libblkio.so.1" ] || { echo "SKIP: no reference library in $reflib"; exit 77; }
fails=0 checks=0
out=$(mktemp -d)
trap 'rm -rf "$out"; "$guest/vdpa-setup.sh" stop >/dev/null 2>&1' EXIT

check() {   # description, then a command whose status says pass/fail
    local what=$1
    shift
    checks=$((checks + 1))
    if "$@"; then
        echo "ok: $what"
    else
        echo "FAIL: $what"
        fails=$((fails + 1))
    fi
}

# run LIB NAME ARGS...: conform-limits on "ours" or "ref", output in
# $out/NAME (a hang counts as "result = killed").
run() {
    local lib=$1 name=$2
    shift 2
    if [ "$lib" = ref ]; then
        LD_LIBRARY_PATH=$reflib timeout -k 2 60 "$bin" "$@" >"$out/$name" 2>&1
    else
        timeout -k 2 60 "$bin" "$@" >"$out/$name" 2>&1
    fi
    [ $? -ge 124 ] && echo "result = killed" >>"$out/$name"
    sed "s/^/  $name: /" "$out/$name"
}
val() { sed -n "s/^$2 = //p" "$out/$1" | head -1; }
has() { grep -q -- "$2" "$out/$1"; }

# A fresh vduse-blk export for each vhost-vdpa run.
vdpa_dev() { "$guest/vdpa-setup.sh" stop >/dev/null 2>&1; "$guest/vdpa-setup.sh" start 16M; }

qsize_checks() {   # TAG DRIVER PATH-or-vdpa
    local tag=$1 drv=$2 path=$3 m dev
    dev=$path; [ "$path" = vdpa ] && dev=$(vdpa_dev)
    run ours "$tag-max" qsize "$drv" 1 path="$dev"
    m=$(val "$tag-max" max-queue-size)
    check "$tag: ours reports a max-queue-size ($m)" test -n "$m"
    [ -n "$m" ] || return
    [ "$path" = vdpa ] && dev=$(vdpa_dev)
    run ours "$tag-over" qsize "$drv" $((m * 2)) path="$dev"
    check "$tag: ours refuses queue-size $((m * 2)) when it is set" \
        has "$tag-over" "^set queue-size $((m * 2)) = -22"
    check "$tag: the error names queue-size and max-queue-size" \
        has "$tag-over" "^error = queue-size .*max-queue-size $m"
    [ "$path" = vdpa ] && dev=$(vdpa_dev)
    run ours "$tag-at" qsize "$drv" "$m" path="$dev"
    check "$tag: ours does I/O at queue-size $m" has "$tag-at" "^result = ok"

    [ "$path" = vdpa ] && dev=$(vdpa_dev)
    run ref "$tag-ref-max" qsize "$drv" 1 path="$dev"
    local rm
    rm=$(val "$tag-ref-max" max-queue-size)
    check "$tag: libblkio reports a larger max-queue-size ($rm > $m)" \
        test "${rm:-0}" -gt "$m"
    [ "${rm:-0}" -gt "$m" ] || return
    [ "$path" = vdpa ] && dev=$(vdpa_dev)
    run ref "$tag-ref-at" qsize "$drv" "$rm" path="$dev"
    check "$tag: libblkio accepts queue-size $rm when set" \
        has "$tag-ref-at" "^set queue-size $rm = 0"
    check "$tag: libblkio then cannot use it" \
        bash -c "! grep -q '^result = ok' '$out/$tag-ref-at'"
}

bdf=${BLKIO_VM_VIRTIO_BLK_BDF:-}
if [ -n "$bdf" ] && "$guest/vfio-bind.sh" "$bdf" >/dev/null; then
    qsize_checks vfio virtio-blk-vfio-pci "/sys/bus/pci/devices/$bdf"
else
    echo "no virtio-blk PCI device: D11 on vfio-pci not checked"
fi

if [ -c /dev/vduse/control ]; then
    qsize_checks vdpa virtio-blk-vhost-vdpa vdpa

    # D12: one more region than ours allows, and more.
    dev=$(vdpa_dev)
    run ours regions-max regions virtio-blk-vhost-vdpa 1 path="$dev"
    m=$(val regions-max max-mem-regions)
    check "vdpa: ours reports max-mem-regions ($m)" test -n "$m"
    if [ -n "$m" ]; then
        n=$((m + 50))
        dev=$(vdpa_dev)
        run ours regions regions virtio-blk-vhost-vdpa "$n" path="$dev"
        check "vdpa: ours maps exactly max-mem-regions regions" \
            test "$(val regions mapped)" = "$m"
        check "vdpa: ours refuses the next with -ENOSPC naming max-mem-regions" \
            has regions "^map $m = -28 .*max-mem-regions"
        check "vdpa: I/O through the last of $m regions" \
            has regions "^result = ok"
        dev=$(vdpa_dev)
        run ref regions-ref regions virtio-blk-vhost-vdpa "$n" path="$dev"
        rm=$(val regions-ref max-mem-regions)
        got=$(val regions-ref mapped)
        check "vdpa: libblkio reports more than it maps ($rm > $got)" \
            test -n "$got" -a "${rm:-0}" != "$got" -a "$got" -lt "$n"
        check "vdpa: libblkio's limit is ours ($got regions)" \
            test "${got:-0}" -le "$m"
    fi
else
    echo "no VDUSE: D11/D12 on vhost-vdpa not checked"
fi

echo "limits: $checks checks, $fails failed"
[ $checks -gt 0 ] || exit 77
[ $fails -eq 0 ]
