/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: nvme-io_uring I/O on a conventional namespace: random
 * pattern data integrity with many requests in flight on two queues,
 * vectored I/O, FUA, flush, write zeroes (all flag combinations and longer
 * than one command), discard, requests the library must refuse, a
 * read-only instance, the completion fd, and a poll queue when the kernel
 * has NVMe poll queues.
 * Usage: test-nvme-io [/dev/ngXnY] (default $BLKIO_VM_NVME).
 */
#include <poll.h>
#include <sys/uio.h>

#include "nvme-util.h"

#define NT_CHUNK   (64 * 1024)
#define NT_NCHUNK  256          /* 16 MiB of the device */
#define NT_DEPTH   32

static uint64_t nt_rand_state = 0x123456789abcdefull;

static uint32_t nt_rand(void)
{
    nt_rand_state ^= nt_rand_state << 13;
    nt_rand_state ^= nt_rand_state >> 7;
    nt_rand_state ^= nt_rand_state << 17;
    return (uint32_t)nt_rand_state;
}

/* Write every chunk with a pattern, up to NT_DEPTH at a time on each of
 * two queues (chunks alternate between queues), some with FUA, then read
 * them all back in random order through 3-element iovecs and verify. */
static void test_integrity(struct blkio *b, uint32_t gen)
{
    struct blkioq *qs[2] = { blkio_get_queue(b, 0), blkio_get_queue(b, 1) };
    uint8_t *bufs = nt_alloc((size_t)NT_NCHUNK * NT_CHUNK);
    struct iovec *iovs = calloc((size_t)NT_NCHUNK * 3, sizeof(*iovs));
    uint32_t order[NT_NCHUNK];
    struct blkio_completion c[NT_DEPTH];

    CHECK(qs[0] && qs[1] && iovs);
    for (uint32_t i = 0; i < NT_NCHUNK; i++)
        order[i] = i;
    for (uint32_t i = NT_NCHUNK - 1; i > 0; i--) {
        uint32_t j = nt_rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }

    for (int pass = 0; pass < 2; pass++) {
        uint32_t next[2] = { 0, 1 }, inflight[2] = { 0, 0 }, done = 0;

        if (pass == 1)
            memset(bufs, 0xa5, (size_t)NT_NCHUNK * NT_CHUNK);
        while (done < NT_NCHUNK) {
            for (int qi = 0; qi < 2; qi++) {
                while (inflight[qi] < NT_DEPTH && next[qi] < NT_NCHUNK) {
                    uint32_t k = pass ? order[next[qi]] : next[qi];
                    uint64_t off = (uint64_t)k * NT_CHUNK;
                    uint8_t *buf = bufs + off;

                    if (pass == 0) {
                        t_fill_pattern(buf, NT_CHUNK, off, gen);
                        blkioq_write(qs[qi], off, buf, NT_CHUNK,
                                     (void *)(uintptr_t)(k | qi << 16),
                                     k % 3 == 0 ? BLKIO_REQ_FUA : 0);
                    } else {
                        struct iovec *v = &iovs[k * 3];
                        v[0] = (struct iovec){ buf, 4096 };
                        v[1] = (struct iovec){ buf + 4096, 32768 };
                        v[2] = (struct iovec){ buf + 36864,
                                               NT_CHUNK - 36864 };
                        blkioq_readv(qs[qi], off, v, 3,
                                     (void *)(uintptr_t)(k | qi << 16), 0);
                    }
                    next[qi] += 2;
                    inflight[qi]++;
                }
            }
            for (int qi = 0; qi < 2; qi++) {
                int n;

                if (!inflight[qi])
                    continue;
                n = blkioq_do_io(qs[qi], c, 1, NT_DEPTH, NULL);
                CHECK(n >= 1);
                for (int i = 0; i < n; i++) {
                    uint32_t k = (uint32_t)(uintptr_t)c[i].user_data & 0xffff;
                    uint32_t from = (uint32_t)(uintptr_t)c[i].user_data >> 16;
                    if (c[i].ret != 0)
                        T_FAIL("chunk %u pass %d: ret %d (%s)", k, pass,
                               c[i].ret, c[i].error_msg);
                    if (from != (uint32_t)qi)
                        T_FAIL("chunk %u completed on queue %d", k, qi);
                }
                inflight[qi] -= (uint32_t)n;
                done += (uint32_t)n;
            }
        }
    }
    for (uint32_t k = 0; k < NT_NCHUNK; k++) {
        uint64_t off = (uint64_t)k * NT_CHUNK;
        if (!t_verify_pattern(bufs + off, NT_CHUNK, off, gen))
            T_FAIL("chunk %u: data read back differs from data written",
                   k);
    }

    /* flush on each queue */
    for (int qi = 0; qi < 2; qi++) {
        blkioq_flush(qs[qi], NULL, 0);
        CHECK_RET(t_wait(qs[qi], NULL), 0);
    }
    free(iovs);
    free(bufs);
}

