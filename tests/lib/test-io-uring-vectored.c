/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: readv/writev with many segments of odd sizes, a request
 * with the maximum of 1024 segments, and one over max-segments failing with
 * -EINVAL.
 */
#include "util.h"

#define NSEG 1024

int main(void)
{
    const char *path = ut_temp_file(4u << 20);
    size_t total = 0;
    struct iovec wiov[NSEG], riov[NSEG + 1];
    unsigned char *wbuf, *rbuf, *fbuf;
    struct blkio_completion c;
    struct blkio *b = ut_start(path, false, false);
    struct blkioq *q = blkio_get_queue(b, 0);
    int max_segments;
    uint64_t s = 99;

    ok(blkio_get_int(b, "max-segments", &max_segments));
    check(max_segments == NSEG);

    for (int i = 0; i < NSEG; i++)
        total += 1 + t_rand(&s) % 3000;
    wbuf = malloc(total);
    rbuf = calloc(1, total + 1);
    fbuf = malloc(total);
    check(wbuf && rbuf && fbuf);
    t_fill_random(wbuf, total, 5);

    /* Odd segment lengths, and the read side split differently. */
    s = 99;
    for (size_t i = 0, off = 0; i < NSEG; i++) {
        size_t len = 1 + t_rand(&s) % 3000;

        wiov[i].iov_base = wbuf + off;
        wiov[i].iov_len = len;
        off += len;
    }
    for (size_t i = 0; i < NSEG; i++) {
        size_t a = total * i / NSEG, e = total * (i + 1) / NSEG;

        riov[i].iov_base = rbuf + a;
        riov[i].iov_len = e - a;
    }

    blkioq_writev(q, 12345, wiov, NSEG, wiov, 0);
    check(ut_wait1(q, wiov) == 0);
    blkioq_readv(q, 12345, riov, NSEG, riov, 0);
    check(ut_wait1(q, riov) == 0);
    check(memcmp(wbuf, rbuf, total) == 0);
    ut_pread_file(path, fbuf, total, 12345);
    check(memcmp(wbuf, fbuf, total) == 0);

    /* A few segments, some empty. */
    {
        char a[10] = "abcdefghij", bb[1], cc[7] = "klmnopq";
        char ra[10], rb[7];
        struct iovec w[3] = { { a, 10 }, { bb, 0 }, { cc, 7 } };
        struct iovec r[2] = { { ra, 10 }, { rb, 7 } };

        blkioq_writev(q, 1, w, 3, NULL, 0);
        check(ut_wait1(q, NULL) == 0);
        blkioq_readv(q, 1, r, 2, NULL, 0);
        check(ut_wait1(q, NULL) == 0);
        check(memcmp(ra, a, 10) == 0 && memcmp(rb, cc, 7) == 0);
    }

    /* One segment more than max-segments. */
    riov[NSEG].iov_base = rbuf + total;
    riov[NSEG].iov_len = 1;
    blkioq_readv(q, 0, riov, NSEG + 1, NULL, 0);
    check(ok(blkioq_do_io(q, &c, 1, 1, NULL)) == 1);
    check(c.ret == -EINVAL);
    check(c.error_msg != NULL);

    blkio_destroy(&b);
    free(wbuf);
    free(rbuf);
    free(fbuf);
    return 0;
}
