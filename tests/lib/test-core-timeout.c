/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: blkioq_do_io() timeouts.  The timespec is updated with the
 * time left whether the call succeeds or fails; a wait for a request that
 * does not complete in time returns -ETIME with the timeout used up.  The
 * never-completing request is a read from a FIFO nobody writes to; drivers
 * that refuse FIFOs make that part skip.
 */
#include <sys/stat.h>

#include "core-util.h"

static int64_t ts_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static int64_t now_ns(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return ts_ns(&t);
}

static void check_normalized(const struct timespec *t)
{
    CHECK(t->tv_sec >= 0);
    CHECK(t->tv_nsec >= 0 && t->tv_nsec < 1000000000);
}

/* Returns true when the FIFO case ran, false when it had to be skipped. */
static bool fifo_case(void)
{
    char fifo[300];
    struct blkio *b;
    struct blkioq *q;
    struct blkio_completion c;
    struct timespec t;
    static char buf[4096];
    int64_t start, elapsed;
    int ret, wfd;

    snprintf(fifo, sizeof(fifo), "%s/fifo", cu_dir());
    CHECK_RET(mkfifo(fifo, 0600), 0);

    b = cu_create("io_uring");
    CHECK_RET(blkio_set_str(b, "path", fifo), 0);
    ret = blkio_connect(b);
    if (ret < 0) {
        printf("note: io_uring driver refuses a FIFO (%s: %s)\n",
               strerror(-ret), blkio_get_error_msg());
        blkio_destroy(&b);
        return false;
    }
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_queue(b, 0);
    CHECK(q != NULL);

    /* Nothing to wait for yet: a timeout does not matter. */
    blkioq_read(q, 0, buf, 1, buf, 0);
    t = (struct timespec){ .tv_sec = 0, .tv_nsec = 300 * 1000000 };
    start = now_ns();
    ret = blkioq_do_io(q, &c, 1, 1, &t);
    elapsed = now_ns() - start;
    if (ret == 1) {
        printf("note: a read from a FIFO completed at once (ret %d: %s)\n",
               c.ret, c.error_msg ? c.error_msg : "");
        blkio_destroy(&b);
        return false;
    }
    CHECK_RET(ret, -ETIME);
    CHECK(blkio_get_error_msg()[0] != '\0');
    check_normalized(&t);
    /* All of the time was used, and it took about that long. */
    CHECK(ts_ns(&t) < 50 * 1000000);
    CHECK(elapsed >= 250 * 1000000);
    CHECK(elapsed < 5000LL * 1000000);

    /* A zero timeout polls once and reports -ETIME at once. */
    t = (struct timespec){ 0, 0 };
    start = now_ns();
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, &t), -ETIME);
    CHECK(now_ns() - start < 1000LL * 1000000);
    CHECK(t.tv_sec == 0 && t.tv_nsec == 0);

    /* The request is still in flight: min 0 returns nothing. */
    CHECK_RET(blkioq_do_io(q, &c, 0, 1, NULL), 0);

    /* Feed the FIFO; the read completes and the time left is reported. */
    wfd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    CHECK(wfd >= 0);
    CHECK_RET(write(wfd, "x", 1), 1);
    t = (struct timespec){ .tv_sec = 10 };
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, &t), 1);
    CHECK_RET(c.ret, 0);
    CHECK(c.user_data == buf);
    CHECK(buf[0] == 'x');
    check_normalized(&t);
    CHECK(ts_ns(&t) > 5000LL * 1000000 && ts_ns(&t) <= 10000LL * 1000000);
    close(wfd);
    blkio_destroy(&b);
    return true;
}

int main(void)
{
    const char *path = cu_temp_file("disk.img", 1 << 20, 0x33);
    struct blkio *b = cu_io_uring(path, CU_STARTED);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_completion c;
    struct timespec t;
    static char buf[4096];

    /* Success: the elapsed time is subtracted, never below 0. */
    blkioq_read(q, 0, buf, sizeof(buf), NULL, 0);
    t = (struct timespec){ .tv_sec = 5, .tv_nsec = 0 };
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, &t), 1);
    CHECK_RET(c.ret, 0);
    check_normalized(&t);
    CHECK(ts_ns(&t) <= 5000LL * 1000000);
    CHECK(ts_ns(&t) > 4000LL * 1000000);

    /* min 0 with a timeout: returns at once and updates it too. */
    t = (struct timespec){ .tv_sec = 1, .tv_nsec = 999999999 };
    CHECK_RET(blkioq_do_io(q, &c, 0, 1, &t), 0);
    check_normalized(&t);
    CHECK(ts_ns(&t) <= 2000LL * 1000000 && ts_ns(&t) > 1000LL * 1000000);

    /* An already expired timeout still returns completions that are
     * there (waiting for them takes no time). */
    blkioq_read(q, 0, buf, sizeof(buf), NULL, 0);
    t = (struct timespec){ .tv_sec = 10 };
    CHECK_RET(blkioq_do_io(q, NULL, 0, 0, &t), 0);   /* submit */
    usleep(100000);
    t = (struct timespec){ 0, 0 };
    {
        int n = blkioq_do_io(q, &c, 0, 1, &t);
        if (n == 0) {
            t = (struct timespec){ .tv_sec = 10 };
            n = blkioq_do_io(q, &c, 1, 1, &t);
        }
        CHECK_RET(n, 1);
    }
    blkio_destroy(&b);

    if (!fifo_case())
        cu_skip("the -ETIME case needs a request that never completes; "
                "a FIFO does not give one with this driver");
    return T_EXIT_PASS;
}