static size_t nt_max_transfer;

/* Read or write [off, off+len) in max-transfer pieces. */
static void nt_rw(struct blkioq *q, bool write, uint64_t off, uint8_t *buf,
                  size_t len)
{
    for (size_t done = 0; done < len; done += nt_max_transfer) {
        size_t l = len - done < nt_max_transfer ? len - done
                                                : nt_max_transfer;
        if (write)
            blkioq_write(q, off + done, buf + done, l, NULL, 0);
        else
            blkioq_read(q, off + done, buf + done, l, NULL, 0);
        CHECK_RET(t_wait(q, NULL), 0);
    }
}

static void nt_write_pattern(struct blkioq *q, uint64_t off, size_t len,
                             uint32_t gen)
{
    uint8_t *buf = nt_alloc(len);

    t_fill_pattern(buf, len, off, gen);
    nt_rw(q, true, off, buf, len);
    free(buf);
}

static bool nt_read_is_zero(struct blkioq *q, uint64_t off, size_t len)
{
    uint8_t *buf = nt_alloc(len);
    bool z;

    memset(buf, 0x5a, len);
    nt_rw(q, false, off, buf, len);
    z = t_is_zero(buf, len);
    free(buf);
    return z;
}

static void test_write_zeroes_discard(struct blkio *b)
{
    struct blkioq *q = blkio_get_queue(b, 0);
    uint64_t wz_max = t_get_u64(b, "max-write-zeroes-len");
    uint64_t dmax = t_get_u64(b, "max-discard-len");
    uint32_t ra = (uint32_t)t_get_int(b, "request-alignment");
    uint64_t base = 32ull << 20;
    static const uint32_t flag_sets[] = {
        0, BLKIO_REQ_NO_UNMAP, BLKIO_REQ_FUA,
        BLKIO_REQ_NO_UNMAP | BLKIO_REQ_FUA | BLKIO_REQ_NO_FALLBACK,
    };
    size_t len = 1 << 20;
    uint8_t buf0[64];
    const char *msg;
    int ret;

    for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]); i++) {
        nt_write_pattern(q, base, len, 7);
        blkioq_write_zeroes(q, base + ra, len - 2 * ra, NULL, flag_sets[i]);
        ret = t_wait(q, &msg);
        if (wz_max == 0 && (flag_sets[i] & BLKIO_REQ_NO_FALLBACK)) {
            CHECK_RET(ret, -ENOTSUP);
            continue;
        }
        CHECK_RET(ret, 0);
        CHECK(nt_read_is_zero(q, base + ra, len - 2 * ra));
        /* the blocks around it are untouched */
        {
            uint8_t *buf = nt_alloc(ra);
            blkioq_read(q, base, buf, ra, NULL, 0);
            CHECK_RET(t_wait(q, NULL), 0);
            CHECK(t_verify_pattern(buf, ra, base, 7));
            blkioq_read(q, base + len - ra, buf, ra, NULL, 0);
            CHECK_RET(t_wait(q, NULL), 0);
            CHECK(t_verify_pattern(buf, ra, base + len - ra, 7));
            free(buf);
        }
    }

    /* longer than one Write Zeroes command: the driver chains commands
     * (QEMU allows 65536 blocks per command: needs a 128 MiB disk) */
    if (wz_max > 0 && base + wz_max * 2 + ra <= t_get_u64(b, "capacity")) {
        uint64_t l = wz_max * 2 + ra;
        nt_write_pattern(q, base, (size_t)l, 9);
        blkioq_write_zeroes(q, base, l, NULL, 0);
        CHECK_RET(t_wait(q, NULL), 0);
        CHECK(nt_read_is_zero(q, base, (size_t)l));
    }

    /* discard: succeeds where the controller has DSM */
    blkioq_discard(q, base, len, NULL, 0);
    ret = t_wait(q, &msg);
    CHECK_RET(ret, dmax > 0 ? 0 : -ENOTSUP);

    /* zero-length requests fail at once, as with libblkio 1.5 */
    blkioq_write_zeroes(q, base, 0, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EINVAL);
    blkioq_discard(q, base, 0, NULL, 0);
    CHECK_RET(t_wait(q, NULL), dmax > 0 ? -EINVAL : -ENOTSUP);
    blkioq_read(q, base, buf0, 0, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EINVAL);
    blkioq_write(q, base, buf0, 0, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EINVAL);
}

