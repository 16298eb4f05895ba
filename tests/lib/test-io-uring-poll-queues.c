/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: poll queues.  A buffered file never supports them: starting
 * with num-poll-queues=1 fails with -EINVAL and blkio_add_poll_queue() with
 * -ENOTSUP.  With direct=true they are used when the device under the file
 * can poll (queue/io_poll in sysfs), and then the whole poll-queue
 * exercise below runs; otherwise this part is skipped.
 *
 * Usage: test-io-uring-poll-queues [DEVICE]
 * With a DEVICE (or $BLKIO_IO_URING_POLL_DEV), a block device that can poll
 * (an NVMe namespace whose driver has poll queues: the test VM's nvme suite
 * runs it this way through tests/nvme/test-io-uring-poll.sh), only the
 * exercise runs, on that device, and a device that cannot poll fails.
 * The exercise overwrites 4 MiB in the middle of the device.
 *
 * The exercise, on one regular queue and two IOPOLL poll queues, with
 * num-entries=16 so that most requests wait in the driver's backlog:
 *  - core rules: a poll queue has no completion fd (-1) and enabling it
 *    changes nothing; blkioq_do_io_interruptible() works (as in libblkio 1.5);
 *  - random data written in 64 requests (plain, vectored, FUA) reaped by one
 *    blocking do_io(min=64) on poll queue 0 (the kernel polls), read back in
 *    128 pieces on poll queue 1 by do_io(min=0) loops, then 256 lone
 *    reads, each waited for by a blocking do_io(min=1);
 *  - both poll queues in flight at once (writes on one, reads on the
 *    other), reaped with a timeout, then everything read back through the
 *    regular (interrupt-driven) queue;
 *  - flush, write zeroes and discard on a poll queue fail with -ENOTSUP and
 *    an error message, and leave the queue usable; on the regular queue
 *    they work;
 *  - a poll queue added after start works and can be removed;
 *  - do_io with a 1 us timeout on a poll queue: -ETIME (or all done), and
 *    later calls return every request;
 *  - blkio_destroy() with reads in flight on a poll queue returns, and no
 *    read lands in its buffer afterwards;
 *  - a 1-entry IOPOLL ring as the only queue (everything via the backlog).
 */
#include <time.h>

#include "util.h"

#define REGION (4u << 20)
#define CHUNK (64u << 10)
#define NCHUNK (REGION / CHUNK)   /* 64 */
#define MAXC (2 * NCHUNK)         /* most requests in flight on one queue */

static uint8_t *shadow;           /* what the region must hold */
static uint8_t *wbuf, *rbuf;      /* write source, read destination */
static uint64_t base;             /* region offset on the device */
static uint32_t ra;               /* request-alignment */
static uint64_t seed = 0x9e3779b97f4a7c15ull;

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* A random multiple of ra in [lo, hi] (both multiples of ra, lo <= hi). */
static uint32_t rand_in(uint32_t lo, uint32_t hi)
{
    return lo + ra * (t_rand32(&seed) % ((hi - lo) / ra + 1));
}

/* The user_data of request k; completions index a seen[] array with it. */
#define TAG(k) ((void *)(uintptr_t)((k) + 1))
#define UNTAG(p) ((uintptr_t)(p) - 1)

/* Account one batch of completions: each tag once, each ret 0. */
static void account(const struct blkio_completion *c, int n, bool *seen,
                    int ntags, const char *what)
{
    for (int i = 0; i < n; i++) {
        uintptr_t k = UNTAG(c[i].user_data);

        if (k >= (uintptr_t)ntags || seen[k])
            T_FAIL("%s: unexpected or repeated user_data %p", what,
                   c[i].user_data);
        seen[k] = true;
        if (c[i].ret != 0)
            T_FAIL("%s: request %zu failed: %d (%s)", what, (size_t)k,
                   c[i].ret, c[i].error_msg ? c[i].error_msg : "no message");
    }
}

/* Reap `left` requests from q with do_io(min=0) loops (the caller's thread
 * polls), failing after 60 s. */
