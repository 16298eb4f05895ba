/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * vdpa-util.h - helpers for the virtio-blk-vhost-vdpa guest tests
 * (test-vdpa-*.c).
 *
 * The programs are built on the host and run inside the QEMU test VM
 * (tests/vm/run-in-vm.sh).  Each makes its own vDPA device with the guest
 * helper vdpa-setup.sh (qemu-storage-daemon's vduse-blk export, two
 * queues) over an image in guest memory, and removes it at exit.  A failed
 * check prints where, what and the libblkio error message and exits 1; a
 * skip prints the reason and exits 77.
 */
#ifndef TESTS_VDPA_UTIL_H
#define TESTS_VDPA_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common/test-util.h"

#define VT_DRIVER "virtio-blk-vhost-vdpa"
/* vdpa-setup.sh's export: num-queues=2 */
#define VT_EXPORT_QUEUES 2

static char vt_image[256];
static char vt_setup[512];
static bool vt_started;

/*
 * At exit, a failed check may leave an instance open: `vdpa dev del`
 * waits until every vhost-vdpa fd is closed, so ours (and the library's
 * eventfds) must go first or the removal hangs and the next test cannot
 * make its device.  Only stdio survives.
 */
static inline void vt_close_fds(void)
{
    fflush(stdout);
    fflush(stderr);
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
}

static inline void vt_stop(void)
{
    char cmd[600];

    if (!vt_started)
        return;
    vt_started = false;
    vt_close_fds();
    snprintf(cmd, sizeof(cmd), "'%s' stop", vt_setup);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: %s failed\n", cmd);
    unlink(vt_image);
}

/*
 * Make a vDPA device over a fresh image of `size` bytes (sparse, zeroed)
 * and return its /dev/vhost-vdpa-N path.  The image path is in vt_image,
 * so tests can check what reached the backend.  Skips outside the VM.
 */
static inline const char *vt_start(uint64_t size)
{
    static char dev[128];
    const char *dir = getenv("BLKIO_VM_GUEST_DIR");
    char cmd[1024];
    FILE *p;
    int fd, st;

    if (!getenv("BLKIO_VM"))
        t_skip("not in the test VM (BLKIO_VM is not set)");
    if (!dir)
        t_skip("BLKIO_VM_GUEST_DIR is not set");
    if (access("/dev/vduse/control", F_OK) != 0)
        t_skip("no /dev/vduse/control: the guest kernel has no VDUSE");
    snprintf(vt_setup, sizeof(vt_setup), "%s/vdpa-setup.sh", dir);
    snprintf(vt_image, sizeof(vt_image), "/run/test-vdpa-%d.img",
             (int)getpid());
    fd = open(vt_image, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        T_FAIL("creating image %s: %s", vt_image, strerror(errno));
    close(fd);

    snprintf(cmd, sizeof(cmd), "'%s' start '%s'", vt_setup, vt_image);
    fflush(stdout);
    p = popen(cmd, "r");
    if (!p)
        T_FAIL("popen %s: %s", cmd, strerror(errno));
    if (!fgets(dev, sizeof(dev), p))
        dev[0] = '\0';
    st = pclose(p);
    dev[strcspn(dev, "\n")] = '\0';
    if (st != 0 || strncmp(dev, "/dev/vhost-vdpa-", 16) != 0)
        T_FAIL("%s failed (status %d, output '%s')", cmd, st, dev);
    vt_started = true;
    atexit(vt_stop);
    return dev;
}

/* create + path (+ read-only) + connect, with the given queue counts, then
 * start. */
static inline struct blkio *vt_open(const char *path, bool read_only,
                                    int num_queues, int num_poll_queues)
{
    return t_open(VT_DRIVER, path, read_only, num_queues, num_poll_queues);
}

/* Read the backend's image directly: what really reached the device. */
static inline void vt_read_image(void *buf, size_t len, uint64_t off)
{
    int fd = open(vt_image, O_RDONLY);
    ssize_t r;

    if (fd < 0)
        T_FAIL("open %s: %s", vt_image, strerror(errno));
    r = pread(fd, buf, len, (off_t)off);
    if (r != (ssize_t)len)
        T_FAIL("pread %zu bytes at %llu of %s: %zd (%s)", len,
               (unsigned long long)off, vt_image, r, strerror(errno));
    close(fd);
}

#endif /* TESTS_VDPA_UTIL_H */
