/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Requests: every request type with good and bad arguments, data
 * checksums, blkioq_do_io() arguments, read-only instances and zones.
 * Buffers come from a mapped memory region, which every driver takes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conform.h"

#define REGION (4u << 20)

struct cf_io {
    struct blkio *b;
    struct blkioq *q;
    struct blkio_mem_region r;
    char *buf;              /* r.addr */
    uint64_t cap;
    uint64_t blk;           /* request unit: max(request-alignment, 4096) */
    int max_transfer;
};

static void cf_io_open(struct cf_io *io, const struct cf_setup *s,
                       bool read_only)
{
    uint64_t align = 1;
    int ra = 1;

    io->b = cf_create(s);
    if (read_only)
        cf_ret(blkio_set_bool(io->b, "read-only", true), "set read-only");
    if (cf_ret(blkio_connect(io->b), "connect") < 0 ||
        cf_ret(blkio_start(io->b), "start") < 0)
        cf_die("could not start");
    io->q = blkio_get_queue(io->b, 0);
    if (!io->q)
        cf_die("no queue 0");
    blkio_get_uint64(io->b, "capacity", &io->cap);
    blkio_get_int(io->b, "request-alignment", &ra);
    blkio_get_uint64(io->b, "mem-region-alignment", &align);
    io->max_transfer = 0;
    blkio_get_int(io->b, "max-transfer", &io->max_transfer);
    io->blk = ra > 4096 ? (uint64_t)ra : 4096;
    if (REGION % align)
        cf_die("mem-region-alignment %" PRIu64 " does not divide 4 MiB",
               align);
    if (blkio_alloc_mem_region(io->b, &io->r, REGION) < 0 ||
        blkio_map_mem_region(io->b, &io->r) < 0)
        cf_die("no memory region");
    io->buf = io->r.addr;
}

static void cf_io_close(struct cf_io *io)
{
    blkio_unmap_mem_region(io->b, &io->r);
    blkio_free_mem_region(io->b, &io->r);
    blkio_destroy(&io->b);
}

static void cf_fill(char *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (char)(i * 7 + (i >> 9) + seed);
}

/* Read [start, start+len) into the second half of the region and trace
 * its checksum. */
static void cf_check_data(struct cf_io *io, uint64_t start, size_t len,
                          const char *label)
{
    char *dst = io->buf + REGION / 2;
    char h[32];

    memset(dst, 0xa5, len);
    blkioq_read(io->q, start, dst, len, NULL, 0);
    if (cf_wait1(io->q, label) == 0) {
        snprintf(h, sizeof(h), "%016" PRIx64, cf_hash(dst, len));
        cf_line(h, "%s data", label);
    }
}

static void cf_io_rw(struct cf_io *io)
{
    uint64_t blk = io->blk;
    struct iovec iov[3] = {
        { io->buf, blk }, { io->buf + 2 * blk, blk }, { io->buf + blk, blk },
    };

    cf_fill(io->buf, 16 * blk, 1);
    blkioq_write(io->q, 0, io->buf, 16 * blk, NULL, 0);
    cf_wait1(io->q, "write 16 blocks");
    cf_check_data(io, 0, 16 * blk, "read 16 blocks");
    blkioq_writev(io->q, 16 * blk, iov, 3, NULL, 0);
    cf_wait1(io->q, "writev 3");
    cf_check_data(io, 16 * blk, 3 * blk, "read writev");
    iov[0].iov_base = io->buf + REGION / 2;
    iov[1].iov_base = io->buf + REGION / 2 + blk;
    iov[1].iov_len = 2 * blk;
    blkioq_readv(io->q, 0, iov, 2, NULL, 0);
    cf_wait1(io->q, "readv 2");
    blkioq_readv(io->q, 0, iov, 0, NULL, 0);
    cf_wait1(io->q, "readv iovcnt 0");
    blkioq_write(io->q, 0, io->buf, blk, NULL, BLKIO_REQ_FUA);
    cf_wait1(io->q, "write FUA");
    blkioq_read(io->q, 0, io->buf, blk, NULL, BLKIO_REQ_FUA);
    cf_wait1(io->q, "read flag FUA");
    blkioq_write(io->q, 0, io->buf, blk, NULL, BLKIO_REQ_NO_UNMAP);
    cf_wait1(io->q, "write flag NO_UNMAP");
    blkioq_read(io->q, 0, io->buf, blk, NULL, 1u << 7);
    cf_wait1(io->q, "read flag 1<<7");
}