static int reap_min0(struct blkioq *q, int left, bool *seen, int ntags,
                     const char *what)
{
    struct blkio_completion c[MAXC];
    double end = now_s() + 60;
    int rounds = 0;

    while (left > 0) {
        int n = blkioq_do_io(q, c, 0, MAXC, NULL);

        if (n < 0 || n > left)
            T_FAIL("%s: do_io(min=0) returned %d with %d left (%s)", what,
                   n, left, blkio_get_error_msg());
        account(c, n, seen, ntags, what);
        left -= n;
        rounds++;
        if (now_s() > end)
            T_FAIL("%s: %d requests still in flight after 60 s", what, left);
    }
    return rounds;
}

/* Phase 1: every chunk written on pq by one request (plain, vectored with
 * three elements, or FUA), all in flight, one blocking do_io for all. */
static void write_all(struct blkioq *pq)
{
    static struct iovec iov[NCHUNK][3];
    struct blkio_completion c[NCHUNK];
    bool seen[NCHUNK] = { false };
    uint32_t order[NCHUNK];
    int n;

    t_fill_random(shadow, REGION, seed);
    memcpy(wbuf, shadow, REGION);
    t_shuffle(order, NCHUNK, t_rand32, &seed);
    for (uint32_t j = 0; j < NCHUNK; j++) {
        uint32_t i = order[j], a, b;
        uint8_t *p = wbuf + (size_t)i * CHUNK;
        uint64_t off = base + (uint64_t)i * CHUNK;

        switch (j % 4) {
        case 0:
        case 1:
            blkioq_write(pq, off, p, CHUNK, TAG(i), 0);
            break;
        case 2:
            a = rand_in(ra, CHUNK - 2 * ra);
            b = rand_in(a + ra, CHUNK - ra);
            iov[i][0] = (struct iovec){ p, a };
            iov[i][1] = (struct iovec){ p + a, b - a };
            iov[i][2] = (struct iovec){ p + b, CHUNK - b };
            blkioq_writev(pq, off, iov[i], 3, TAG(i), 0);
            break;
        default:
            blkioq_write(pq, off, p, CHUNK, TAG(i), BLKIO_REQ_FUA);
            break;
        }
    }
    /* min = all: io_uring_enter(GETEVENTS) polls the device in the kernel
     * until every request is done (most sit in the backlog at first). */
    n = blkioq_do_io(pq, c, NCHUNK, NCHUNK, NULL);
    if (n != NCHUNK)
        T_FAIL("blocking do_io(min=%d) on a poll queue returned %d (%s)",
               NCHUNK, n, blkio_get_error_msg());
    account(c, n, seen, NCHUNK, "poll queue writes");
}

/* Phase 2: read the region back on pq in two random pieces per chunk,
 * readv for every other chunk, reaped by do_io(min=0) loops. */
static void read_all_min0(struct blkioq *pq)
{
    static struct iovec iov[NCHUNK][2];
    bool seen[MAXC] = { false };
    uint32_t order[NCHUNK];
    int rounds;

    memset(rbuf, 0, REGION);
    t_shuffle(order, NCHUNK, t_rand32, &seed);
    for (uint32_t j = 0; j < NCHUNK; j++) {
        uint32_t i = order[j], a = rand_in(ra, CHUNK - ra);
        uint8_t *p = rbuf + (size_t)i * CHUNK;
        uint64_t off = base + (uint64_t)i * CHUNK;

        blkioq_read(pq, off, p, a, TAG(2 * i), 0);
        if (j % 2 && CHUNK - a >= 2 * ra) {
            uint32_t b = rand_in(ra, CHUNK - a - ra);

            iov[i][0] = (struct iovec){ p + a, b };
            iov[i][1] = (struct iovec){ p + a + b, CHUNK - a - b };
            blkioq_readv(pq, off + a, iov[i], 2, TAG(2 * i + 1), 0);
        } else {
            blkioq_read(pq, off + a, p + a, CHUNK - a, TAG(2 * i + 1), 0);
        }
    }
    rounds = reap_min0(pq, MAXC, seen, MAXC, "poll queue reads");
    printf("%d reads reaped in %d do_io(min=0) calls\n", MAXC, rounds);
    if (memcmp(rbuf, shadow, REGION) != 0)
        T_FAIL("data read on poll queue 1 differs from what poll queue 0 "
               "wrote");
}

