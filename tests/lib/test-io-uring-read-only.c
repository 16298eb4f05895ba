/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: a read-only instance reads, refuses writes, write zeroes and
 * discard with -EBADF (and flush is allowed), and opens the file O_RDONLY
 * (so a file without write permission... is what the fd flags say).
 */
#include "util.h"

int main(void)
{
    const char *path = ut_temp_file(1u << 20);
    char wbuf[4096], rbuf[4096];
    struct blkio *b;
    struct blkioq *q;
    bool ro;
    int fd;

    t_fill_random(wbuf, sizeof(wbuf), 8);
    ut_pwrite_file(path, wbuf, sizeof(wbuf), 0);

    b = ut_start(path, false, true);
    q = blkio_get_queue(b, 0);
    ok(blkio_get_bool(b, "read-only", &ro));
    check(ro);
    ok(blkio_get_int(b, "fd", &fd));
    check(fd >= 0);
    check((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY);
    err(blkio_set_bool(b, "read-only", false), -EBUSY);

    blkioq_read(q, 0, rbuf, sizeof(rbuf), NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(memcmp(rbuf, wbuf, sizeof(rbuf)) == 0);

    blkioq_write(q, 0, wbuf, sizeof(wbuf), NULL, 0);
    check(ut_wait1(q, NULL) == -EBADF);
    {
        struct iovec iov = { wbuf, 512 };
        blkioq_writev(q, 0, &iov, 1, NULL, 0);
        check(ut_wait1(q, NULL) == -EBADF);
    }
    blkioq_write_zeroes(q, 0, 4096, NULL, 0);
    check(ut_wait1(q, NULL) == -EBADF);
    blkioq_discard(q, 0, 4096, NULL, 0);
    check(ut_wait1(q, NULL) == -EBADF);
    blkioq_flush(q, NULL, 0);
    check(ut_wait1(q, NULL) == 0);

    ut_pread_file(path, rbuf, sizeof(rbuf), 0);
    check(memcmp(rbuf, wbuf, sizeof(rbuf)) == 0);
    blkio_destroy(&b);
    return 0;
}
