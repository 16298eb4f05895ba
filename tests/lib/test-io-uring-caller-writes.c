/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: a buffered write or flush that is the only request of an
 * idle queue runs in the thread that waits for it (io_uring would hand it
 * to a worker thread).  Checks, by the process's write system call count
 * (/proc/self/io syscw, which io_uring's writes do not count in), that:
 * - a lone write whose caller waits (do_io with min 1, no timeout) is one
 *   pwritev2 in the caller, FUA included, vectored included, and lands in
 *   the file;
 * - a write submitted with min 0, one waited for with a timeout, and
 *   writes queued together all go through the ring;
 * - a lone flush completes either way; O_DIRECT writes always use the
 *   ring;
 * and that the file holds every write afterwards.
 */
#include "util.h"

#define SIZE (1u << 20)
#define BS   4096

int main(void)
{
    const char *path = ut_temp_file(SIZE);
    static unsigned char expect[SIZE], buf[SIZE], *dbuf;
    struct timespec timeout = { .tv_sec = 30 };
    struct blkio_completion c[4];
    struct blkio *b;
    struct blkioq *q;
    uint64_t before;

    t_fill_random(expect, SIZE, 5);
    b = ut_start(path, false, false);
    q = blkio_get_queue(b, 0);

    /* Waited for: runs in the caller. */
    before = ut_proc_io("syscw");
    blkioq_write(q, 0, expect, BS, expect, 0);
    check(ut_wait1(q, expect) == 0);
    ut_check_calls("syscw", before, 1);

    before = ut_proc_io("syscw");
    blkioq_write(q, BS, expect + BS, BS, NULL, BLKIO_REQ_FUA);
    check(ut_wait1(q, NULL) == 0);
    ut_check_calls("syscw", before, 1);

    {
        struct iovec iov[3] = {
            { expect + 2 * BS, 100 }, { expect + 2 * BS + 100, 3000 },
            { expect + 2 * BS + 3100, 5092 },
        };

        before = ut_proc_io("syscw");
        blkioq_writev(q, 2 * BS, iov, 3, NULL, 0);
        check(ut_wait1(q, NULL) == 0);
        ut_check_calls("syscw", before, 1);
    }

    /* Submitted without waiting: the ring, so that do_io returns at once. */
    before = ut_proc_io("syscw");
    blkioq_write(q, 4 * BS, expect + 4 * BS, BS, NULL, 0);
    if (ok(blkioq_do_io(q, c, 0, 1, NULL)) == 1)
        check(c[0].ret == 0);
    else
        check(ut_wait1(q, NULL) == 0);
    ut_check_calls("syscw", before, 0);

    /* Waited for with a deadline: the ring, which honours it. */
    before = ut_proc_io("syscw");
    blkioq_write(q, 5 * BS, expect + 5 * BS, BS, NULL, 0);
    check(ok(blkioq_do_io(q, c, 1, 1, &timeout)) == 1 && c[0].ret == 0);
    ut_check_calls("syscw", before, 0);

    /* A batch: the ring, in one submission. */
    before = ut_proc_io("syscw");
    for (int i = 0; i < 4; i++)
        blkioq_write(q, (uint64_t)(8 + i) * BS, expect + (8 + i) * BS, BS,
                     NULL, 0);
    for (int got = 0; got < 4;) {
        int n = (int)ok(blkioq_do_io(q, c, 1, 4, NULL));

        for (int i = 0; i < n; i++)
            check(c[i].ret == 0);
        got += n;
    }
    ut_check_calls("syscw", before, 0);

    /* A lone flush, in the caller and through the ring; then the rest of
     * the file in 64 KiB writes. */
    blkioq_flush(q, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    blkioq_flush(q, NULL, 0);
    check(ok(blkioq_do_io(q, c, 1, 1, &timeout)) == 1 && c[0].ret == 0);
    for (uint64_t off = 12 * BS; off < SIZE; off += 16 * BS) {
        size_t len = SIZE - off < 16 * BS ? SIZE - off : 16 * BS;

        blkioq_write(q, off, expect + off, len, NULL, 0);
        check(ut_wait1(q, NULL) == 0);
    }
    /* Pieces 6 and 7 were never written: the file has zeroes there. */
    memset(expect + 6 * BS, 0, 2 * BS);
    blkio_destroy(&b);
    ut_pread_file(path, buf, SIZE, 0);
    check(memcmp(buf, expect, SIZE) == 0);

    /* O_DIRECT: always the ring. */
    b = ut_connect_direct(path);
    ok(blkio_start(b));
    q = blkio_get_queue(b, 0);
    dbuf = t_aligned_alloc(BS, BS);
    memset(dbuf, 0x5a, BS);
    before = ut_proc_io("syscw");
    blkioq_write(q, 6 * BS, dbuf, BS, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    ut_check_calls("syscw", before, 0);
    blkio_destroy(&b);
    ut_pread_file(path, buf, BS, 6 * BS);
    check(memcmp(buf, dbuf, BS) == 0);
    free(dbuf);
    return 0;
}