static void cf_io_ranges(struct cf_io *io)
{
    uint64_t blk = io->blk, cap = io->cap;

    blkioq_read(io->q, 512, io->buf, blk, NULL, 0);
    cf_wait1(io->q, "read start 512");
    blkioq_read(io->q, 1, io->buf, blk, NULL, 0);
    cf_wait1(io->q, "read start 1");
    blkioq_read(io->q, 0, io->buf, blk + 1, NULL, 0);
    cf_wait1(io->q, "read len blk+1");
    blkioq_read(io->q, 0, io->buf + 1, blk, NULL, 0);
    cf_wait1(io->q, "read buffer +1");
    blkioq_read(io->q, cap - blk, io->buf, blk, NULL, 0);
    cf_wait1(io->q, "read last block");
    blkioq_read(io->q, cap, io->buf, blk, NULL, 0);
    cf_wait1(io->q, "read at capacity");
    blkioq_read(io->q, cap - blk, io->buf, 2 * blk, NULL, 0);
    cf_wait1(io->q, "read across capacity");
    blkioq_read(io->q, UINT64_MAX - blk + 1, io->buf, blk, NULL, 0);
    cf_wait1(io->q, "read at 2^64-blk");
    /* A 1 MiB read, and whether max-transfer says it fits. */
    if (cap >= (1u << 20)) {
        blkioq_read(io->q, 0, io->buf, 1u << 20, NULL, 0);
        cf_wait1(io->q, "read 1 MiB");
    }
    cf_line(io->max_transfer == 0 || io->max_transfer >= (1 << 20) ?
            "within" : "beyond", "1 MiB vs max-transfer");
    if (io->max_transfer > 0 &&
        (uint64_t)io->max_transfer + blk <= REGION / 2 &&
        (uint64_t)io->max_transfer + blk <= cap) {
        blkioq_read(io->q, 0, io->buf, (size_t)io->max_transfer + blk, NULL,
                    0);
        cf_wait1(io->q, "read max-transfer+blk");
    } else {
        cf_line("not tried", "read max-transfer+blk");
    }
}

static void cf_io_zeroes(struct cf_io *io)
{
    uint64_t blk = io->blk, cap = io->cap;

    cf_fill(io->buf, 8 * blk, 2);
    blkioq_write(io->q, 0, io->buf, 8 * blk, NULL, 0);
    cf_wait1(io->q, "write before zeroes");
    blkioq_write_zeroes(io->q, 0, 0, NULL, 0);
    cf_wait1(io->q, "write_zeroes len 0");
    blkioq_write_zeroes(io->q, blk, blk, NULL, 0);
    cf_wait1(io->q, "write_zeroes");
    blkioq_write_zeroes(io->q, 3 * blk, blk, NULL, BLKIO_REQ_NO_UNMAP);
    cf_wait1(io->q, "write_zeroes NO_UNMAP");
    blkioq_write_zeroes(io->q, 5 * blk, blk, NULL, BLKIO_REQ_NO_FALLBACK);
    cf_wait1(io->q, "write_zeroes NO_FALLBACK");
    blkioq_write_zeroes(io->q, 6 * blk, blk, NULL, BLKIO_REQ_FUA);
    cf_wait1(io->q, "write_zeroes FUA");
    blkioq_write_zeroes(io->q, 0, blk, NULL, 1u << 7);
    cf_wait1(io->q, "write_zeroes flag 1<<7");
    blkioq_write_zeroes(io->q, cap - blk, 2 * blk, NULL, 0);
    cf_wait1(io->q, "write_zeroes across capacity");
    blkioq_write_zeroes(io->q, 1, blk, NULL, 0);
    cf_wait1(io->q, "write_zeroes start 1");
    cf_check_data(io, 0, 8 * blk, "read after zeroes");

    blkioq_discard(io->q, 0, 0, NULL, 0);
    cf_wait1(io->q, "discard len 0");
    blkioq_discard(io->q, 7 * blk, blk, NULL, 0);
    cf_wait1(io->q, "discard");
    blkioq_discard(io->q, 7 * blk, blk, NULL, BLKIO_REQ_FUA);
    cf_wait1(io->q, "discard flag FUA");
    blkioq_discard(io->q, cap - blk, 2 * blk, NULL, 0);
    cf_wait1(io->q, "discard across capacity");
    blkioq_flush(io->q, NULL, 0);
    cf_wait1(io->q, "flush");
    blkioq_flush(io->q, NULL, BLKIO_REQ_FUA);
    cf_wait1(io->q, "flush flag FUA");
}

