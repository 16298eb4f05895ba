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

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blkio.h"

#define VT_DRIVER "virtio-blk-vfio-pci"

#define VT_FAIL(...)                                                         \
    do {                                                                     \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                \
        fprintf(stderr, __VA_ARGS__);                                        \
        fprintf(stderr, "\n");                                               \
        exit(1);                                                             \
    } while (0)

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            VT_FAIL("%s (last error message: \"%s\")", #cond,                \
                    blkio_get_error_msg());                                  \
    } while (0)

/* A call that must return exactly `expected` (0, a count or -errno). */
#define CHECK_RET(expr, expected)                                            \
    do {                                                                     \
        long r_ = (long)(expr);                                              \
        long e_ = (long)(expected);                                          \
        if (r_ != e_)                                                        \
            VT_FAIL("%s returned %ld (%s), expected %ld (%s); error "        \
                    "message: \"%s\"", #expr, r_,                            \
                    r_ < 0 ? strerror((int)-r_) : "-", e_,                   \
                    e_ < 0 ? strerror((int)-e_) : "-",                       \
                    blkio_get_error_msg());                                  \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                   \
    do {                                                                     \
        unsigned long long a_ = (a), b_ = (b);                               \
        if (a_ != b_)                                                        \
            VT_FAIL("%s = %llu, expected %s = %llu", #a, a_, #b, b_);        \
    } while (0)

static inline void __attribute__((noreturn, format(printf, 1, 2)))
vt_skip(const char *fmt, ...)
{
    va_list ap;

    printf("SKIP: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    exit(77);
}

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
        vt_skip("not in the test VM (BLKIO_VM is not set)");
    if (!bdf || !*bdf)
        vt_skip("BLKIO_VM_VIRTIO_BLK_BDF is not set (the VM has no "
                "--virtio-blk device)");
    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
    snprintf(link, sizeof(link), "%s/driver", path);
    n = readlink(link, drv, sizeof(drv) - 1);
    if (n >= 0)
        drv[n] = '\0';
    if (n < 0 || !strstr(drv, "/vfio-pci")) {
        char cmd[PATH_MAX * 2];

        if (!guest)
            VT_FAIL("BLKIO_VM_GUEST_DIR is not set: cannot bind %s", bdf);
        snprintf(cmd, sizeof(cmd), "'%s/vfio-bind.sh' '%s' >/dev/null",
                 guest, bdf);
        if (system(cmd) != 0)
            VT_FAIL("could not bind %s to vfio-pci", bdf);
    }
    return path;
}

/* create + path (+ read-only) + connect, then queue counts and start. */
static inline struct blkio *vt_open(const char *path, bool read_only,
                                    int num_queues, int num_poll_queues)
{
    struct blkio *b = NULL;

    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_set_str(b, "path", path), 0);
    CHECK_RET(blkio_set_bool(b, "read-only", read_only), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(blkio_set_int(b, "num-queues", num_queues), 0);
    CHECK_RET(blkio_set_int(b, "num-poll-queues", num_poll_queues), 0);
    CHECK_RET(blkio_start(b), 0);
    return b;
}

/* A memory region from the library, mapped for I/O. */
static inline void *vt_region(struct blkio *b, size_t len,
                              struct blkio_mem_region *r)
{
    CHECK_RET(blkio_alloc_mem_region(b, r, len), 0);
    CHECK_RET(blkio_map_mem_region(b, r), 0);
    return r->addr;
}

static inline void vt_region_free(struct blkio *b, struct blkio_mem_region *r)
{
    blkio_unmap_mem_region(b, r);
    blkio_free_mem_region(b, r);
}

/* Wait for exactly one completion and return its ret; *msg gets its
 * error_msg. */
static inline int vt_wait(struct blkioq *q, const char **msg)
{
    struct blkio_completion c;
    struct timespec t = { .tv_sec = 30 };

    CHECK_RET(blkioq_do_io(q, &c, 1, 1, &t), 1);
    if (msg)
        *msg = c.error_msg;
    if (c.ret < 0 && !c.error_msg)
        VT_FAIL("completion with ret %d has no error_msg", c.ret);
    return c.ret;
}

static inline uint64_t vt_get_u64(struct blkio *b, const char *name)
{
    uint64_t v;

    CHECK_RET(blkio_get_uint64(b, name, &v), 0);
    return v;
}

static inline int vt_get_int(struct blkio *b, const char *name)
{
    int v;

    CHECK_RET(blkio_get_int(b, name, &v), 0);
    return v;
}

static inline bool vt_get_bool(struct blkio *b, const char *name)
{
    bool v;

    CHECK_RET(blkio_get_bool(b, name, &v), 0);
    return v;
}

/* Deterministic pattern for bytes [off, off+len) of generation gen. */
static inline void vt_fill(void *buf, size_t len, uint64_t off, uint32_t gen)
{
    uint64_t *p = buf;

    for (size_t i = 0; i < len / 8; i++)
        p[i] = ((off + i * 8) * 0x9e3779b97f4a7c15ull) ^ gen;
}

static inline bool vt_verify(const void *buf, size_t len, uint64_t off,
                             uint32_t gen)
{
    const uint64_t *p = buf;

    for (size_t i = 0; i < len / 8; i++)
        if (p[i] != (((off + i * 8) * 0x9e3779b97f4a7c15ull) ^ gen))
            return false;
    return true;
}

static inline bool vt_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;

    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

#endif /* TESTS_VFIO_UTIL_H */
