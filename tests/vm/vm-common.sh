# Shared by the test-VM scripts (sourced, not executed).
#
# Where the guest kernel and the initramfs live.  They are downloaded and
# built artifacts, never part of the repository and never installed on the
# host:
#   $BLKIO_VM_CACHE                 if set
#   /var/cache/blkio-test-vm        if we may write there (root, CI)
#   ${XDG_CACHE_HOME:-~/.cache}/blkio-test-vm   otherwise
#
# Layout inside the cache:
#   kernel/<KVER>/             the linux-image .deb unpacked with dpkg -x
#   kernel/current             one line: the KVER the harness boots
#   initramfs-<KVER>.cpio.gz   built by run-in-vm.sh, keyed by an input hash
#   lock                       flock(1) target: one setup/build at a time

vm_cache_dir()
{
    if [ -n "${BLKIO_VM_CACHE:-}" ]; then
        printf '%s\n' "$BLKIO_VM_CACHE"
    elif [ -w /var/cache ] || [ -w /var/cache/blkio-test-vm ] ||
         [ -r /var/cache/blkio-test-vm/kernel/current ]; then
        # A system-wide cache that someone (the setup script, as root)
        # filled is used read-only by other users.
        printf '%s\n' /var/cache/blkio-test-vm
    else
        printf '%s\n' "${XDG_CACHE_HOME:-$HOME/.cache}/blkio-test-vm"
    fi
}

# The modules the guest loads, in an order that satisfies their dependencies
# (run-in-vm.sh still resolves each with modprobe --show-depends, so the order
# here only decides which come first).  A module that is missing from the
# kernel or built in is skipped.
VM_MODULES="virtio_iommu netfs 9pnet 9pnet_virtio 9p nvme_auth nvme_core nvme
vfio irqbypass vfio_pci_core vfio_pci vfio_iommu_type1 vdpa vhost_iotlb vduse
vhost vhost_vdpa overlay"

# Take the cache lock on fd 9.  Read-only users of a shared cache can only
# open it for reading, which flock(1) accepts as well.
vm_cache_lock()
{
    { exec 9>>"$1/lock"; } 2>/dev/null || { exec 9<"$1/lock"; } 2>/dev/null || return 0
    flock 9
}
