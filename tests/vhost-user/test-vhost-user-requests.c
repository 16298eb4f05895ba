/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: every request type against a vhost-user-blk export: read,
 * write (FUA too), flush, write zeroes (unmap, no-unmap, no-fallback),
 * discard, vectored I/O beyond seg_max (300 odd-sized segments), transfers
 * and zeroes/discards larger than the device limits, more requests than
 * the queue has room for, and the core's argument errors.  Run it with
 * LIBBLKIO_VIRTIO_DECLINE_FEATURES set to cover the paths without
 * indirect descriptors, event index or device write zeroes.
 */
#include <sys/uio.h>

#include "vu-util.h"

#define MIB (1u << 20)
#define BIG (20u * MIB)         /* > max-write-zeroes-len, > 16 MiB */

static struct blkio *b;
static struct blkioq *q;
static uint8_t *buf, *chk;      /* BIG bytes each, mapped */

static void do_write(uint64_t off, const void *p, size_t len, uint32_t fl)
{
    blkioq_write(q, off, p, len, NULL, fl);
    CHECK_RET(vu_wait_one(q), 0);
}

static void do_read(uint64_t off, void *p, size_t len)
{
    blkioq_read(q, off, p, len, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
}

static void expect_zero(const uint8_t *p, size_t len, const char *what)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            T_FAIL_MSG("%s: byte %zu is 0x%02x, expected 0", what, i, p[i]);
}

static void expect_same(const uint8_t *a, const uint8_t *c, size_t len,
                        const char *what)
{
    for (size_t i = 0; i < len; i++)
        if (a[i] != c[i])
            T_FAIL_MSG("%s: byte %zu is 0x%02x, expected 0x%02x", what, i,
                       c[i], a[i]);
}

int main(void)
{
    struct blkio_mem_region r1, r2;
    uint64_t wz_max = 0, disc_max = 0, cap = 0;
    bool has_wz;
    struct iovec iov[300];
    size_t total;
    static uint8_t unmapped[4096];

    b = vu_connect(false);
    CHECK_RET(blkio_get_uint64(b, "max-write-zeroes-len", &wz_max), 0);
    CHECK_RET(blkio_get_uint64(b, "max-discard-len", &disc_max), 0);
    CHECK_RET(blkio_get_uint64(b, "capacity", &cap), 0);
    CHECK(cap >= 2 * BIG + 8 * MIB);
    has_wz = wz_max > 0;
    /* A small ring so that bursts overflow into the pending FIFO. */
    CHECK_RET(blkio_set_int(b, "queue-size", 16), 0);
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_queue(b, 0);
    CHECK(q);
    buf = t_region(b, BIG, &r1);
    chk = t_region(b, BIG, &r2);

    /* Plain, FUA, flush. */
    t_fill_random(buf, MIB, 1);
    do_write(0, buf, MIB, 0);
    do_write(MIB, buf, MIB, BLKIO_REQ_FUA);
    blkioq_flush(q, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    do_read(0, chk, 2 * MIB);
    expect_same(buf, chk, MIB, "plain write");
    expect_same(buf, chk + MIB, MIB, "FUA write");

    /* Write zeroes in all flavours. */
    blkioq_write_zeroes(q, 64 * 1024, 64 * 1024, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    blkioq_write_zeroes(q, 256 * 1024, 4096, NULL, BLKIO_REQ_NO_UNMAP);
    CHECK_RET(vu_wait_one(q), 0);
    blkioq_write_zeroes(q, 512 * 1024, 8192, NULL, BLKIO_REQ_FUA);
    CHECK_RET(vu_wait_one(q), 0);
    blkioq_write_zeroes(q, 768 * 1024, 4096, NULL, BLKIO_REQ_NO_FALLBACK);
    CHECK_RET(vu_wait_one(q), has_wz ? 0 : -ENOTSUP);
    do_read(0, chk, MIB);
    expect_zero(chk + 64 * 1024, 64 * 1024, "write zeroes");
    expect_zero(chk + 256 * 1024, 4096, "write zeroes no-unmap");
    expect_zero(chk + 512 * 1024, 8192, "write zeroes FUA");
    if (has_wz)
        expect_zero(chk + 768 * 1024, 4096, "write zeroes no-fallback");
    expect_same(buf, chk, 64 * 1024, "before zeroed range");
    expect_same(buf + 128 * 1024, chk + 128 * 1024, 128 * 1024,
                "between zeroed ranges");

    /* Discard: only success is promised, not the contents. */
    if (disc_max) {
        blkioq_discard(q, 2 * MIB, MIB, NULL, 0);
        CHECK_RET(vu_wait_one(q), 0);
    }

    /* 300 odd-sized segments, beyond seg_max (126): split inside. */
    total = 0;
    for (int i = 0; i < 300; i++) {
        size_t len = 1000 + (size_t)(i % 7) * 3;
        iov[i] = (struct iovec){ buf + total, len };
        total += len;
    }
    /* Round the last segment so the total is a whole number of sectors. */
    iov[299].iov_len += 512 - total % 512;
    total += 512 - total % 512;
    t_fill_random(buf, total, 2);
    blkioq_writev(q, 4 * MIB, iov, 300, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    memset(chk, 0, total);
    do_read(4 * MIB, chk, total);
    expect_same(buf, chk, total, "300-segment writev");
    for (int i = 0; i < 300; i++)
        iov[i].iov_base = chk + ((uint8_t *)iov[i].iov_base - buf);
    memset(chk, 0, total);
    blkioq_readv(q, 4 * MIB, iov, 300, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    expect_same(buf, chk, total, "300-segment readv");

    /* 20 MiB transfers and zeroes/discard beyond the device limits. */
    t_fill_random(buf, BIG, 3);
    do_write(8 * MIB, buf, BIG, BLKIO_REQ_FUA);
    memset(chk, 0, BIG);
    do_read(8 * MIB, chk, BIG);
    expect_same(buf, chk, BIG, "20 MiB write");
    blkioq_write_zeroes(q, 8 * MIB, BIG, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    do_read(8 * MIB, chk, BIG);
    expect_zero(chk, BIG, "20 MiB write zeroes");
    if (disc_max) {
        blkioq_discard(q, 8 * MIB, BIG, NULL, 0);
        CHECK_RET(vu_wait_one(q), 0);
    }

    /* A burst far larger than the 16-entry ring. */
    t_fill_random(buf, MIB, 4);
    for (int i = 0; i < 256; i++)
        blkioq_write(q, 32 * MIB + (uint64_t)i * 4096, buf + i * 4096, 4096,
                     NULL, 0);
    vu_wait_ok(q, 256);
    for (int i = 0; i < 256; i++)
        blkioq_read(q, 32 * MIB + (uint64_t)i * 4096, chk + i * 4096, 4096,
                    NULL, 0);
    vu_wait_ok(q, 256);
    expect_same(buf, chk, MIB, "burst");

    /* Argument errors reported by the core, as completions. */
    blkioq_read(q, 100, chk, 512, NULL, 0);
    CHECK_RET(vu_wait_one(q), -EINVAL);
    blkioq_read(q, cap, chk, 512, NULL, 0);
    CHECK_RET(vu_wait_one(q), -EINVAL);
    blkioq_read(q, 0, unmapped, 512, NULL, 0);
    CHECK_RET(vu_wait_one(q), -EFAULT);
    blkioq_read(q, 0, chk, 512, NULL, BLKIO_REQ_FUA);
    CHECK_RET(vu_wait_one(q), -EINVAL);

    blkio_destroy(&b);
    return 0;
}
