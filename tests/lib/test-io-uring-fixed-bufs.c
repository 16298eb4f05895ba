/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: mapped memory regions as io_uring fixed buffers
 * (fixed-buffers=true; off by default, and may-pin-mem-regions says so),
 * and the fallback.  Every ring gets the region (queues added later included): a
 * request with one buffer inside a region is a READ_FIXED/WRITE_FIXED, one
 * that reaches past its end or has several buffers is not, unmapping takes
 * the buffer away and mapping again reuses the entry.  The same I/O then
 * runs with fixed buffers declined (LIBBLKIO_URING_DECLINE=2, the path a
 * kernel without sparse buffer tables takes), through the page cache and
 * O_DIRECT, and every read must return what was written.  White-box: the
 * rings' state is read through internal.h.
 */
#include <liburing.h>
#include <time.h>

#include "internal.h"
#include "drivers/uring-common.h"
#include "util.h"

#define RLEN (64 * 1024)
#define BS 4096

static uint64_t fixed_mask(struct blkioq *q)
{
    return atomic_load(&((struct uring_queue *)q->priv)->fixed_mask);
}

/* What this kernel offers, asked directly. */
static bool kernel_has_sparse_buffers(void)
{
    struct io_uring ring;
    bool yes;

    if (io_uring_queue_init(4, &ring, 0) < 0)
        return false;
    yes = io_uring_register_buffers_sparse(&ring, URING_FIXED_MAX) == 0;
    io_uring_queue_exit(&ring);
    return yes;
}

/* Write len bytes of pattern `seed` from wbuf at off, read them back into
 * rbuf; waiting with do_io(min 0) polls when `spin`. */
static void rw_check(struct blkioq *q, unsigned char *wbuf,
                     unsigned char *rbuf, uint64_t off, size_t len,
                     unsigned seed, bool spin)
{
    t_fill_pattern(wbuf, len, off, seed);
    memset(rbuf, 0xee, len);
    blkioq_write(q, off, wbuf, len, wbuf, 0);
    check(ut_wait1(q, wbuf) == 0);
    blkioq_read(q, off, rbuf, len, rbuf, 0);
    if (spin) {
        struct blkio_completion c;
        time_t end = time(NULL) + 10;
        int n = 0;

        while (n == 0 && time(NULL) < end)
            n = (int)ok(blkioq_do_io(q, &c, 0, 1, NULL));
        check(n == 1);
        check(c.ret == 0);
    } else {
        check(ut_wait1(q, rbuf) == 0);
    }
    check(memcmp(wbuf, rbuf, len) == 0);
}

/* Two buffers in one request: never fixed (READV_FIXED is too new). */
static void rwv_check(struct blkioq *q, unsigned char *buf, uint64_t off)
{
    struct iovec iov[2] = { { buf, BS }, { buf + 2 * BS, BS } };
    unsigned char *want = t_aligned_alloc(BS, 2 * BS);

    t_fill_pattern(want, 2 * BS, off, 77);
    memcpy(buf, want, BS);
    memcpy(buf + 2 * BS, want + BS, BS);
    blkioq_writev(q, off, iov, 2, iov, 0);
    check(ut_wait1(q, iov) == 0);
    memset(buf, 0, 3 * BS);
    blkioq_readv(q, off, iov, 2, iov, 0);
    check(ut_wait1(q, iov) == 0);
    check(memcmp(buf, want, BS) == 0);
    check(memcmp(buf + 2 * BS, want + BS, BS) == 0);
    free(want);
}

/* fixed-buffers is off by default, and may-pin-mem-regions follows it. */
static void set_fixed_buffers(struct blkio *b)
{
    bool v = true;

    ok(blkio_get_bool(b, "fixed-buffers", &v));
    check(!v);
    ok(blkio_get_bool(b, "may-pin-mem-regions", &v));
    check(!v);
    ok(blkio_set_bool(b, "fixed-buffers", true));
    ok(blkio_get_bool(b, "may-pin-mem-regions", &v));
    check(v);
}

