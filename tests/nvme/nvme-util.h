/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nvme-util.h - helpers for the nvme-io_uring guest tests (test-nvme-*.c).
 *
 * These programs are built on the host and run inside the QEMU test VM
 * (tests/vm/run-in-vm.sh), which names the devices in BLKIO_VM_NVME and
 * BLKIO_VM_NVME_ZONED.  A failed check prints where, what and the thread's
 * libblkio error message and exits 1; a skip prints a reason and exits 77.
 */
#ifndef TESTS_NVME_UTIL_H
#define TESTS_NVME_UTIL_H

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/test-util.h"

/* The device to test: argv[1], else the environment variable, else dflt.
 * Skips when it is not there (not in the VM). */
static inline const char *nt_device(int argc, char **argv, const char *env,
                                    const char *dflt)
{
    const char *dev = argc > 1 ? argv[1] : getenv(env);
    struct stat st;

    if (!dev || !*dev)
        dev = dflt;
    if (!dev)
        t_skip("%s is not set (run inside the test VM)", env);
    if (stat(dev, &st) < 0 || !S_ISCHR(st.st_mode))
        t_skip("%s is not an NVMe character device here (run inside the "
               "test VM)", dev);
    return dev;
}

/* create + path (+ read-only) + connect, with the given queue counts, then
 * start. */
static inline struct blkio *nt_open(const char *path, bool read_only,
                                    int num_queues, int num_poll_queues)
{
    return t_open("nvme-io_uring", path, read_only, num_queues,
                  num_poll_queues);
}

/* Page-aligned, like the buffers nvme passthru maps best (len 0: a page). */
static inline void *nt_alloc(size_t len)
{
    return t_aligned_alloc(4096, len ? len : 4096);
}

/* The block device node that goes with /dev/ngXnY: "nvmeXnY". */
static inline void nt_block_name(const char *ng, char *out, size_t len)
{
    unsigned c, n;
    const char *base = strrchr(ng, '/');

    base = base ? base + 1 : ng;
    if (sscanf(base, "ng%un%u", &c, &n) != 2)
        T_FAIL("cannot parse NVMe char device name %s", ng);
    snprintf(out, len, "nvme%un%u", c, n);
}

/* /sys/block/NAME/ATTR as a number (-1 if absent) or a string. */
static inline long long nt_sysfs_num(const char *blk, const char *attr)
{
    char path[256];
    long long v = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/sys/block/%s/%s", blk, attr);
    f = fopen(path, "r");
    if (!f)
        return -1;
    if (fscanf(f, "%lld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

static inline void nt_sysfs_str(const char *blk, const char *attr,
                                 char *out, size_t len)
{
    char path[256];
    FILE *f;

    out[0] = '\0';
    snprintf(path, sizeof(path), "/sys/block/%s/%s", blk, attr);
    f = fopen(path, "r");
    if (!f)
        return;
    if (!fgets(out, (int)len, f))
        out[0] = '\0';
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

#endif /* TESTS_NVME_UTIL_H */