static void cf_io_do_io_args(struct cf_io *io)
{
    struct blkio_completion c[4];
    struct timespec t = { .tv_nsec = 1000000 };
    void *tag = &t;
    int n;

    cf_ret(blkioq_do_io(io->q, c, 2, 1, NULL), "do_io min > max");
    cf_ret(blkioq_do_io(io->q, c, -1, 1, NULL), "do_io min -1");
    cf_ret(blkioq_do_io(io->q, NULL, 0, 0, NULL), "do_io 0 0");
    cf_ret(blkioq_do_io(io->q, c, 0, 4, &t), "do_io nothing in flight");
    blkioq_flush(io->q, tag, 0);
    t = (struct timespec){ .tv_sec = 10 };
    n = blkioq_do_io(io->q, c, 1, 4, &t);
    cf_ret(n, "do_io flush");
    cf_line(n == 1 && c[0].user_data == tag ? "matches" : "differs",
            "do_io user_data");
    blkioq_read(io->q, 0, io->buf, io->blk, tag, 1u << 7);  /* bad flag */
    t = (struct timespec){ .tv_sec = 10 };
    n = blkioq_do_io(io->q, c, 1, 4, &t);
    cf_line(n == 1 && c[0].user_data == tag ? "matches" : "differs",
            "failed request user_data");
    cf_line(n == 1 && c[0].error_msg ? "message" : "no message",
            "failed request error_msg");
}

/* Near the end: libblkio 1.5's virtio-blk drivers never complete a
 * zero-length read or write, so these wait a second and the requests stay
 * in flight. */
static void cf_io_zero_len(struct cf_io *io)
{
    struct blkio_completion c;
    struct timespec t = { .tv_sec = 1 };
    int n;

    blkioq_read(io->q, 0, io->buf, 0, NULL, 0);
    n = blkioq_do_io(io->q, &c, 1, 1, &t);
    cf_line(n == 1 ? cf_errname(c.ret) : cf_errname(n), "read len 0");
    t = (struct timespec){ .tv_sec = 1 };
    blkioq_write(io->q, 0, io->buf, 0, NULL, 0);
    n = blkioq_do_io(io->q, &c, 1, 1, &t);
    cf_line(n == 1 ? cf_errname(c.ret) : cf_errname(n), "write len 0");
}

/* Last: after this timed-out wait libblkio 1.5's vhost-user queue loses
 * later completions. */
static void cf_io_do_io_timeout(struct cf_io *io)
{
    struct blkio_completion c[4];
    struct timespec t = { .tv_nsec = 1000000 };

    cf_ret(blkioq_do_io(io->q, c, 1, 4, &t), "do_io min 1 nothing in flight");
}

int cf_io(const struct cf_setup *s)
{
    struct cf_io io;
    char *plain = NULL;

    cf_io_open(&io, s, false);
    cf_io_rw(&io);
    cf_io_ranges(&io);
    cf_io_zeroes(&io);
    cf_io_do_io_args(&io);

    /* A buffer outside every mapped region. */
    if (posix_memalign((void **)&plain, 4096, io.blk) != 0)
        cf_die("posix_memalign failed");
    blkioq_read(io.q, 0, plain, io.blk, NULL, 0);
    cf_wait1(io.q, "read into unmapped memory");
    free(plain);
    cf_check_data(&io, 0, 32 * io.blk, "final data");
    cf_io_zero_len(&io);
    cf_io_do_io_timeout(&io);
    cf_io_close(&io);
    return 0;
}

