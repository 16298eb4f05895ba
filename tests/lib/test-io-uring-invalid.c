/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: requests that cannot be done complete with a negative errno
 * and a message, and never reach the file: misaligned start, length and
 * buffer with direct=true (request-alignment > 1), a range past the
 * largest offset, empty write zeroes and discard, unsupported flags, more
 * iovecs than max-segments (the message names it), and zone requests.
 */
#include "util.h"

#define SIZE (1u << 20)

static void expect(struct blkioq *q, int want)
{
    struct blkio_completion c;

    check(ok(blkioq_do_io(q, &c, 1, 1, NULL)) == 1);
    if (c.ret != want)
        T_FAIL("ret %d (%s), expected %d", c.ret, strerror(-c.ret), want);
    check(want == 0 || (c.error_msg && c.error_msg[0]));
}

int main(void)
{
    const char *path = ut_temp_file(SIZE);
    unsigned char *buf, *fbuf = calloc(1, SIZE);
    struct blkio *b;
    struct blkioq *q;
    int ra, ba;

    /* Buffered: any alignment; a regular file can grow (can-grow), so
     * only a range past the largest offset fails. */
    b = ut_start(path, false, false);
    q = blkio_get_queue(b, 0);
    buf = t_aligned_alloc(4096, 3 * 4096);
    memset(buf, 0xee, 3 * 4096);
    blkioq_read(q, UINT64_MAX - 10, buf, 20, NULL, 0);
    expect(q, -EINVAL);
    /* Empty write zeroes and discard: -EINVAL, as from libblkio 1.5 */
    blkioq_write_zeroes(q, 4096, 0, NULL, 0);
    expect(q, -EINVAL);
    blkioq_discard(q, 4096, 0, NULL, 0);
    expect(q, -EINVAL);
    blkioq_read(q, SIZE - 1, buf, 1, NULL, 0);
    expect(q, 0);
    blkioq_write(q, 0, buf, 1, NULL, BLKIO_REQ_NO_UNMAP);
    expect(q, -EINVAL);
    blkioq_reset_zone(q, 0, NULL, 0);
    expect(q, -ENOTSUP);
    /* More iovecs than max-segments: -EINVAL, naming the limit. */
    {
        struct iovec *iov = calloc(1025, sizeof(*iov));
        struct blkio_completion c;
        int ms;

        check(iov != NULL);
        ok(blkio_get_int(b, "max-segments", &ms));
        check(ms == 1024);
        for (int i = 0; i < 1025; i++)
            iov[i] = (struct iovec){ buf, 1 };
        blkioq_writev(q, 0, iov, 1025, NULL, 0);
        check(ok(blkioq_do_io(q, &c, 1, 1, NULL)) == 1);
        check(c.ret == -EINVAL);
        check(c.error_msg && strstr(c.error_msg, "max-segments"));
        free(iov);
    }
    blkio_destroy(&b);

    b = ut_connect_direct(path);
    ok(blkio_start(b));
    ok(blkio_get_int(b, "request-alignment", &ra));
    ok(blkio_get_int(b, "buf-alignment", &ba));
    check(ra > 1);
    check(ba >= 1);
    q = blkio_get_queue(b, 0);

    blkioq_write(q, 1, buf, (size_t)ra, NULL, 0);         /* start */
    expect(q, -EINVAL);
    blkioq_write(q, 0, buf, (size_t)ra + 1, NULL, 0);     /* length */
    expect(q, -EINVAL);
    blkioq_write_zeroes(q, (uint64_t)ra / 2, (uint64_t)ra, NULL, 0);
    expect(q, -EINVAL);
    if (ba > 1) {
        blkioq_write(q, 0, buf + 1, (size_t)ra, NULL, 0); /* buffer */
        expect(q, -EINVAL);
    }
    /* Nothing of the above reached the file. */
    ut_pread_file(path, fbuf, SIZE, 0);
    check(t_is_zero(fbuf, SIZE));

    /* Aligned is fine. */
    memset(buf, 0xee, 3 * 4096);
    blkioq_write(q, (uint64_t)ra, buf, (size_t)ra, NULL, 0);
    expect(q, 0);
    ut_pread_file(path, fbuf, SIZE, 0);
    check(fbuf[ra] == 0xee && fbuf[ra - 1] == 0);
    free(buf);
    free(fbuf);
    blkio_destroy(&b);
    return 0;
}
