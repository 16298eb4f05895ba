/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: nvme-io_uring request accounting at the edges: more requests
 * queued before one do_io than the io_uring CQ holds (every one completes
 * once, successfully), long chained write zeroes on a tiny ring, a
 * refused zero-length request wakes a completion-fd waiter, a blocking do_io is not
 * interrupted by signals, and destroying an instance with requests in
 * flight returns, and a max-transfer read or write whose buffer starts
 * inside a page (buf-alignment is 4) succeeds.
 * Usage: test-nvme-edges [/dev/ngXnY] (default $BLKIO_VM_NVME).
 */
#include <poll.h>
#include <signal.h>
#include <sys/time.h>

#include "nvme-util.h"

#define NE_BLOCK 4096
#define NE_MANY  600    /* far more than the CQ of a 4-entry ring (8) */

static struct blkio *ne_open(const char *dev, int num_entries)
{
    struct blkio *b = NULL;

    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(blkio_set_int(b, "num-entries", num_entries), 0);
    CHECK_RET(blkio_start(b), 0);
    return b;
}

/* Queue NE_MANY writes, then NE_MANY reads, each set in one go, and reap
 * with a single do_io: each user_data comes back exactly once with 0. */
static void test_many(const char *dev)
{
    struct blkio *b = ne_open(dev, 4);
    struct blkioq *q = blkio_get_queue(b, 0);
    uint8_t *buf = nt_alloc((size_t)NE_MANY * NE_BLOCK);
    struct blkio_completion *c = calloc(NE_MANY, sizeof(*c));
    uint8_t seen[NE_MANY];
    struct timespec t = { .tv_sec = 60 };

    CHECK(c);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < NE_MANY; i++) {
            uint8_t *p = buf + i * NE_BLOCK;
            uint64_t off = (uint64_t)i * NE_BLOCK;

            if (pass == 0) {
                memset(p, (int)(i * 7 + 1), NE_BLOCK);
                blkioq_write(q, off, p, NE_BLOCK, (void *)(i + 1), 0);
            } else {
                memset(p, 0, NE_BLOCK);
                blkioq_read(q, off, p, NE_BLOCK, (void *)(i + 1), 0);
            }
        }
        memset(seen, 0, sizeof(seen));
        CHECK_RET(blkioq_do_io(q, c, NE_MANY, NE_MANY, &t), NE_MANY);
        for (size_t i = 0; i < NE_MANY; i++) {
            uintptr_t u = (uintptr_t)c[i].user_data;

            if (c[i].ret != 0)
                T_FAIL("pass %d: request %lu failed with %d (%s)", pass,
                       (unsigned long)u, c[i].ret,
                       c[i].error_msg ? c[i].error_msg : "no message");
            CHECK(u >= 1 && u <= NE_MANY && !seen[u - 1]);
            seen[u - 1] = 1;
        }
    }
    for (size_t i = 0; i < NE_MANY; i++) {
        for (size_t k = 0; k < NE_BLOCK; k++) {
            if (buf[i * NE_BLOCK + k] != (uint8_t)(i * 7 + 1))
                T_FAIL("block %zu byte %zu reads back wrong", i, k);
        }
    }
    /* Nothing left over. */
    CHECK_RET(blkioq_do_io(q, c, 0, NE_MANY, NULL), 0);
    blkio_destroy(&b);
    free(c);
    free(buf);
}

/* Write zeroes of several commands each (chained), many at once on the
 * smallest ring, each with FUA: all succeed and the range reads zero. */
static void test_chained(const char *dev)
{
    struct blkio *b = ne_open(dev, 1);
    struct blkioq *q = blkio_get_queue(b, 0);
    uint64_t wz = t_get_u64(b, "max-write-zeroes-len");
    uint64_t len = wz && wz < (1u << 20) ? wz * 3 : 3u << 20;
    uint64_t mt = (uint64_t)t_get_int(b, "max-transfer");
    uint8_t *buf = nt_alloc(len);
    struct blkio_completion c[16];
    struct timespec t = { .tv_sec = 60 };

    if (len * 16 > (128ull << 20) - (16ull << 20))
        len = 1u << 20;
    for (int i = 0; i < 16; i++)
        blkioq_write_zeroes(q, (16ull << 20) + (uint64_t)i * len, len,
                            NULL, BLKIO_REQ_FUA);
    CHECK_RET(blkioq_do_io(q, c, 16, 16, &t), 16);
    for (int i = 0; i < 16; i++)
        CHECK_RET(c[i].ret, 0);
    for (uint64_t off = 0; off < len; off += mt) {
        uint64_t n = len - off < mt ? len - off : mt;

        blkioq_read(q, (16ull << 20) + off, buf + off, n, NULL, 0);
        CHECK_RET(t_wait(q, NULL), 0);
    }
    for (uint64_t k = 0; k < len; k++)
        if (buf[k])
            T_FAIL("byte %llu after write zeroes is %u",
                   (unsigned long long)k, buf[k]);
    blkio_destroy(&b);
    free(buf);
}

