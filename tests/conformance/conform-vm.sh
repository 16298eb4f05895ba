#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# conform-vm.sh - the conformance scenarios on the test VM's devices (run
# by tests/vm/run-in-vm.sh inside the guest): nvme-io_uring on a
# conventional and a zoned namespace, virtio-blk-vfio-pci, and
# virtio-blk-vhost-vdpa (a fresh vduse-blk export for every run).  Each
# scenario is one conform-run.sh comparison; the script fails if any does.
# Part "limits" runs test-vm-limits.sh (deliberate differences D11, D12 at
# the devices' limits, on both libraries).
#
# Environment: CONFORM_BIN (the conform program), LIMITS_BIN
# (conform-limits), CONFORM_PARTS (default "nvme zoned vfio vdpa limits"),
# and what run-in-vm.sh provides (BLKIO_VM_*).
set -u
here=$(cd "$(dirname "$0")" && pwd)
run=$here/conform-run.sh
bin=${CONFORM_BIN:?CONFORM_BIN not set}
export TMPDIR=/tmp
all="lifecycle props queues mem io cfd poll readonly"
fails=0 passes=0

one() {   # name target-option... -- program args...
    local name=$1
    shift
    echo "=== conform-$name"
    "$run" --name "$name" "$@"
    case $? in
    0) passes=$((passes + 1)); echo "conform-$name: PASS" ;;
    77) echo "conform-$name: SKIP" ;;
    *) fails=$((fails + 1)); echo "conform-$name: FAIL" ;;
    esac
}

for part in ${CONFORM_PARTS:-nvme zoned vfio vdpa limits}; do
    case $part in
    nvme)
        dev=${BLKIO_VM_NVME:-}
        [ -n "$dev" ] || { echo "no NVMe namespace: skipping nvme"; continue; }
        for sc in $all zones; do
            one "nvme-$sc" --device -- "$bin" "$sc" nvme-io_uring path="$dev"
        done
        CONFORM_INFO_PROPS="zoned num-entries" \
            one nvme-examples --device -- "$here/conform-examples.sh" nvme-io_uring path="$dev" ;;
    zoned)
        dev=${BLKIO_VM_NVME_ZONED:-}
        [ -n "$dev" ] || { echo "no zoned NVMe namespace: skipping zoned"; continue; }
        for sc in props zones; do
            one "nvme-zoned-$sc" --device -- "$bin" "$sc" nvme-io_uring path="$dev"
        done ;;
    vfio)
        bdf=${BLKIO_VM_VIRTIO_BLK_BDF:-}
        [ -n "$bdf" ] || { echo "no virtio-blk PCI device: skipping vfio"; continue; }
        "$BLKIO_VM_GUEST_DIR/vfio-bind.sh" "$bdf" >/dev/null || { fails=$((fails + 1)); continue; }
        for sc in $all; do
            one "vfio-$sc" --device -- "$bin" "$sc" virtio-blk-vfio-pci path="/sys/bus/pci/devices/$bdf"
        done
        CONFORM_INFO_PROPS="queue-size max-queue-size" \
            one vfio-examples --device -- "$here/conform-examples.sh" virtio-blk-vfio-pci path="/sys/bus/pci/devices/$bdf" ;;
    vdpa)
        for sc in $all; do
            one "vdpa-$sc" --vdpa -- "$bin" "$sc" virtio-blk-vhost-vdpa path=@FILE@
        done
        CONFORM_INFO_PROPS="queue-size max-queue-size" \
            one vdpa-examples --vdpa -- "$here/conform-examples.sh" virtio-blk-vhost-vdpa path=@FILE@ ;;
    limits)
        echo "=== conform-limits"
        BLKIO_REFERENCE=${BLKIO_REFERENCE:-$MESON_BUILD_ROOT/reference} "$here/test-vm-limits.sh"
        case $? in
        0) passes=$((passes + 1)); echo "conform-limits: PASS" ;;
        77) echo "conform-limits: SKIP" ;;
        *) fails=$((fails + 1)); echo "conform-limits: FAIL" ;;
        esac ;;
    esac
done
echo "conformance in the VM: $passes passed, $fails failed"
[ $fails -eq 0 ] || exit 1
[ $passes -gt 0 ] || exit 77
exit 0