/* Phase 2b: 256 reads of 4 KiB one at a time, each waited for by a
 * blocking do_io(min=1): the polling path of a lone request.  (Completed
 * by interrupt, each would raise one; tests/nvme/test-io-uring-poll.sh
 * counts them.) */
static void one_by_one(struct blkioq *pq)
{
    static uint8_t buf[4096] __attribute__((aligned(4096)));

    for (uint32_t i = 0; i < 256; i++) {
        uint64_t off = (uint64_t)(t_rand32(&seed) % (REGION / 4096)) * 4096;

        memset(buf, 0, sizeof(buf));
        blkioq_read(pq, base + off, buf, sizeof(buf), TAG(i), 0);
        check(ut_wait1(pq, TAG(i)) == 0);
        if (memcmp(buf, shadow + off, sizeof(buf)) != 0)
            T_FAIL("lone read %u at region offset %" PRIu64 " differs", i,
                   off);
    }
}

/* Phase 3: writes of new data to the even chunks on pq0 while pq1 reads
 * the odd ones; reaped alternately with a timeout (the IOPOLL ring is then
 * polled once per round), then the regular queue reads everything. */
static void both_queues(struct blkioq *pq0, struct blkioq *pq1,
                        struct blkioq *q)
{
    struct blkio_completion c[NCHUNK];
    bool wseen[NCHUNK] = { false }, rseen[NCHUNK] = { false };
    int wleft = NCHUNK / 2, rleft = NCHUNK / 2;
    double end = now_s() + 60;

    memset(rbuf, 0, REGION);
    for (uint32_t i = 0; i < NCHUNK; i += 2) {
        t_fill_random(wbuf + (size_t)i * CHUNK, CHUNK, seed + i);
        blkioq_write(pq0, base + (uint64_t)i * CHUNK,
                     wbuf + (size_t)i * CHUNK, CHUNK, TAG(i), 0);
        blkioq_read(pq1, base + (uint64_t)(i + 1) * CHUNK,
                    rbuf + (size_t)(i + 1) * CHUNK, CHUNK, TAG(i + 1), 0);
    }
    while (wleft > 0 || rleft > 0) {
        struct timespec t = { .tv_sec = 5 };
        int n;

        if (wleft > 0) {
            n = blkioq_do_io(pq0, c, 1, NCHUNK, &t);
            if (n < 1 || n > wleft)
                T_FAIL("do_io(min=1, 5 s) on poll queue 0 returned %d with "
                       "%d left (%s)", n, wleft, blkio_get_error_msg());
            account(c, n, wseen, NCHUNK, "concurrent writes");
            wleft -= n;
        }
        if (rleft > 0) {
            n = blkioq_do_io(pq1, c, 0, NCHUNK, &t);
            if (n < 0 || n > rleft)
                T_FAIL("do_io(min=0, 5 s) on poll queue 1 returned %d with "
                       "%d left (%s)", n, rleft, blkio_get_error_msg());
            account(c, n, rseen, NCHUNK, "concurrent reads");
            rleft -= n;
        }
        if (now_s() > end)
            T_FAIL("still %d writes and %d reads in flight after 60 s",
                   wleft, rleft);
    }
    for (uint32_t i = 1; i < NCHUNK; i += 2)
        if (memcmp(rbuf + (size_t)i * CHUNK, shadow + (size_t)i * CHUNK,
                   CHUNK) != 0)
            T_FAIL("chunk %u read on poll queue 1 next to writes on poll "
                   "queue 0 differs", i);

