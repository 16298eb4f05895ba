/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the file shrinks after connect.  A read that crosses the new
 * end of file returns the data before it and zeroes after it; a read wholly
 * past it returns zeroes; the completion is a success either way, never a
 * silent short transfer with stale buffer contents.  Writes past the new
 * end succeed and extend the file.
 */
#include "util.h"

#define SIZE (1u << 20)

int main(void)
{
    const char *path = ut_temp_file(SIZE);
    static unsigned char pattern[SIZE], buf[SIZE];
    struct blkio *b;
    struct blkioq *q;
    struct iovec iov[3];

    t_fill_random(pattern, SIZE, 21);
    ut_pwrite_file(path, pattern, SIZE, 0);
    b = ut_start(path, false, false);
    q = blkio_get_queue(b, 0);
    check(truncate(path, 10000) == 0);

    memset(buf, 0xff, SIZE);
    blkioq_read(q, 8192, buf, 8192, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(memcmp(buf, pattern + 8192, 10000 - 8192) == 0);
    check(t_is_zero(buf + 10000 - 8192, 8192 - (10000 - 8192)));

    /* Vectored, crossing EOF in the middle of the second element. */
    memset(buf, 0xff, SIZE);
    iov[0] = (struct iovec){ buf, 3000 };
    iov[1] = (struct iovec){ buf + 3000, 5000 };
    iov[2] = (struct iovec){ buf + 8000, 4000 };
    blkioq_readv(q, 5000, iov, 3, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(memcmp(buf, pattern + 5000, 5000) == 0);
    check(t_is_zero(buf + 5000, 12000 - 5000));
    check(buf[12000] == 0xff);

    memset(buf, 0xff, SIZE);
    blkioq_read(q, SIZE / 2, buf, 4096, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(t_is_zero(buf, 4096));

    blkioq_write(q, SIZE - 4096, pattern, 4096, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    {
        struct stat st;
        check(stat(path, &st) == 0 && st.st_size == SIZE);
    }
    blkio_destroy(&b);
    return 0;
}
