/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: requests the library refuses still complete, exactly once,
 * with a negative ret and an error_msg: writes to a read-only instance
 * (-EBADF), flags an operation does not take, ranges past the capacity,
 * bad iovec arrays (lengths that wrap around included), misaligned O_DIRECT buffers, more segments than
 * max-segments.  Good requests queued alongside are not affected, and many
 * failures in a row are all reported.
 */
#include "core-util.h"

#define CAP (1 << 20)

static char buf[8192] __attribute__((aligned(4096)));

/* Queue one request with `fn`, expect it to fail with `want` (0: any
 * negative value). */
#define EXPECT_FAIL(q, want, call)                                           \
    do {                                                                     \
        struct blkio_completion c_;                                          \
        call;                                                                \
        c_ = cu_wait_one(q);                                                 \
        if (c_.user_data != (void *)(q))                                     \
            T_FAIL("%s: wrong user_data %p", #call, c_.user_data);           \
        if ((want) ? c_.ret != (want) : c_.ret >= 0)                         \
            T_FAIL("%s: ret %d (%s), expected %s", #call, c_.ret,            \
                   strerror(c_.ret < 0 ? -c_.ret : 0),                       \
                   (want) ? strerror(-(want)) : "a negative errno");         \
        if (!c_.error_msg || !c_.error_msg[0])                               \
            T_FAIL("%s: failed without error_msg", #call);                   \
        /* Exactly once: nothing else is in flight now. */                   \
        CHECK_RET(blkioq_do_io(q, &c_, 0, 1, NULL), 0);                      \
        CHECK_RET(blkioq_do_io(q, &c_, 1, 1, NULL), -EINVAL);                \
    } while (0)

#define EXPECT_OK(q, call)                                                   \
    do {                                                                     \
        struct blkio_completion c_;                                          \
        call;                                                                \
        c_ = cu_wait_one(q);                                                 \
        if (c_.ret != 0)                                                     \
            T_FAIL("%s: ret %d (%s) %s", #call, c_.ret, strerror(-c_.ret),   \
                   c_.error_msg ? c_.error_msg : "");                        \
        CHECK(c_.error_msg == NULL);                                         \
    } while (0)

static void read_only_instance(const char *path)
{
    struct blkio *b = cu_io_uring(path, CU_CREATED);
    struct blkioq *q;
    struct iovec iov = { buf, 512 };

    CHECK_RET(blkio_set_bool(b, "read-only", true), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_queue(b, 0);

    EXPECT_FAIL(q, -EBADF, blkioq_write(q, 0, buf, 512, q, 0));
    EXPECT_FAIL(q, -EBADF, blkioq_writev(q, 0, &iov, 1, q, 0));
    EXPECT_FAIL(q, -EBADF, blkioq_write_zeroes(q, 0, 512, q, 0));
    EXPECT_FAIL(q, -EBADF, blkioq_discard(q, 0, 512, q, 0));
    EXPECT_OK(q, blkioq_read(q, 0, buf, 512, q, 0));
    EXPECT_OK(q, blkioq_readv(q, 0, &iov, 1, q, 0));
    EXPECT_OK(q, blkioq_flush(q, q, 0));
    blkio_destroy(&b);
}

static void direct_instance(const char *path)
{
    struct blkio *b = cu_io_uring(path, CU_CREATED);
    struct blkioq *q;
    int ra, ba, ret;

    CHECK_RET(blkio_set_bool(b, "direct", true), 0);
    ret = blkio_connect(b);
    if (ret < 0) {
        printf("note: O_DIRECT not possible here (%s), skipping the "
               "alignment cases\n", blkio_get_error_msg());
        blkio_destroy(&b);
        return;
    }
    CHECK_RET(blkio_start(b), 0);
    CHECK_RET(blkio_get_int(b, "request-alignment", &ra), 0);
    CHECK_RET(blkio_get_int(b, "buf-alignment", &ba), 0);
    q = blkio_get_queue(b, 0);
    if (ra > 1) {
        EXPECT_FAIL(q, -EINVAL, blkioq_read(q, 1, buf, (size_t)ra, q, 0));
        EXPECT_FAIL(q, -EINVAL, blkioq_read(q, 0, buf, (size_t)ra - 1, q,
                                            0));
        EXPECT_FAIL(q, 0, blkioq_write_zeroes(q, 1, (uint64_t)ra, q, 0));
    } else {
        printf("note: request-alignment is 1 with direct=true\n");
    }
    if (ba > 1) {
        EXPECT_FAIL(q, -EINVAL, blkioq_read(q, 0, buf + 1, 4096, q, 0));
    } else {
        printf("note: buf-alignment is 1 with direct=true\n");
    }
    if (ra <= 4096 && ba <= 4096)
        EXPECT_OK(q, blkioq_read(q, 0, buf, 4096, q, 0));
    blkio_destroy(&b);
}

int main(void)
{
    const char *path = cu_temp_file("disk.img", CAP, 0x22);
    struct blkio *b = cu_io_uring(path, CU_STARTED);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct iovec iov[2] = { { buf, 512 }, { buf + 512, 512 } };
    struct blkio_completion c[4];
    bool cg;
    int n, maxseg;

    CHECK(q != NULL);
    CHECK_RET(blkio_get_bool(b, "can-grow", &cg), 0);

    /* Flags an operation does not take. */
    EXPECT_FAIL(q, -EINVAL, blkioq_read(q, 0, buf, 512, q, BLKIO_REQ_FUA));
    EXPECT_FAIL(q, -EINVAL, blkioq_readv(q, 0, iov, 2, q,
                                         BLKIO_REQ_NO_UNMAP));
    EXPECT_FAIL(q, -EINVAL, blkioq_write(q, 0, buf, 512, q,
                                         BLKIO_REQ_NO_UNMAP));
    EXPECT_FAIL(q, -EINVAL, blkioq_write(q, 0, buf, 512, q, 1u << 31));
    EXPECT_FAIL(q, -EINVAL, blkioq_flush(q, q, BLKIO_REQ_FUA));
    EXPECT_FAIL(q, -EINVAL, blkioq_discard(q, 0, 512, q, BLKIO_REQ_FUA));
    EXPECT_FAIL(q, -EINVAL, blkioq_write_zeroes(q, 0, 512, q, 1u << 3));
    /* ... and those it does take. */
    EXPECT_OK(q, blkioq_write(q, 0, buf, 512, q, BLKIO_REQ_FUA));
    EXPECT_OK(q, blkioq_writev(q, 0, iov, 2, q, BLKIO_REQ_FUA));

    /* Past the end of the device. */
    if (!cg) {
        EXPECT_FAIL(q, -EINVAL, blkioq_read(q, CAP, buf, 512, q, 0));
        EXPECT_FAIL(q, -EINVAL, blkioq_read(q, CAP - 256, buf, 512, q, 0));
        EXPECT_FAIL(q, -EINVAL, blkioq_write(q, CAP, buf, 512, q, 0));
        EXPECT_FAIL(q, -EINVAL, blkioq_readv(q, CAP - 512, iov, 2, q, 0));
        EXPECT_FAIL(q, -EINVAL, blkioq_read(q, UINT64_MAX - 100, buf, 512,
                                            q, 0));
        EXPECT_FAIL(q, -EINVAL, blkioq_write_zeroes(q, CAP - 512, 1024, q,
                                                    0));
        EXPECT_FAIL(q, -EINVAL, blkioq_discard(q, UINT64_MAX - 511, 1024, q,
                                               0));
        EXPECT_OK(q, blkioq_read(q, CAP - 512, buf, 512, q, 0));
    }

    /* Bad iovec arrays. */
    EXPECT_FAIL(q, -EINVAL, blkioq_readv(q, 0, iov, -1, q, 0));
    EXPECT_FAIL(q, -EINVAL, blkioq_readv(q, 0, NULL, 2, q, 0));
    /* Lengths that wrap to 0 in 64 bits: not an empty success. */
    {
        struct iovec wrap[2] = { { buf, 4096 }, { buf, (size_t)0 - 4096 } };

        EXPECT_FAIL(q, -EINVAL, blkioq_readv(q, 0, wrap, 2, q, 0));
        EXPECT_FAIL(q, -EINVAL, blkioq_writev(q, 0, wrap, 2, q, 0));
    }

    /* More segments than max-segments. */
    CHECK_RET(blkio_get_int(b, "max-segments", &maxseg), 0);
    if (maxseg > 0 && maxseg < 65536) {
        struct iovec *many = calloc((size_t)maxseg + 1, sizeof(*many));

        CHECK(many != NULL);
        for (int i = 0; i <= maxseg; i++)
            many[i] = (struct iovec){ buf, 1 };
        EXPECT_FAIL(q, 0, blkioq_readv(q, 0, many, maxseg + 1, q, 0));
        EXPECT_OK(q, blkioq_readv(q, 0, many, maxseg, q, 0));
        free(many);
    }

    /* A good request between two bad ones: each completes once. */
    blkioq_read(q, 0, buf, 512, &c[0], BLKIO_REQ_FUA);
    blkioq_read(q, 0, buf, 512, &c[1], 0);
    blkioq_write(q, 0, buf, 512, &c[2], 1u << 20);
    {
        struct blkio_completion got[4];
        int bad = 0, good = 0;
        struct timespec t = { .tv_sec = 10 };

        n = blkioq_do_io(q, got, 3, 4, &t);
        CHECK_RET(n, 3);
        for (int i = 0; i < n; i++) {
            if (got[i].user_data == &c[1]) {
                CHECK_RET(got[i].ret, 0);
                good++;
            } else {
                CHECK(got[i].user_data == &c[0] || got[i].user_data == &c[2]);
                CHECK_RET(got[i].ret, -EINVAL);
                CHECK(got[i].error_msg != NULL);
                bad++;
            }
        }
        CHECK(good == 1 && bad == 2);
    }

    /* Many failures before the first do_io: none is lost. */
    {
        enum { MANY = 3000 };
        struct blkio_completion *got = calloc(MANY, sizeof(*got));
        struct timespec t = { .tv_sec = 10 };
        int total = 0;

        CHECK(got != NULL);
        for (uintptr_t i = 0; i < MANY; i++)
            blkioq_read(q, 0, buf, 512, (void *)(i + 1), BLKIO_REQ_FUA);
        while (total < MANY) {
            n = blkioq_do_io(q, got + total, 1, MANY - total, &t);
            CHECK(n >= 1);
            total += n;
        }
        for (int i = 0; i < MANY; i++) {
            CHECK_RET(got[i].ret, -EINVAL);
            CHECK(got[i].error_msg != NULL);
        }
        /* Every user_data once. */
        {
            char *seen = calloc(MANY + 1, 1);
            CHECK(seen != NULL);
            for (int i = 0; i < MANY; i++) {
                uintptr_t u = (uintptr_t)got[i].user_data;
                CHECK(u >= 1 && u <= MANY && !seen[u]);
                seen[u] = 1;
            }
            free(seen);
        }
        free(got);
        CHECK_RET(blkioq_do_io(q, c, 0, 1, NULL), 0);
    }
    blkio_destroy(&b);

    read_only_instance(path);
    direct_instance(path);
    return T_EXIT_PASS;
}
