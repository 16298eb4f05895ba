/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: blkioq_do_io() argument rules.  min > max, negative min,
 * max > 0 with a NULL array and min above the number of requests in flight
 * all fail with -EINVAL without consuming anything; completions are handed
 * out at most max at a time, each exactly once, with their user_data.
 */
#include "core-util.h"

#define NREQ 8

int main(void)
{
    const char *path = cu_temp_file("disk.img", 1 << 20, 0x11);
    struct blkio *b = cu_io_uring(path, CU_STARTED);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_completion c[NREQ + 1];
    static char bufs[NREQ][512];
    bool seen[NREQ] = { false };
    struct timespec t;
    int got = 0, n;

    CHECK(q != NULL);

    /* Nothing in flight. */
    CHECK_RET(blkioq_do_io(q, NULL, 0, 0, NULL), 0);
    CHECK_RET(blkioq_do_io(q, c, 0, NREQ, NULL), 0);
    CHECK_RET(blkioq_do_io(q, c, 1, 1, NULL), -EINVAL);
    CHECK(blkio_get_error_msg()[0] != '\0');
    t = (struct timespec){ .tv_sec = 1 };
    CHECK_RET(blkioq_do_io(q, c, 1, 1, &t), -EINVAL);

    for (int i = 0; i < NREQ; i++)
        blkioq_read(q, (uint64_t)i * 512, bufs[i], 512, &bufs[i], 0);

    /* Bad arguments with requests in flight; none may eat a completion. */
    CHECK_RET(blkioq_do_io(q, c, 2, 1, NULL), -EINVAL);
    CHECK_RET(blkioq_do_io(q, c, -1, 1, NULL), -EINVAL);
    CHECK_RET(blkioq_do_io(q, NULL, 0, 1, NULL), -EINVAL);
    CHECK_RET(blkioq_do_io(q, NULL, 1, 1, NULL), -EINVAL);
    CHECK_RET(blkioq_do_io(q, c, NREQ + 1, NREQ + 1, NULL), -EINVAL);
    CHECK(blkio_get_error_msg()[0] != '\0');
    t = (struct timespec){ .tv_sec = 0, .tv_nsec = 1000000000 };
    CHECK(blkioq_do_io(q, c, 1, 1, &t) < 0);
    t = (struct timespec){ .tv_sec = -1 };
    CHECK(blkioq_do_io(q, c, 1, 1, &t) < 0);

    /* One at a time: max 1 returns at most one even if more are done. */
    n = blkioq_do_io(q, c, 1, 1, NULL);
    CHECK_RET(n, 1);
    for (;;) {
        for (int i = 0; i < n; i++) {
            char (*p)[512] = c[i].user_data;
            int idx = (int)(p - bufs);

            CHECK(idx >= 0 && idx < NREQ);
            if (seen[idx])
                T_FAIL("completion for request %d handed out twice", idx);
            seen[idx] = true;
            CHECK_RET(c[i].ret, 0);
            CHECK(c[i].error_msg == NULL);
            CHECK(bufs[idx][0] == 0x11 && bufs[idx][511] == 0x11);
        }
        got += n;
        if (got == NREQ)
            break;
        /* min 2 up to what is left, max larger than min. */
        n = blkioq_do_io(q, c, NREQ - got >= 2 ? 2 : 1, NREQ + 1, NULL);
        CHECK(n >= 1 && n <= NREQ - got);
    }

    /* All handed out: nothing left to wait for, nothing returned twice. */
    CHECK_RET(blkioq_do_io(q, c, 1, 1, NULL), -EINVAL);
    CHECK_RET(blkioq_do_io(q, c, 0, NREQ, NULL), 0);

    /* min == max == in flight. */
    for (int i = 0; i < 3; i++)
        blkioq_read(q, 0, bufs[i], 512, NULL, 0);
    t = (struct timespec){ .tv_sec = 10 };
    CHECK_RET(blkioq_do_io(q, c, 3, 3, &t), 3);

    /* min 0 with requests in flight never blocks and returns what is
     * there; keep calling until everything arrived. */
    blkioq_read(q, 0, bufs[0], 512, NULL, 0);
    for (int tries = 0;; tries++) {
        n = blkioq_do_io(q, c, 0, 1, NULL);
        CHECK(n == 0 || n == 1);
        if (n == 1)
            break;
        if (tries > 100000)
            T_FAIL("read never completed with min_completions 0");
        usleep(10);
    }
    CHECK_RET(c[0].ret, 0);

    blkio_destroy(&b);
    return T_EXIT_PASS;
}
