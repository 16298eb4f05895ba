/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: write zeroes with every combination of NO_UNMAP and
 * NO_FALLBACK, and discard, on a disk file: zeroes read back, the
 * neighbours are untouched, and allocation follows the flags (deallocated
 * without NO_UNMAP and for discard, kept with NO_UNMAP).  On a tmpfs file
 * (no FALLOC_FL_ZERO_RANGE) NO_UNMAP|NO_FALLBACK fails with -ENOTSUP and
 * NO_UNMAP alone falls back to writing zeroes.  Every case runs twice:
 * waited for without a deadline (the driver makes the steps' system calls
 * in the caller) and with one (the steps go through the ring).
 */
#include <sys/statfs.h>
#include <linux/magic.h>

#include "util.h"

#define SIZE (8u << 20)

static unsigned char pattern[SIZE], rbuf[SIZE];
static bool via_ring;           /* wait with a deadline: the ring runs it */

static uint64_t blocks_of(const char *path)
{
    struct stat st;

    check(stat(path, &st) == 0);
    return (uint64_t)st.st_blocks;
}

/* Fill the whole file with the pattern (allocating it), zero or discard
 * [off, off+len) and check the contents. */
static void run(struct blkioq *q, const char *path, bool discard,
                uint32_t flags, uint64_t off, uint64_t len, int expect_ret,
                int *alloc_change)
{
    uint64_t before, after;
    int ret;

    ut_pwrite_file(path, pattern, SIZE, 0);
    before = blocks_of(path);
    if (discard)
        blkioq_discard(q, off, len, q, flags);
    else
        blkioq_write_zeroes(q, off, len, q, flags);
    if (via_ring) {
        struct blkio_completion c = t_wait_one(q, 30);

        check(c.user_data == q);
        ret = c.ret;
    } else {
        ret = ut_wait1(q, q);
    }
    if (ret != expect_ret)
        T_FAIL("%s flags %#x at %" PRIu64 "+%" PRIu64 "%s: ret %d (%s), "
               "expected %d", discard ? "discard" : "write zeroes", flags,
               off, len, via_ring ? " (ring)" : "", ret, strerror(-ret),
               expect_ret);
    after = blocks_of(path);
    *alloc_change = after < before ? -1 : after > before ? 1 : 0;

    ut_pread_file(path, rbuf, SIZE, 0);
    check(memcmp(rbuf, pattern, off) == 0);
    check(memcmp(rbuf + off + len, pattern + off + len,
                 SIZE - off - len) == 0);
    if (ret == 0)
        check(t_is_zero(rbuf + off, len));
    else
        check(memcmp(rbuf + off, pattern + off, len) == 0);
}

static void disk_file(const char *path)
{
    struct blkio *b;
    struct blkioq *q;
    int change;

    b = ut_start(path, false, false);
    q = blkio_get_queue(b, 0);

    /* Block-aligned ranges, so that deallocation can be seen. */
    run(q, path, false, 0, 1u << 20, 2u << 20, 0, &change);
    check(change < 0);
    run(q, path, false, BLKIO_REQ_NO_UNMAP, 1u << 20, 2u << 20, 0, &change);
    check(change == 0);
    run(q, path, false, BLKIO_REQ_NO_FALLBACK, 1u << 20, 2u << 20, 0,
        &change);
    check(change < 0);
    run(q, path, false, BLKIO_REQ_NO_UNMAP | BLKIO_REQ_NO_FALLBACK,
        1u << 20, 2u << 20, 0, &change);
    check(change == 0);
    run(q, path, true, 0, 1u << 20, 2u << 20, 0, &change);
    check(change < 0);

    /* Unaligned ranges still read back as zeroes. */
    run(q, path, false, 0, 4097, 10000, 0, &change);
    run(q, path, false, BLKIO_REQ_NO_UNMAP, 3, 5, 0, &change);
    run(q, path, false, BLKIO_REQ_FUA | BLKIO_REQ_NO_UNMAP, 100, 70000, 0,
        &change);
    /* Zero length: -EINVAL, as from libblkio 1.5 (fallocate's answer). */
    run(q, path, false, 0, 0, 0, -EINVAL, &change);
    run(q, path, true, 0, 0, 0, -EINVAL, &change);
    /* Discard takes no flags. */
    run(q, path, true, BLKIO_REQ_NO_UNMAP, 0, 4096, -EINVAL, &change);
    blkio_destroy(&b);
}

/* tmpfs: punch hole only. */
static void tmpfs_file(const char *path)
{
    struct blkio *b;
    struct blkioq *q;
    int change;

    b = ut_start(path, false, false);
    q = blkio_get_queue(b, 0);
    {
        /* Does this tmpfs zero ranges natively (future kernels may)? */
        int fd = open(path, O_RDWR);
        bool zr;

        check(fd >= 0);
        zr = fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, 4096) == 0;
        close(fd);
        run(q, path, false, BLKIO_REQ_NO_UNMAP | BLKIO_REQ_NO_FALLBACK,
            4096, 8192, zr ? 0 : -ENOTSUP, &change);
        if (zr)
            printf("note: tmpfs has ZERO_RANGE: fallback not exercised\n");
    }
    /* Fallback writes: several zero chunks plus a partial tail. */
    run(q, path, false, BLKIO_REQ_NO_UNMAP, 7, (3u << 20) + 4100, 0,
        &change);
    run(q, path, false, BLKIO_REQ_NO_UNMAP | BLKIO_REQ_FUA, 0, SIZE, 0,
        &change);
    run(q, path, false, 0, 1u << 20, 1u << 20, 0, &change);
    run(q, path, true, 0, 1u << 20, 1u << 20, 0, &change);
    blkio_destroy(&b);
}

int main(void)
{
    struct statfs sfs;
    bool shm = statfs("/dev/shm", &sfs) == 0 && sfs.f_type == TMPFS_MAGIC;

    t_fill_random(pattern, SIZE, 11);
    if (!shm)
        printf("note: /dev/shm is not a tmpfs, fallback path not tested\n");
    /* New files for each pass: how much metadata a range's extents need
     * (and so st_blocks) depends on the file's history. */
    for (int pass = 0; pass < 2; pass++) {
        via_ring = pass == 1;
        disk_file(ut_temp_file(SIZE));
        if (shm)
            tmpfs_file(ut_temp_file_in("/dev/shm", SIZE));
    }
    return 0;
}
