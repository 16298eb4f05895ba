/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * vu-util.h - helpers for the virtio-blk-vhost-user tests.  Each test runs
 * under qsd-run.sh, which starts a qemu-storage-daemon export and passes
 * its socket in VU_SOCK.  Checks print where they failed and the libblkio
 * error message, then exit 1; skips exit 77 with a reason.
 */
#ifndef TESTS_VU_UTIL_H
#define TESTS_VU_UTIL_H

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blkio.h"

#define T_FAIL(...)                                                          \
    do {                                                                     \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);                \
        fprintf(stderr, __VA_ARGS__);                                        \
        fprintf(stderr, " (libblkio: \"%s\")\n", blkio_get_error_msg());     \
        exit(1);                                                             \
    } while (0)

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            T_FAIL("%s", #cond);                                             \
    } while (0)

#define CHECK_RET(expr, expected)                                            \
    do {                                                                     \
        long r_ = (long)(expr), e_ = (long)(expected);                       \
        if (r_ != e_)                                                        \
            T_FAIL("%s returned %ld (%s), expected %ld", #expr, r_,          \
                   r_ < 0 ? strerror((int)-r_) : "-", e_);                   \
    } while (0)

static inline const char *vu_sock(void)
{
    const char *s = getenv("VU_SOCK");
    if (!s) {
        printf("SKIP: VU_SOCK not set (run under qsd-run.sh)\n");
        exit(77);
    }
    return s;
}

static inline uint64_t vu_env_u64(const char *name)
{
    const char *s = getenv(name);
    return s ? strtoull(s, NULL, 0) : 0;
}

/* Create and connect (not start). */
static inline struct blkio *vu_connect(bool read_only)
{
    struct blkio *b;

    CHECK_RET(blkio_create("virtio-blk-vhost-user", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", vu_sock()), 0);
    if (read_only)
        CHECK_RET(blkio_set_bool(b, "read-only", true), 0);
    CHECK_RET(blkio_connect(b), 0);
    return b;
}

static inline struct blkio *vu_start(int nq, int npq)
{
    struct blkio *b = vu_connect(false);

    CHECK_RET(blkio_set_int(b, "num-queues", nq), 0);
    CHECK_RET(blkio_set_int(b, "num-poll-queues", npq), 0);
    CHECK_RET(blkio_start(b), 0);
    return b;
}

/* Allocate and map a buffer region. */
static inline void *vu_buf(struct blkio *b, size_t len,
                           struct blkio_mem_region *r)
{
    CHECK_RET(blkio_alloc_mem_region(b, r, len), 0);
    CHECK_RET(blkio_map_mem_region(b, r), 0);
    return r->addr;
}

static inline uint64_t vu_rand(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static inline void vu_fill(void *buf, size_t len, uint64_t seed)
{
    uint64_t s = seed | 1;
    uint8_t *p = buf;

    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(vu_rand(&s) >> 56);
}

/* Complete exactly n requests on q (blocking), each must succeed. */
static inline void vu_wait_ok(struct blkioq *q, int n)
{
    struct blkio_completion c[64];
    struct timespec t = { .tv_sec = 20 };

    while (n > 0) {
        int want = n < 64 ? n : 64;
        int r = blkioq_do_io(q, c, want, want, &t);

        if (r < 0)
            T_FAIL("blkioq_do_io: %s", strerror(-r));
        for (int i = 0; i < r; i++)
            if (c[i].ret != 0)
                T_FAIL("request %p failed: %s (%s)", c[i].user_data,
                       strerror(-c[i].ret),
                       c[i].error_msg ? c[i].error_msg : "");
        n -= r;
    }
}

/* Complete one request and return its result. */
static inline int vu_wait_one(struct blkioq *q)
{
    struct blkio_completion c;
    struct timespec t = { .tv_sec = 20 };
    int r = blkioq_do_io(q, &c, 1, 1, &t);

    if (r != 1)
        T_FAIL("blkioq_do_io returned %d (%s)", r, r < 0 ? strerror(-r) : "");
    return c.ret;
}

#endif /* TESTS_VU_UTIL_H */
