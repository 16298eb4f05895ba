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
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blkio.h"

#define VT_DRIVER "virtio-blk-vhost-vdpa"
/* vdpa-setup.sh's export: num-queues=2 */
#define VT_EXPORT_QUEUES 2

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

#define CHECK_EQ(a, b)                                                       \
    do {                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                  \
        if (a_ != b_)                                                        \
            VT_FAIL("%s = %lld, expected %s = %lld", #a, a_, #b, b_);        \
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
        vt_skip("not in the test VM (BLKIO_VM is not set)");
    if (!dir)
        vt_skip("BLKIO_VM_GUEST_DIR is not set");
    if (access("/dev/vduse/control", F_OK) != 0)
        vt_skip("no /dev/vduse/control: the guest kernel has no VDUSE");
    snprintf(vt_setup, sizeof(vt_setup), "%s/vdpa-setup.sh", dir);
    snprintf(vt_image, sizeof(vt_image), "/run/test-vdpa-%d.img",
             (int)getpid());
    fd = open(vt_image, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
        VT_FAIL("creating image %s: %s", vt_image, strerror(errno));
    close(fd);

    snprintf(cmd, sizeof(cmd), "'%s' start '%s'", vt_setup, vt_image);
    fflush(stdout);
    p = popen(cmd, "r");
    if (!p)
        VT_FAIL("popen %s: %s", cmd, strerror(errno));
    if (!fgets(dev, sizeof(dev), p))
        dev[0] = '\0';
    st = pclose(p);
    dev[strcspn(dev, "\n")] = '\0';
    if (st != 0 || strncmp(dev, "/dev/vhost-vdpa-", 16) != 0)
        VT_FAIL("%s failed (status %d, output '%s')", cmd, st, dev);
    vt_started = true;
    atexit(vt_stop);
    return dev;
}

/* create + path (+ read-only) + connect, with the given queue counts, then
 * start. */
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

/* A memory region from the library (memfd-backed), mapped. */
static inline void *vt_region(struct blkio *b, size_t len,
                              struct blkio_mem_region *r)
{
    CHECK_RET(blkio_alloc_mem_region(b, r, len), 0);
    CHECK_RET(blkio_map_mem_region(b, r), 0);
    return r->addr;
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

/* Read the backend's image directly: what really reached the device. */
static inline void vt_read_image(void *buf, size_t len, uint64_t off)
{
    int fd = open(vt_image, O_RDONLY);
    ssize_t r;

    if (fd < 0)
        VT_FAIL("open %s: %s", vt_image, strerror(errno));
    r = pread(fd, buf, len, (off_t)off);
    if (r != (ssize_t)len)
        VT_FAIL("pread %zu bytes at %llu of %s: %zd (%s)", len,
                (unsigned long long)off, vt_image, r, strerror(errno));
    close(fd);
}

/* Deterministic pattern for byte offset `off` of generation `gen`. */
static inline void vt_fill(void *buf, size_t len, uint64_t off, uint32_t gen)
{
    uint64_t *p = buf;

    for (size_t i = 0; i < len / 8; i++)
        p[i] = ((off + i * 8) * 0x9e3779b97f4a7c15ull) ^ gen;
}

static inline bool vt_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;

    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* xorshift64: reproducible random numbers, one state per user. */
static inline uint32_t vt_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 11);
}

#endif /* TESTS_VDPA_UTIL_H */