    /* The device now holds the new even chunks: read it all through the
     * regular queue. */
    for (uint32_t i = 0; i < NCHUNK; i += 2)
        memcpy(shadow + (size_t)i * CHUNK, wbuf + (size_t)i * CHUNK, CHUNK);
    memset(rbuf, 0, REGION);
    blkioq_read(q, base, rbuf, REGION, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    if (memcmp(rbuf, shadow, REGION) != 0)
        T_FAIL("the regular queue reads other data than the poll queues "
               "wrote");
}

/* Phase 4: what an IOPOLL ring cannot do fails, with a message, at once,
 * and the queue goes on working. */
static void unsupported(struct blkioq *pq)
{
    const char *msg;

    blkioq_flush(pq, NULL, 0);
    check(t_wait(pq, &msg) == -ENOTSUP);
    printf("flush on a poll queue: %s\n", msg);
    blkioq_write_zeroes(pq, base, CHUNK, NULL, 0);
    check(t_wait(pq, &msg) == -ENOTSUP);
    blkioq_write_zeroes(pq, base, CHUNK, NULL, BLKIO_REQ_NO_UNMAP);
    check(t_wait(pq, &msg) == -ENOTSUP);
    blkioq_discard(pq, base, CHUNK, NULL, 0);
    check(t_wait(pq, &msg) == -ENOTSUP);

    memset(rbuf, 0, CHUNK);
    blkioq_read(pq, base, rbuf, CHUNK, NULL, 0);
    check(t_wait(pq, NULL) == 0);
    check(memcmp(rbuf, shadow, CHUNK) == 0);
}

/* Phase 5: the regular queue next to the poll queues does the rest. */
static void regular(struct blkioq *q, struct blkioq *pq)
{
    blkioq_write_zeroes(q, base, CHUNK, NULL, 0);
    check(t_wait(q, NULL) == 0);
    blkioq_flush(q, NULL, 0);
    check(t_wait(q, NULL) == 0);
    blkioq_discard(q, base + CHUNK, CHUNK, NULL, 0);
    check(t_wait(q, NULL) == 0);
    memset(shadow, 0, CHUNK);

    memset(rbuf, 0xff, CHUNK);
    blkioq_read(pq, base, rbuf, CHUNK, NULL, 0);
    check(t_wait(pq, NULL) == 0);
    if (!t_is_zero(rbuf, CHUNK))
        T_FAIL("write zeroes on the regular queue not seen by a poll queue");
}

/* Phase 6: a poll queue added after start.  Its one 4 MiB read exceeds
 * what NVMe takes in one command: the kernel splits it and completes the
 * pieces by interrupt (it does not poll split bios), which the IOPOLL ring
 * reaps all the same. */
static void added(struct blkio *b)
{
    struct blkioq *pq;
    int idx = ok(blkio_add_poll_queue(b));

    check(idx == 2);
    pq = blkio_get_poll_queue(b, idx);
    check(pq != NULL);
    check(blkioq_get_completion_fd(pq) == -1);
    memset(rbuf, 0, REGION);
    blkioq_read(pq, base, rbuf, REGION, NULL, 0);
    check(t_wait(pq, NULL) == 0);
    check(memcmp(rbuf + 2 * CHUNK, shadow + 2 * CHUNK,
                 REGION - 2 * CHUNK) == 0);
    check(t_is_zero(rbuf, CHUNK));
    ok(blkio_remove_poll_queue(b, idx));
    check(blkio_get_poll_queue(b, idx) == NULL);
}

/* Phase 7: a deadline on a poll queue.  The IOPOLL ring ignores wait
 * timeouts, so the driver polls and watches the clock: with 1 us for all
 * 64 reads it (almost always) returns -ETIME with the timeout used up, and
 * nothing is lost: the next calls get all 64. */
static void deadline(struct blkioq *pq)
{
    struct blkio_completion c[NCHUNK];
    bool seen[NCHUNK] = { false };
    struct timespec t = { .tv_nsec = 1000 };
    const int all = (int)NCHUNK;
    int n, got = 0;

    memset(rbuf, 0, REGION);
    for (uint32_t i = 0; i < NCHUNK; i++)
        blkioq_read(pq, base + (uint64_t)i * CHUNK,
                    rbuf + (size_t)i * CHUNK, CHUNK, TAG(i), 0);
    n = blkioq_do_io(pq, c, all, all, &t);
    if (n == -ETIME) {
        check(t.tv_sec == 0 && t.tv_nsec == 0);
        printf("do_io(min=%d, 1 us) on a poll queue: -ETIME\n", all);
    } else if (n == all) {
        account(c, n, seen, all, "reads with a deadline");
        got = n;
    } else {
        T_FAIL("do_io(min=%d, 1 us) on a poll queue returned %d (%s)",
               all, n, blkio_get_error_msg());
    }
    while (got < all) {
        t = (struct timespec){ .tv_sec = 30 };
        n = blkioq_do_io(pq, c, all - got, all, &t);
        if (n != all - got)
            T_FAIL("do_io(min=%d, 30 s) on a poll queue returned %d (%s)",
                   all - got, n, blkio_get_error_msg());
        account(c, n, seen, all, "reads after -ETIME");
        got += n;
    }
    check(memcmp(rbuf + 2 * CHUNK, shadow + 2 * CHUNK,
                 REGION - 2 * CHUNK) == 0);
}

/* The smallest ring (num-entries 1: one SQE, two CQEs), one poll queue and
 * no regular queue: 32 writes and 32 reads pass through the backlog. */
static void tiny_ring(const char *path)
{
    struct blkio *b = ut_connect_direct(path);
    struct blkio_completion c[32];
    bool seen[32] = { false };
    struct blkioq *pq;
    int n;

    ok(blkio_set_int(b, "num-entries", 1));
    ok(blkio_set_int(b, "num-queues", 0));
    ok(blkio_set_int(b, "num-poll-queues", 1));
    ok(blkio_start(b));
    check(blkio_get_queue(b, 0) == NULL);
    pq = blkio_get_poll_queue(b, 0);
    check(pq != NULL);
    t_fill_random(wbuf, 32 * 4096, seed + 1);
    for (int i = 0; i < 32; i++)
        blkioq_write(pq, base + (uint64_t)i * 8192, wbuf + i * 4096, 4096,
                     TAG(i), 0);
    n = blkioq_do_io(pq, c, 32, 32, NULL);
    check(n == 32);
    account(c, n, seen, 32, "writes through a 1-entry IOPOLL ring");
    memset(seen, 0, sizeof(seen));
    memset(rbuf, 0, 32 * 4096);
    for (int i = 0; i < 32; i++)
        blkioq_read(pq, base + (uint64_t)i * 8192, rbuf + i * 4096, 4096,
                    TAG(i), 0);
    reap_min0(pq, 32, seen, 32, "reads through a 1-entry IOPOLL ring");
    check(memcmp(rbuf, wbuf, 32 * 4096) == 0);
    blkio_destroy(&b);
}

static void exercise(const char *path, bool must_poll)
{
    struct blkio *b = ut_connect_direct(path);
    struct blkioq *q, *pq0, *pq1;
    struct timespec t;
    uint64_t cap;
    bool poll;
    int ba, align;
    double t0;

    ok(blkio_get_bool(b, "supports-poll-queues", &poll));
    if (!poll) {
        ok(blkio_set_int(b, "num-poll-queues", 1));
        err(blkio_start(b), -EINVAL);
        blkio_destroy(&b);
        if (must_poll)
            T_FAIL("supports-poll-queues is false on %s (is queue/io_poll "
                   "1 in sysfs?)", path);
        t_skip("the device under %s has no poll queues (queue/io_poll is "
               "0); see io-uring-iopoll-forced", path);
    }
    ok(blkio_get_uint64(b, "capacity", &cap));
    ok(blkio_get_int(b, "request-alignment", &align));
    ok(blkio_get_int(b, "buf-alignment", &ba));
    check(align > 0 && CHUNK % align == 0 && CHUNK / align >= 4);
    check(ba > 0 && 4096 % ba == 0);
    ra = (uint32_t)align;
    if (cap < REGION)
        T_FAIL("%s has %" PRIu64 " bytes, fewer than %u", path, cap, REGION);
    base = cap / 2 / CHUNK * CHUNK;
    if (base + REGION > cap)
        base = 0;

    ok(blkio_set_int(b, "num-entries", 16));
    ok(blkio_set_int(b, "num-queues", 1));
    ok(blkio_set_int(b, "num-poll-queues", 2));
    ok(blkio_start(b));
    q = blkio_get_queue(b, 0);
    pq0 = blkio_get_poll_queue(b, 0);
    pq1 = blkio_get_poll_queue(b, 1);
    check(q && pq0 && pq1 && pq0 != pq1 && q != pq0 && q != pq1);
    check(blkio_get_queue(b, 1) == NULL);
    check(blkio_get_poll_queue(b, 2) == NULL);

    /* The core's rules for poll queues. */
    check(blkioq_get_completion_fd(q) >= 0);
    check(blkioq_get_completion_fd(pq0) == -1);
    blkioq_set_completion_fd_enabled(pq0, true);
    check(blkioq_get_completion_fd(pq0) == -1);
    check(blkioq_get_completion_fd(pq1) == -1);
    ok(blkioq_do_io_interruptible(pq0, NULL, 0, 0, NULL, NULL));  /* as libblkio 1.5 */
    /* Nothing in flight: min 0 returns at once, min 1 is refused. */
    t = (struct timespec){ .tv_nsec = 1000 };
    check(blkioq_do_io(pq1, NULL, 0, 0, &t) == 0);
    err(blkioq_do_io(pq1, NULL, 1, 1, NULL), -EINVAL);

    shadow = t_aligned_alloc(4096, REGION);
    wbuf = t_aligned_alloc(4096, REGION);
    rbuf = t_aligned_alloc(4096, REGION);

    t0 = now_s();
    write_all(pq0);
    read_all_min0(pq1);
    one_by_one(pq0);
    both_queues(pq0, pq1, q);
    unsupported(pq1);
    regular(q, pq0);
    added(b);
    deadline(pq0);
    printf("poll queue I/O on %s (offset %" PRIu64 ", request-alignment "
           "%u): %.2f s\n", path, base, ra, now_s() - t0);

    /* Teardown with polled reads in flight: the driver polls them to
     * completion (or cancels them) before the buffers go. */
    for (uint32_t i = 0; i < NCHUNK; i++)
        blkioq_read(pq0, base + (uint64_t)i * CHUNK,
                    rbuf + (size_t)i * CHUNK, CHUNK, NULL, 0);
    memset(rbuf, 0xa5, REGION);
    check(blkioq_do_io(pq0, NULL, 0, 0, NULL) == 0);
    t0 = now_s();
    blkio_destroy(&b);
    printf("blkio_destroy with poll queue reads in flight: %.2f s\n",
           now_s() - t0);
    /* Nothing may land in the buffers after destroy returned. */
    memcpy(wbuf, rbuf, REGION);
    usleep(100 * 1000);
    if (memcmp(wbuf, rbuf, REGION) != 0)
        T_FAIL("a read completed into its buffer after blkio_destroy()");

    tiny_ring(path);
    free(shadow);
    free(wbuf);
    free(rbuf);
}

int main(int argc, char **argv)
{
    const char *dev = argc > 1 ? argv[1] : getenv("BLKIO_IO_URING_POLL_DEV");
    const char *path;
    struct blkio *b;
    bool poll;

    if (dev && *dev) {
        if (access(dev, R_OK | W_OK) != 0)
            T_FAIL("%s: %s", dev, strerror(errno));
        exercise(dev, true);
        return 0;
    }

    path = ut_temp_file(8u << 20);
    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", path));
    ok(blkio_connect(b));
    ok(blkio_get_bool(b, "supports-poll-queues", &poll));
    check(!poll);
    ok(blkio_set_int(b, "num-poll-queues", 1));
    err(blkio_start(b), -EINVAL);
    ok(blkio_set_int(b, "num-poll-queues", 0));
    ok(blkio_start(b));
    err(blkio_add_poll_queue(b), -EINVAL);   /* libblkio's code */
    check(blkio_get_poll_queue(b, 0) == NULL);
    blkio_destroy(&b);

    exercise(path, false);
    return 0;
}
