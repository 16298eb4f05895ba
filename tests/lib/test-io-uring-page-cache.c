/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the io_uring driver's page-cache path.  A buffered read
 * that do_io would submit alone is first tried with preadv2(RWF_NOWAIT);
 * what is not in the page cache goes through the ring.  Checks that:
 * - a lone cached read is copied by a read system call (the process's
 *   syscr count grows: io_uring's own reads do not count there), and its
 *   data is right;
 * - reads queued together go through the ring as one batch (syscr stays);
 * - a read of pages evicted from the cache, and one that is half cached,
 *   return the file's data all the same;
 * - O_DIRECT reads never take the page-cache path;
 * - a read completed this way still makes the completion fd readable
 *   when do_io did not hand it out.
 */
#include <poll.h>

#include "util.h"

#define SIZE (4u << 20)
#define BS   4096

/* Drop the file's clean pages from the page cache. */
static void evict(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    check(fd >= 0);
    check(fdatasync(fd) == 0);
    check(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
    close(fd);
}

int main(void)
{
    const char *path = ut_temp_file(SIZE);
    static unsigned char pattern[SIZE], buf[SIZE], *dbuf;
    struct blkio *b;
    struct blkioq *q;
    uint64_t before;

    t_fill_random(pattern, SIZE, 77);
    ut_pwrite_file(path, pattern, SIZE, 0);
    ut_pread_file(path, buf, SIZE, 0);  /* all of it in the page cache */
    b = ut_start(path, false, false);
    q = blkio_get_queue(b, 0);

    /* A lone cached read: one read system call, right data. */
    before = ut_proc_io("syscr");
    blkioq_read(q, 3 * BS, buf, BS, buf, 0);
    check(ut_wait1(q, buf) == 0);
    ut_check_calls("syscr", before, 1);
    check(memcmp(buf, pattern + 3 * BS, BS) == 0);

    /* Vectored too. */
    {
        struct iovec iov[2] = { { buf, 1000 }, { buf + 5000, 3096 } };

        memset(buf, 0, SIZE);
        before = ut_proc_io("syscr");
        blkioq_readv(q, 7 * BS, iov, 2, NULL, 0);
        check(ut_wait1(q, NULL) == 0);
        ut_check_calls("syscr", before, 1);
        check(memcmp(buf, pattern + 7 * BS, 1000) == 0);
        check(memcmp(buf + 5000, pattern + 7 * BS + 1000, 3096) == 0);
    }

    /* A batch goes to the ring whole: no read system call. */
    {
        struct blkio_completion c[4];
        int got = 0;

        memset(buf, 0, SIZE);
        before = ut_proc_io("syscr");
        for (int i = 0; i < 4; i++)
            blkioq_read(q, (uint64_t)i * 64 * BS, buf + i * BS, BS, NULL, 0);
        while (got < 4) {
            int n = (int)ok(blkioq_do_io(q, c, 1, 4, NULL));

            for (int i = 0; i < n; i++)
                check(c[i].ret == 0);
            got += n;
        }
        ut_check_calls("syscr", before, 0);
        for (int i = 0; i < 4; i++)
            check(memcmp(buf + i * BS, pattern + (size_t)i * 64 * BS, BS) ==
                  0);
    }

    /* Not cached: the ring reads it from the disk. */
    evict(path);
    memset(buf, 0, SIZE);
    blkioq_read(q, SIZE / 2, buf, 64 * BS, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(memcmp(buf, pattern + SIZE / 2, 64 * BS) == 0);

    /* Half cached: the cached half is copied, the rest comes from the
     * ring.  Read the whole file afterwards, in pieces, in whatever state
     * of the cache each piece finds. */
    evict(path);
    ut_pread_file(path, buf, 32 * BS, SIZE / 4);
    memset(buf, 0, SIZE);
    blkioq_read(q, SIZE / 4, buf, 64 * BS, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(memcmp(buf, pattern + SIZE / 4, 64 * BS) == 0);
    evict(path);
    memset(buf, 0, SIZE);
    for (uint64_t off = 0; off < SIZE; off += 16 * BS) {
        blkioq_read(q, off, buf + off, 16 * BS, NULL, 0);
        check(ut_wait1(q, NULL) == 0);
    }
    check(memcmp(buf, pattern, SIZE) == 0);

    /* The completion fd: a read finished inside do_io and not handed out
     * makes the fd readable (do_io must be called again). */
    {
        int cfd = blkioq_get_completion_fd(q);
        struct pollfd pfd = { .fd = cfd, .events = POLLIN };
        uint64_t cnt;

        blkioq_set_completion_fd_enabled(q, true);
        while (read(cfd, &cnt, sizeof(cnt)) == sizeof(cnt))
            ;
        before = ut_proc_io("syscr");
        blkioq_read(q, 0, buf, BS, buf, 0);
        check(ok(blkioq_do_io(q, NULL, 0, 0, NULL)) == 0);
        check(poll(&pfd, 1, 10000) == 1);
        check(ut_wait1(q, buf) == 0);
        check(memcmp(buf, pattern, BS) == 0);
        ut_check_calls("syscr", before, 1);
    }
    blkio_destroy(&b);

    /* O_DIRECT: always the ring. */
    b = ut_connect_direct(path);
    ok(blkio_start(b));
    q = blkio_get_queue(b, 0);
    dbuf = t_aligned_alloc(BS, BS);
    before = ut_proc_io("syscr");
    blkioq_read(q, BS, dbuf, BS, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    ut_check_calls("syscr", before, 0);
    check(memcmp(dbuf, pattern + BS, BS) == 0);
    free(dbuf);
    blkio_destroy(&b);
    return 0;
}