/* Requests the library must refuse, each with its own errno. */
/* Buffers aligned to buf-alignment (4: NVMe's dword alignment, which the
 * kernel maps for DMA without bouncing) but not to the block size carry
 * the data, plain and vectored, both ways. */
static void test_buf_alignment(struct blkio *b)
{
    struct blkioq *q = blkio_get_queue(b, 0);
    uint32_t ra = (uint32_t)t_get_int(b, "request-alignment");
    int ba = t_get_int(b, "buf-alignment");
    uint8_t *mem = nt_alloc(4u * ra + 4096), *wbuf, *rbuf;
    uint64_t off = 48ull << 20;
    struct iovec v[2];

    CHECK(ba >= 1 && ba < (int)ra);
    CHECK(t_get_u64(b, "mem-region-alignment") % (uint64_t)ba == 0);
    wbuf = mem + ba;                    /* not block aligned */
    rbuf = mem + 2 * ra + 3 * ba;
    t_fill_pattern(wbuf, 2 * ra, off, 11);
    blkioq_write(q, off, wbuf, 2 * ra, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    memset(rbuf, 0, 2 * ra);
    v[0] = (struct iovec){ rbuf, ra };
    v[1] = (struct iovec){ rbuf + ra, ra };
    blkioq_readv(q, off, v, 2, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    CHECK(memcmp(rbuf, wbuf, 2 * ra) == 0);
    free(mem);
}

static void test_refused(struct blkio *b)
{
    struct blkioq *q = blkio_get_queue(b, 0);
    uint64_t cap = t_get_u64(b, "capacity");
    uint32_t ra = (uint32_t)t_get_int(b, "request-alignment");
    int max_transfer = t_get_int(b, "max-transfer");
    int max_segments = t_get_int(b, "max-segments");
    uint8_t *buf = nt_alloc((size_t)max_transfer + 8192);
    struct iovec *iov = calloc((size_t)max_segments + 1, sizeof(*iov));
    const char *msg;

    CHECK(iov);
    blkioq_read(q, 1, buf, ra, NULL, 0);                  /* start */
    CHECK_RET(t_wait(q, &msg), -EINVAL);
    blkioq_read(q, 0, buf, ra + 1, NULL, 0);              /* length */
    CHECK_RET(t_wait(q, &msg), -EINVAL);
    if (t_get_int(b, "buf-alignment") > 1) {
        blkioq_read(q, 0, buf + 1, ra, NULL, 0);          /* buffer */
        CHECK_RET(t_wait(q, &msg), -EINVAL);
    }
    blkioq_read(q, cap, buf, ra, NULL, 0);                /* past the end */
    CHECK_RET(t_wait(q, &msg), -EINVAL);
    blkioq_write(q, cap - ra, buf, 2 * ra, NULL, 0);      /* across it */
    CHECK_RET(t_wait(q, &msg), -EINVAL);
    blkioq_read(q, 0, buf, (size_t)max_transfer + ra, NULL, 0);
    CHECK_RET(t_wait(q, &msg), -EINVAL);
    for (int i = 0; i <= max_segments; i++)
        iov[i] = (struct iovec){ buf, ra };
    blkioq_readv(q, 0, iov, max_segments + 1, NULL, 0);   /* iovcnt */
    CHECK_RET(t_wait(q, &msg), -EINVAL);
    CHECK(strstr(msg, "max-segments") != NULL);
    blkioq_read(q, 0, buf, ra, NULL, BLKIO_REQ_FUA);      /* flag */
    CHECK_RET(t_wait(q, &msg), -EINVAL);
    blkioq_report_zones(q, 0, NULL, 0, NULL, 0);          /* not zoned */
    CHECK_RET(t_wait(q, &msg), -ENOTSUP);
    blkioq_reset_zone(q, 0, NULL, 0);
    CHECK_RET(t_wait(q, &msg), -ENOTSUP);

    /* the last block is fine */
    blkioq_read(q, cap - ra, buf, ra, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    /* the largest transfer is fine */
    blkioq_read(q, 0, buf, (size_t)max_transfer, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    free(iov);
    free(buf);
}

static void test_read_only(const char *dev)
{
    struct blkio *b = nt_open(dev, true, 1, 0);
    struct blkioq *q = blkio_get_queue(b, 0);
    uint8_t *buf = nt_alloc(4096);

    blkioq_write(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EBADF);
    blkioq_write_zeroes(q, 0, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EBADF);
    blkioq_discard(q, 0, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EBADF);
    blkioq_read(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    CHECK(t_verify_pattern(buf, 4096, 0, 1)); /* written by test_integrity */
    free(buf);
    blkio_destroy(&b);
}

/* The completion fd becomes readable when a request completes. */
static void test_completion_fd(struct blkio *b)
{
    struct blkioq *q = blkio_get_queue(b, 0);
    int fd = blkioq_get_completion_fd(q);
    uint8_t *buf = nt_alloc(4096);
    struct blkio_completion c;
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    uint64_t cnt;

    CHECK(fd >= 0);
    blkioq_set_completion_fd_enabled(q, true);
    /* Earlier tests' completions left the counter readable: start from 0,
     * so that readable means this request's completion. */
    while (read(fd, &cnt, sizeof(cnt)) == sizeof(cnt))
        ;
    blkioq_read(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(blkioq_do_io(q, NULL, 0, 0, NULL), 0);
    CHECK_RET(poll(&pfd, 1, 10000), 1);
    CHECK(read(fd, &cnt, sizeof(cnt)) == sizeof(cnt) && cnt >= 1);
    CHECK_RET(blkioq_do_io(q, &c, 0, 1, NULL), 1);
    CHECK_RET(c.ret, 0);
    free(buf);
}

/* A do_io timeout expires with -ETIME when nothing is in flight that
 * could complete in time; use min 1 with a request that completes fast to
 * check that the timeout path also returns completions. */
static void test_timeout(struct blkio *b)
{
    struct blkioq *q = blkio_get_queue(b, 0);
    uint8_t *buf = nt_alloc(4096);
    struct blkio_completion c;
    struct timespec t = { .tv_sec = 10 };

    blkioq_read(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, &t), 1);
    CHECK_RET(c.ret, 0);
    CHECK(t.tv_sec < 10 || t.tv_nsec > 0);
    free(buf);
}

static void test_poll_queue(const char *dev)
{
    struct blkio *b;
    struct blkioq *q;
    uint8_t *buf = nt_alloc(65536);

    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_connect(b), 0);
    if (!t_get_bool(b, "supports-poll-queues")) {
        printf("poll queue part skipped: supports-poll-queues is false "
               "(the nvme driver has no poll queues; nvme.poll_queues=N)\n");
        CHECK_RET(blkio_set_int(b, "num-poll-queues", 1), 0);
        CHECK_RET(blkio_start(b), -EINVAL);
        blkio_destroy(&b);
        free(buf);
        return;
    }
    CHECK_RET(blkio_set_int(b, "num-poll-queues", 1), 0);
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_poll_queue(b, 0);
    CHECK(q && blkioq_get_completion_fd(q) == -1);
    t_fill_pattern(buf, 65536, 1 << 20, 3);
    blkioq_write(q, 1 << 20, buf, 65536, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    memset(buf, 0, 65536);
    blkioq_read(q, 1 << 20, buf, 65536, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    CHECK(t_verify_pattern(buf, 65536, 1 << 20, 3));
    blkio_destroy(&b);
    free(buf);
}

/*
 * Requests in a mapped memory region, with fixed-buffers (where the kernel
 * has them; LIBBLKIO_URING_DECLINE=2 forces the plain path) and without,
 * and in memory reaching past the region's end: data must round-trip
 * every way.
 */
#define NT_MR_LEN (1024 * 1024)
#define NT_MR_OFF (40ull << 20)

static void test_mem_region(const char *dev, bool fixed)
{
    struct blkio *b = NULL;
    struct blkioq *q;
    bool pin = !fixed;
    struct blkio_mem_region r, own_r;
    uint8_t *own = nt_alloc(2 * NT_MR_LEN);
    uint8_t *rb;

    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(blkio_get_bool(b, "may-pin-mem-regions", &pin), 0);
    CHECK(!pin);
    CHECK_RET(blkio_set_bool(b, "fixed-buffers", fixed), 0);
    CHECK_RET(blkio_get_bool(b, "may-pin-mem-regions", &pin), 0);
    CHECK(pin == fixed);
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_queue(b, 0);
    CHECK_RET(blkio_alloc_mem_region(b, &r, NT_MR_LEN), 0);
    CHECK_RET(blkio_map_mem_region(b, &r), 0);
    own_r = (struct blkio_mem_region){ .addr = own, .len = NT_MR_LEN,
                                       .fd = -1 };
    CHECK_RET(blkio_map_mem_region(b, &own_r), 0);
    rb = r.addr;

    /* Region to device to region. */
    t_fill_pattern(rb, NT_MR_LEN / 2, NT_MR_OFF, 9);
    nt_rw(q, true, NT_MR_OFF, rb, NT_MR_LEN / 2);
    memset(rb + NT_MR_LEN / 2, 0, NT_MR_LEN / 2);
    nt_rw(q, false, NT_MR_OFF, rb + NT_MR_LEN / 2, NT_MR_LEN / 2);
    CHECK(t_verify_pattern(rb + NT_MR_LEN / 2, NT_MR_LEN / 2, NT_MR_OFF, 9));
    /* Past the end of a region: not a fixed buffer, same data. */
    memset(own + NT_MR_LEN - 8192, 0, 16384);
    nt_rw(q, false, NT_MR_OFF, own + NT_MR_LEN - 8192, 16384);
    CHECK(t_verify_pattern(own + NT_MR_LEN - 8192, 16384, NT_MR_OFF, 9));
    /* Unmapped: still plain memory of ours. */
    blkio_unmap_mem_region(b, &own_r);
    memset(own, 0, 8192);
    nt_rw(q, false, NT_MR_OFF + 8192, own, 8192);
    CHECK(t_verify_pattern(own, 8192, NT_MR_OFF + 8192, 9));

    blkio_unmap_mem_region(b, &r);
    blkio_free_mem_region(b, &r);
    blkio_destroy(&b);
    free(own);
}

int main(int argc, char **argv)
{
    const char *dev = nt_device(argc, argv, "BLKIO_VM_NVME", "/dev/ng0n1");
    struct blkio *b;

    if (geteuid() != 0)
        t_skip("nvme-io_uring needs CAP_SYS_ADMIN (run as root)");
    b = nt_open(dev, false, 2, 0);
    if (t_get_u64(b, "capacity") < (48ull << 20))
        t_skip("%s is smaller than the 48 MiB this test uses", dev);
    nt_max_transfer = (size_t)t_get_int(b, "max-transfer");
    test_integrity(b, 2);
    test_integrity(b, 1);
    test_write_zeroes_discard(b);
    test_buf_alignment(b);
    test_refused(b);
    test_completion_fd(b);
    test_timeout(b);
    /* a queue added after start works like the others */
    CHECK_RET(blkio_add_queue(b), 2);
    {
        struct blkioq *q = blkio_get_queue(b, 2);
        uint8_t *buf = nt_alloc(4096);
        blkioq_read(q, 4096, buf, 4096, NULL, 0);
        CHECK_RET(t_wait(q, NULL), 0);
        CHECK(t_verify_pattern(buf, 4096, 4096, 1));
        free(buf);
    }
    blkio_destroy(&b);
    test_read_only(dev);
    test_mem_region(dev, false);
    test_mem_region(dev, true);
    setenv("LIBBLKIO_URING_DECLINE", "2", 1);
    test_mem_region(dev, true);
    unsetenv("LIBBLKIO_URING_DECLINE");
    test_poll_queue(dev);
    return 0;
}
