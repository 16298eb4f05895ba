/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * vu-util.h - helpers for the virtio-blk-vhost-user tests.  Each test runs
 * under qsd-run.sh, which starts a qemu-storage-daemon export and passes
 * its socket in VU_SOCK.  Checks print where they failed and the libblkio
 * error message (T_FAIL_MSG), then exit 1; skips exit 77 with a reason
 * (tests/common/test-util.h).
 */
#ifndef TESTS_VU_UTIL_H
#define TESTS_VU_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/test-util.h"

static inline const char *vu_sock(void)
{
    const char *s = getenv("VU_SOCK");
    if (!s)
        t_skip("VU_SOCK not set (run under qsd-run.sh)");
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
    return t_open("virtio-blk-vhost-user", vu_sock(), false, nq, npq);
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
            T_FAIL_MSG("blkioq_do_io: %s", strerror(-r));
        for (int i = 0; i < r; i++)
            if (c[i].ret != 0)
                T_FAIL_MSG("request %p failed: %s (%s)", c[i].user_data,
                           strerror(-c[i].ret),
                           c[i].error_msg ? c[i].error_msg : "");
        n -= r;
    }
}

/* Complete one request (within 20 s) and return its result. */
static inline int vu_wait_one(struct blkioq *q)
{
    return t_wait_one(q, 20).ret;
}

#endif /* TESTS_VU_UTIL_H */
