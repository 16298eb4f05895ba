/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: a regular file can grow, as with libblkio 1.5: can-grow is
 * true, a write past the end (buffered, lone and batched on the ring, and
 * O_DIRECT) extends the file and the capacity property follows its size,
 * also when the file grows or shrinks under the instance;
 * write zeroes without unmapping past the end extends it too; a read past
 * the end (or across it) succeeds and reads zeroes; a read-only file can
 * grow too (its writes fail as always).
 */
#include <sys/stat.h>

#include "util.h"

static uint64_t file_size(const char *path)
{
    struct stat st;

    check(stat(path, &st) == 0);
    return (uint64_t)st.st_size;
}

static uint64_t capacity(struct blkio *b)
{
    uint64_t cap;

    ok(blkio_get_uint64(b, "capacity", &cap));
    return cap;
}

static void buffered(void)
{
    const char *path = ut_temp_file(0);
    struct blkio *b = ut_start(path, false, false);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_completion c[4];
    unsigned char buf[8192], rbuf[8192];
    bool grow;

    ok(blkio_get_bool(b, "can-grow", &grow));
    check(grow);
    check(capacity(b) == 0);

    /* A lone write past the end (run in the caller). */
    memset(buf, 0x5a, sizeof(buf));
    blkioq_write(q, 4096, buf, 100, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(file_size(path) == 4196);
    check(capacity(b) == 4196);

    /* A batch on the ring; the largest end wins. */
    blkioq_write(q, 20000, buf, 8192, NULL, 0);
    blkioq_write(q, 10000, buf, 10, NULL, 0);
    check(ok(blkioq_do_io(q, c, 2, 2, NULL)) == 2);
    check(c[0].ret == 0 && c[1].ret == 0);
    check(file_size(path) == 28192);
    check(capacity(b) == 28192);

    /* Write zeroes that keeps the blocks allocated extends the file. */
    blkioq_write_zeroes(q, 40000, 5000, NULL, BLKIO_REQ_NO_UNMAP);
    check(ut_wait1(q, NULL) == 0);
    check(file_size(path) == 45000);
    check(capacity(b) == 45000);

    /* Reads across and past the end: zeroes after the end. */
    memset(rbuf, 0xee, sizeof(rbuf));
    blkioq_read(q, 44000, rbuf, 2000, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(t_is_zero(rbuf, 2000));
    memset(rbuf, 0xee, sizeof(rbuf));
    blkioq_read(q, 1u << 20, rbuf, sizeof(rbuf), NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(t_is_zero(rbuf, sizeof(rbuf)));
    memset(rbuf, 0, sizeof(rbuf));
    blkioq_read(q, 4096, rbuf, 100, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(memcmp(rbuf, buf, 100) == 0);
    check(file_size(path) == 45000);

    /* The file changed under the instance: capacity is its size now. */
    check(truncate(path, 1u << 20) == 0);
    check(capacity(b) == 1u << 20);
    check(truncate(path, 12345) == 0);
    check(capacity(b) == 12345);
    blkio_destroy(&b);

    b = ut_start(path, false, true);
    ok(blkio_get_bool(b, "can-grow", &grow));
    check(grow);
    blkio_destroy(&b);
}

static void direct(void)
{
    const char *path = ut_temp_file(0);
    struct blkio *b = ut_connect_direct(path);
    struct blkioq *q;
    unsigned char *buf = t_aligned_alloc(4096, 8192);
    int ra;

    ok(blkio_start(b));
    q = blkio_get_queue(b, 0);
    ok(blkio_get_int(b, "request-alignment", &ra));
    check(ra > 0 && 8192 % ra == 0);
    memset(buf, 0x77, 8192);
    blkioq_write(q, 65536, buf, 8192, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(file_size(path) == 65536 + 8192);
    check(capacity(b) == 65536 + 8192);
    free(buf);
    blkio_destroy(&b);
}

int main(void)
{
    buffered();
    direct();
    return 0;
}
