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

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blkio.h"

#define NT_FAIL(...)                                                         \
    do {                                                                     \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                \
        fprintf(stderr, __VA_ARGS__);                                        \
        fprintf(stderr, "\n");                                               \
        exit(1);                                                             \
    } while (0)

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            NT_FAIL("%s (last error message: \"%s\")", #cond,                \
                    blkio_get_error_msg());                                  \
    } while (0)

/* A call that must return exactly `expected` (0, a count or -errno). */
#define CHECK_RET(expr, expected)                                            \
    do {                                                                     \
        long r_ = (long)(expr);                                              \
        long e_ = (long)(expected);                                          \
        if (r_ != e_)                                                        \
            NT_FAIL("%s returned %ld (%s), expected %ld (%s); error "        \
                    "message: \"%s\"", #expr, r_,                            \
                    r_ < 0 ? strerror((int)-r_) : "-", e_,                   \
                    e_ < 0 ? strerror((int)-e_) : "-",                       \
                    blkio_get_error_msg());                                  \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                   \
    do {                                                                     \
        unsigned long long a_ = (a), b_ = (b);                               \
        if (a_ != b_)                                                        \
            NT_FAIL("%s = %llu, expected %s = %llu", #a, a_, #b, b_);        \
    } while (0)

static inline void __attribute__((noreturn, format(printf, 1, 2)))
nt_skip(const char *fmt, ...)
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
        nt_skip("%s is not set (run inside the test VM)", env);
    if (stat(dev, &st) < 0 || !S_ISCHR(st.st_mode))
        nt_skip("%s is not an NVMe character device here (run inside the "
                "test VM)", dev);
    return dev;
}

/* create + path (+ read-only) + connect, with the given queue counts, then
 * start. */
static inline struct blkio *nt_open(const char *path, bool read_only,
                                    int num_queues, int num_poll_queues)
{
    struct blkio *b = NULL;

    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", path), 0);
    CHECK_RET(blkio_set_bool(b, "read-only", read_only), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(blkio_set_int(b, "num-queues", num_queues), 0);
    CHECK_RET(blkio_set_int(b, "num-poll-queues", num_poll_queues), 0);
    CHECK_RET(blkio_start(b), 0);
    return b;
}

/* Wait for exactly one completion and return its ret; *msg gets its
 * error_msg. */
static inline int nt_wait(struct blkioq *q, const char **msg)
{
    struct blkio_completion c;
    struct timespec t = { .tv_sec = 30 };

    CHECK_RET(blkioq_do_io(q, &c, 1, 1, &t), 1);
    if (msg)
        *msg = c.error_msg;
    if (c.ret < 0 && !c.error_msg)
        NT_FAIL("completion with ret %d has no error_msg", c.ret);
    return c.ret;
}

static inline uint64_t nt_get_u64(struct blkio *b, const char *name)
{
    uint64_t v;

    CHECK_RET(blkio_get_uint64(b, name, &v), 0);
    return v;
}

static inline int nt_get_int(struct blkio *b, const char *name)
{
    int v;

    CHECK_RET(blkio_get_int(b, name, &v), 0);
    return v;
}

static inline bool nt_get_bool(struct blkio *b, const char *name)
{
    bool v;

    CHECK_RET(blkio_get_bool(b, name, &v), 0);
    return v;
}

static inline void *nt_alloc(size_t len)
{
    void *p = NULL;

    if (posix_memalign(&p, 4096, len ? len : 4096) != 0)
        NT_FAIL("out of memory (%zu bytes)", len);
    return p;
}

/* The block device node that goes with /dev/ngXnY: "nvmeXnY". */
static inline void nt_block_name(const char *ng, char *out, size_t len)
{
    unsigned c, n;
    const char *base = strrchr(ng, '/');

    base = base ? base + 1 : ng;
    if (sscanf(base, "ng%un%u", &c, &n) != 2)
        NT_FAIL("cannot parse NVMe char device name %s", ng);
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

/* Deterministic pattern: block `lba` of generation `gen`. */
static inline void nt_fill(void *buf, size_t len, uint64_t off, uint32_t gen)
{
    uint64_t *p = buf;

    for (size_t i = 0; i < len / 8; i++)
        p[i] = ((off + i * 8) * 0x9e3779b97f4a7c15ull) ^ gen;
}

static inline bool nt_verify(const void *buf, size_t len, uint64_t off,
                             uint32_t gen)
{
    const uint64_t *p = buf;

    for (size_t i = 0; i < len / 8; i++)
        if (p[i] != (((off + i * 8) * 0x9e3779b97f4a7c15ull) ^ gen))
            return false;
    return true;
}

static inline bool nt_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;

    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

#endif /* TESTS_NVME_UTIL_H */