/* A request the driver refuses (length 0: -EINVAL, as with libblkio 1.5)
 * completes without the device; an event-driven caller still hears about
 * it on the completion fd. */
static void test_zero_length_wakes(const char *dev)
{
    struct blkio *b = ne_open(dev, 8);
    struct blkioq *q = blkio_get_queue(b, 0);
    int fd = blkioq_get_completion_fd(q);
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    struct blkio_completion c;
    uint8_t dummy[4096];
    uint64_t cnt;

    CHECK(fd >= 0);
    blkioq_set_completion_fd_enabled(q, true);
    blkioq_read(q, 0, dummy, 0, (void *)1, 0);
    CHECK_RET(blkioq_do_io(q, NULL, 0, 0, NULL), 0);
    if (poll(&pfd, 1, 2000) != 1)
        T_FAIL("zero-length read: completion fd not signalled");
    CHECK(read(fd, &cnt, sizeof(cnt)) == sizeof(cnt));
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, NULL), 1);
    CHECK_RET(c.ret, -EINVAL);
    CHECK(c.user_data == (void *)1);
    blkio_destroy(&b);
}

static volatile sig_atomic_t ne_alarms;

static void ne_on_alarm(int sig)
{
    (void)sig;
    ne_alarms++;
}

/* blkioq_do_io() (not the _interruptible variant) must not give up with
 * -EINTR when a signal handler runs during its wait. */
static void test_signals(const char *dev)
{
    struct blkio *b = ne_open(dev, 64);
    struct blkioq *q = blkio_get_queue(b, 0);
    size_t len = 256 * 1024;
    uint8_t *buf = nt_alloc(len * 32);
    struct blkio_completion c[32];
    struct sigaction sa = { .sa_handler = ne_on_alarm };
    struct itimerval it = {
        .it_interval = { .tv_usec = 200 },
        .it_value = { .tv_usec = 200 },
    };

    if ((size_t)t_get_int(b, "max-transfer") < len)
        len = (size_t)t_get_int(b, "max-transfer");
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 32; i++)
            blkioq_read(q, (uint64_t)i * len, buf + (size_t)i * len, len,
                        NULL, 0);
        CHECK_RET(blkioq_do_io(q, c, 32, 32, NULL), 32);
        for (int i = 0; i < 32; i++)
            CHECK_RET(c[i].ret, 0);
    }
    memset(&it, 0, sizeof(it));
    setitimer(ITIMER_REAL, &it, NULL);
    printf("%d signals arrived during the reads\n", (int)ne_alarms);
    blkio_destroy(&b);
    free(buf);
}

/* Destroying an instance with commands on the device (discards, report
 * buffers the device writes into) waits for them rather than freeing the
 * memory under the device; it must return. */
static void test_destroy_in_flight(const char *dev)
{
    struct blkio *b = ne_open(dev, 16);
    struct blkioq *q = blkio_get_queue(b, 0);
    uint8_t *buf = nt_alloc(64 * 4096);

    for (int i = 0; i < 64; i++)
        blkioq_read(q, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    if (t_get_u64(b, "max-discard-len"))
        blkioq_discard(q, 32ull << 20, 1 << 20, NULL, 0);
    CHECK_RET(blkioq_do_io(q, NULL, 0, 0, NULL), 0);
    blkio_destroy(&b);
    free(buf);
}

/* max-transfer bytes from a buffer 4 bytes into a page (buf-alignment is
 * 4): the kernel maps a page more than the length, one more than
 * max-segments on QEMU's NVMe, and the request must still succeed. */
static void test_unaligned_max_transfer(const char *dev)
{
    struct blkio *b = ne_open(dev, 8);
    struct blkioq *q = blkio_get_queue(b, 0);
    size_t mt = (size_t)t_get_int(b, "max-transfer");
    uint8_t *page = nt_alloc(mt + 2 * NE_BLOCK);
    uint8_t *buf = page + 4;

    CHECK(t_get_int(b, "buf-alignment") <= 4);
    for (size_t k = 0; k < mt; k++)
        buf[k] = (uint8_t)(k * 13 + 5);
    blkioq_write(q, 32ull << 20, buf, mt, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    memset(buf, 0, mt);
    blkioq_read(q, 32ull << 20, buf, mt, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    for (size_t k = 0; k < mt; k++)
        if (buf[k] != (uint8_t)(k * 13 + 5))
            T_FAIL("byte %zu of an unaligned max-transfer read is wrong", k);
    blkio_destroy(&b);
    free(page);
}

int main(int argc, char **argv)
{
    const char *dev = nt_device(argc, argv, "BLKIO_VM_NVME", "/dev/ng0n1");

    if (geteuid() != 0)
        t_skip("nvme-io_uring needs CAP_SYS_ADMIN (run as root)");
    test_zero_length_wakes(dev);
    test_many(dev);
    test_chained(dev);
    test_signals(dev);
    test_destroy_in_flight(dev);
    test_unaligned_max_transfer(dev);
    return 0;
}
