/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * vfio-util.h - helpers for the virtio-blk-vfio-pci guest tests
 * (test-vfio-*.c).
 *
 * These programs are built on the host and run inside the QEMU test VM
 * (tests/vm/run-in-vm.sh --virtio-blk-size ...), which has a virtio-blk-pci
 * device behind a vIOMMU at $BLKIO_VM_VIRTIO_BLK_BDF.  The device is bound
 * to vfio-pci with the harness's guest helper when it is not yet.  A
 * failed check prints where, what and the thread's libblkio error message
 * and exits 1; a skip prints a reason and exits 77.
 */
#ifndef TESTS_VFIO_UTIL_H
#define TESTS_VFIO_UTIL_H

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/test-util.h"

#define VT_DRIVER "virtio-blk-vfio-pci"

/*
 * The device's sysfs directory (the driver's path), bound to vfio-pci.
 * Skips outside the test VM.
 */
static inline const char *vt_device(void)
{
    static char path[PATH_MAX];
    const char *bdf = getenv("BLKIO_VM_VIRTIO_BLK_BDF");
    const char *guest = getenv("BLKIO_VM_GUEST_DIR");
    char link[PATH_MAX + 16], drv[PATH_MAX];
    ssize_t n;

    if (!getenv("BLKIO_VM"))
        t_skip("not in the test VM (BLKIO_VM is not set)");
    if (!bdf || !*bdf)
        t_skip("BLKIO_VM_VIRTIO_BLK_BDF is not set (the VM has no "
               "--virtio-blk device)");
    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
    snprintf(link, sizeof(link), "%s/driver", path);
    n = readlink(link, drv, sizeof(drv) - 1);
    if (n >= 0)
        drv[n] = '\0';
    if (n < 0 || !strstr(drv, "/vfio-pci")) {
        char cmd[PATH_MAX * 2];

        if (!guest)
            T_FAIL("BLKIO_VM_GUEST_DIR is not set: cannot bind %s", bdf);
        snprintf(cmd, sizeof(cmd), "'%s/vfio-bind.sh' '%s' >/dev/null",
                 guest, bdf);
        if (system(cmd) != 0)
            T_FAIL("could not bind %s to vfio-pci", bdf);
    }
    return path;
}

/* create + path (+ read-only) + connect, then queue counts and start. */
static inline struct blkio *vt_open(const char *path, bool read_only,
                                    int num_queues, int num_poll_queues)
{
    return t_open(VT_DRIVER, path, read_only, num_queues, num_poll_queues);
}

#endif /* TESTS_VFIO_UTIL_H */