static void run(const char *path, bool direct, bool fixed)
{
    struct blkio *b;
    struct blkioq *q, *added;
    struct uring_queue *uq;
    struct blkio_mem_region r1, r2, r3;
    /* Memory of our own: the first half mapped, so that a buffer can
     * reach past the region's end into memory that is still ours. */
    unsigned char *own = t_aligned_alloc(BS, 2 * RLEN);
    int idx;

    if (direct)
        b = ut_connect_direct(path);
    else {
        ok(blkio_create("io_uring", &b));
        ok(blkio_set_str(b, "path", path));
        ok(blkio_connect(b));
    }
    set_fixed_buffers(b);
    ok(blkio_set_int(b, "num-queues", 2));
    ok(blkio_start(b));
    err(blkio_set_bool(b, "fixed-buffers", false), -EBUSY);
    q = blkio_get_queue(b, 0);
    uq = q->priv;
    check(fixed_mask(q) == 0);

    ok(blkio_alloc_mem_region(b, &r1, RLEN));
    ok(blkio_alloc_mem_region(b, &r2, RLEN));
    ok(blkio_map_mem_region(b, &r1));
    check(fixed_mask(q) == (fixed ? 1u : 0u));
    check(fixed_mask(blkio_get_queue(b, 1)) == (fixed ? 1u : 0u));
    check(uring_fixed_index(uq, r1.addr, RLEN) == (fixed ? 0 : -1));
    check(uring_fixed_index(uq, (char *)r1.addr + BS, RLEN - BS) ==
          (fixed ? 0 : -1));
    check(uring_fixed_index(uq, (char *)r1.addr + BS, RLEN) == -1);
    check(uring_fixed_index(uq, (char *)r1.addr + RLEN, BS) == -1);
    check(uring_fixed_index(uq, own, BS) == -1);

    /* Inside the region, from it to memory outside, and back. */
    rw_check(q, r1.addr, (unsigned char *)r1.addr + 4 * BS, 0, 2 * BS, 1,
             false);
    rw_check(q, r1.addr, own, 8 * BS, BS, 2, true);
    rw_check(q, own, r1.addr, 16 * BS, 4 * BS, 3, true);
    rwv_check(q, r1.addr, 32 * BS);

    /* Own memory mapped: a buffer reaching past the region's end is not
     * fixed and still right. */
    r3 = (struct blkio_mem_region){ .addr = own, .len = RLEN, .fd = -1 };
    ok(blkio_map_mem_region(b, &r3));
    check(fixed_mask(q) == (fixed ? 3u : 0u));
    check(uring_fixed_index(uq, own + RLEN - BS, 2 * BS) == -1);
    rw_check(q, r2.addr, own + RLEN - BS, 40 * BS, 2 * BS, 4, false);
    rw_check(blkio_get_queue(b, 1), own + BS, r2.addr, 48 * BS, 2 * BS, 5,
             false);

    /* Unmapped: the buffer is gone from every ring, the memory (still
     * allocated) works as any other. */
    blkio_unmap_mem_region(b, &r1);
    check(fixed_mask(q) == (fixed ? 2u : 0u));
    check(uring_fixed_index(uq, r1.addr, BS) == -1);
    rw_check(q, r1.addr, (unsigned char *)r1.addr + 8 * BS, 56 * BS, BS, 6,
             false);

    /* Mapped again (another region): the free entry is reused. */
    ok(blkio_map_mem_region(b, &r2));
    check(fixed_mask(q) == (fixed ? 3u : 0u));
    check(uring_fixed_index(uq, r2.addr, BS) == (fixed ? 0 : -1));
    rw_check(q, r2.addr, own, 64 * BS, 2 * BS, 7, false);

    /* A queue added later gets what is mapped. */
    idx = (int)ok(blkio_add_queue(b));
    added = blkio_get_queue(b, idx);
    check(added != NULL);
    check(fixed_mask(added) == (fixed ? 3u : 0u));
    rw_check(added, own, r2.addr, 72 * BS, BS, 8, true);

    blkio_unmap_mem_region(b, &r2);
    blkio_unmap_mem_region(b, &r3);
    check(fixed_mask(q) == 0);
    check(fixed_mask(added) == 0);
    blkio_free_mem_region(b, &r1);
    blkio_free_mem_region(b, &r2);
    /* Left mapped at destroy: the library unmaps it. */
    ok(blkio_map_mem_region(b, &r3));
    blkio_destroy(&b);
    free(own);
}

/* Without fixed-buffers, a mapped region stays a plain buffer. */
static void run_default(const char *path)
{
    struct blkio *b = ut_start(path, false, false);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_mem_region r;
    bool pin = true;

    ok(blkio_get_bool(b, "may-pin-mem-regions", &pin));
    check(!pin);
    ok(blkio_alloc_mem_region(b, &r, RLEN));
    ok(blkio_map_mem_region(b, &r));
    check(fixed_mask(q) == 0);
    rw_check(q, r.addr, (unsigned char *)r.addr + 4 * BS, 0, 2 * BS, 9,
             false);
    blkio_destroy(&b);
}

int main(void)
{
    const char *path = ut_temp_file(1024 * 1024);
    bool fixed = kernel_has_sparse_buffers();
    const char *declined = getenv("LIBBLKIO_URING_DECLINE");

    if (declined && *declined)
        t_skip("LIBBLKIO_URING_DECLINE is set (%s) in the environment",
               declined);
    printf("kernel: sparse fixed buffers %s\n", fixed ? "yes" : "no");

    run_default(path);
    run(path, false, fixed);
    run(path, true, fixed);

    /* The fallback: what a kernel without sparse buffer tables runs. */
    setenv("LIBBLKIO_URING_DECLINE", "2", 1);
    run(path, false, false);
    run(path, true, false);
    return 0;
}
