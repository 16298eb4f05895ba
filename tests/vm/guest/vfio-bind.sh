#!/bin/sh
# Guest helper: bind a PCI device to vfio-pci and print its VFIO group node.
# Usage: vfio-bind.sh BDF      (e.g. "$BLKIO_VM_VIRTIO_BLK_BDF")
# libblkio's virtio-blk-vfio-pci driver then takes path=/sys/bus/pci/devices/BDF.
set -eu
bdf=${1:?usage: vfio-bind.sh BDF}
dev=/sys/bus/pci/devices/$bdf
[ -d "$dev" ] || { echo "vfio-bind: no PCI device $bdf" >&2; exit 1; }
[ -e "$dev/iommu_group" ] || { echo "vfio-bind: $bdf has no IOMMU group" >&2; exit 1; }

# driver_override makes drivers_probe pick vfio-pci and nothing else.
echo vfio-pci > "$dev/driver_override"
if [ -e "$dev/driver" ]; then
    echo "$bdf" > "$dev/driver/unbind"
fi
echo "$bdf" > /sys/bus/pci/drivers_probe

drv=$(basename "$(readlink -f "$dev/driver" 2>/dev/null)" 2>/dev/null || true)
[ "$drv" = vfio-pci ] || { echo "vfio-bind: $bdf is bound to '${drv:-nothing}', not vfio-pci" >&2; exit 1; }

group=$(basename "$(readlink -f "$dev/iommu_group")")
# devtmpfs creates the node asynchronously.
i=0
while [ ! -c "/dev/vfio/$group" ] && [ $i -lt 50 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ -c "/dev/vfio/$group" ] || { echo "vfio-bind: /dev/vfio/$group did not appear" >&2; exit 1; }
echo "/dev/vfio/$group"