int cf_readonly(const struct cf_setup *s)
{
    struct cf_io io;
    bool ro = false;
    struct iovec iov = { NULL, 0 };

    cf_io_open(&io, s, true);
    iov = (struct iovec){ io.buf, io.blk };
    cf_ret(blkio_get_bool(io.b, "read-only", &ro), "get read-only");
    cf_line(ro ? "true" : "false", "read-only");
    blkioq_write(io.q, 0, io.buf, io.blk, NULL, 0);
    cf_wait1(io.q, "write");
    blkioq_writev(io.q, 0, &iov, 1, NULL, 0);
    cf_wait1(io.q, "writev");
    blkioq_write_zeroes(io.q, 0, io.blk, NULL, 0);
    cf_wait1(io.q, "write_zeroes");
    blkioq_discard(io.q, 0, io.blk, NULL, 0);
    cf_wait1(io.q, "discard");
    blkioq_flush(io.q, NULL, 0);
    cf_wait1(io.q, "flush");
    cf_check_data(&io, 0, io.blk, "read");
    cf_io_close(&io);
    return 0;
}

static void cf_zone_report(struct cf_io *io, uint64_t off, uint32_t n,
                           const char *label)
{
    struct blkio_zone *z = (struct blkio_zone *)(io->buf + REGION / 2);
    char v[160];

    memset(z, 0xa5, n * sizeof(*z));
    blkioq_report_zones(io->q, off, z, n, NULL, 0);
    if (cf_wait1(io->q, label) != 0)
        return;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(v, sizeof(v), "start %" PRIu64 " len %" PRIu64 " cap %"
                 PRIu64 " wp %" PRIu64 " type %u state %u reset %u",
                 z[i].start, z[i].len, z[i].capacity, z[i].write_pointer,
                 z[i].zone_type, z[i].zone_state, z[i].reset);
        cf_line(v, "%s zone %u", label, i);
    }
}

/* Zone requests; on a device without zones each must fail cleanly. */
int cf_zones(const struct cf_setup *s)
{
    struct cf_io io;
    int zoned = 0;
    uint64_t zs = 0;

    cf_io_open(&io, s, false);
    cf_ret(blkio_get_int(io.b, "zoned", &zoned), "get zoned");
    cf_ret(blkio_get_uint64(io.b, "zone-size", &zs), "get zone-size");
    if (zs == 0 || zs > REGION / 4)
        zs = 1 << 20;
    blkioq_reset_all_zones(io.q, NULL, 0);
    cf_wait1(io.q, "reset_all_zones");
    cf_zone_report(&io, 0, 3, "report 3");
    cf_zone_report(&io, zs, 1, "report from zone 1");
    cf_zone_report(&io, 0, 0, "report 0 zones");
    cf_zone_report(&io, io.cap, 1, "report at capacity");
    cf_fill(io.buf, io.blk * 4, 3);
    blkioq_write(io.q, 0, io.buf, io.blk * 4, NULL, 0);
    cf_wait1(io.q, "write zone 0");
    blkioq_write(io.q, io.blk * 8, io.buf, io.blk, NULL, 0);
    cf_wait1(io.q, "write past write pointer");
    cf_zone_report(&io, 0, 1, "report after write");
    blkioq_open_zone(io.q, zs, NULL, 0);
    cf_wait1(io.q, "open_zone 1");
    blkioq_close_zone(io.q, zs, NULL, 0);
    cf_wait1(io.q, "close_zone 1");
    blkioq_finish_zone(io.q, 0, NULL, 0);
    cf_wait1(io.q, "finish_zone 0");
    blkioq_open_zone(io.q, 1, NULL, 0);
    cf_wait1(io.q, "open_zone unaligned");
    blkioq_open_zone(io.q, io.cap, NULL, 0);
    cf_wait1(io.q, "open_zone at capacity");
    blkioq_open_zone(io.q, zs, NULL, BLKIO_REQ_FUA);
    cf_wait1(io.q, "open_zone flag FUA");
    cf_zone_report(&io, 0, 2, "report after finish");
    blkioq_reset_zone(io.q, 0, NULL, 0);
    cf_wait1(io.q, "reset_zone 0");
    blkioq_open_all_zones(io.q, NULL, 0);
    cf_wait1(io.q, "open_all_zones");
    blkioq_close_all_zones(io.q, NULL, 0);
    cf_wait1(io.q, "close_all_zones");
    blkioq_finish_all_zones(io.q, NULL, 0);
    cf_wait1(io.q, "finish_all_zones");
    blkioq_reset_all_zones(io.q, NULL, 0);
    cf_wait1(io.q, "reset_all_zones again");
    cf_zone_report(&io, 0, 2, "report after reset");
    cf_io_close(&io);
    return 0;
}
