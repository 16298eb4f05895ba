/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: blkioq_do_io() timeouts.  The timespec is updated with the
 * time left whether the call succeeds or fails; a wait for a request that
 * does not complete in time returns -ETIME with the timeout used up.  The
 * request that does not complete is a read of a file on a FUSE file system
 * served by the test itself (core-fuse.h), which holds the answer back.
 */
#include "core-fuse.h"

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

/* Returns true when the blocked-read case ran, false when it could not. */
static bool blocked_case(void)
{
    struct cu_fuse *f;
    struct blkio *b;
    struct blkioq *q;
    struct blkio_completion c;
    struct timespec t;
    static char buf[4096];
    char why[256];
    int64_t start, elapsed;
    int ret;

    f = cu_fuse_start(1 << 20, why, sizeof(why));
    if (!f) {
        printf("note: no FUSE file system for a read that blocks: %s\n",
               why);
        return false;
    }
    b = cu_io_uring(f->file, CU_STARTED);
    q = blkio_get_queue(b, 0);
    CHECK(q != NULL);

    /* Reads go through while not held. */
    blkioq_read(q, 0, buf, 512, NULL, 0);
    c = cu_wait_one(q);
    CHECK_RET(c.ret, 0);
    CHECK(buf[0] == CU_FUSE_FILL);

    cu_fuse_hold(f);
    memset(buf, 0, sizeof(buf));
    blkioq_read(q, 4096, buf, sizeof(buf), buf, 0);
    t = (struct timespec){ .tv_sec = 0, .tv_nsec = 300 * 1000000 };
    start = now_ns();
    ret = blkioq_do_io(q, &c, 1, 1, &t);
    elapsed = now_ns() - start;
    if (ret == 1)
        T_FAIL("a held read completed (ret %d)", c.ret);
    CHECK_RET(ret, -ETIME);
    CHECK(blkio_get_error_msg()[0] != '\0');
    check_normalized(&t);
    /* All of the time was used, and it took about that long. */
    CHECK(ts_ns(&t) < 50 * 1000000);
    CHECK(elapsed >= 250 * 1000000);
    CHECK(elapsed < 5000LL * 1000000);
    cu_fuse_wait_held(f, 1);

    /* A zero timeout does not wait. */
    t = (struct timespec){ 0, 0 };
    start = now_ns();
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, &t), -ETIME);
    CHECK(now_ns() - start < 1000LL * 1000000);
    CHECK(t.tv_sec == 0 && t.tv_nsec == 0);

    /* The request is still in flight: min 0 returns nothing, min 2 is
     * more than in flight. */
    CHECK_RET(blkioq_do_io(q, &c, 0, 1, NULL), 0);
    CHECK_RET(blkioq_do_io(q, &c, 2, 2, NULL), -EINVAL);

    /* Let it complete; the time left is reported. */
    cu_fuse_release(f);
    t = (struct timespec){ .tv_sec = 10 };
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, &t), 1);
    CHECK_RET(c.ret, 0);
    CHECK(c.user_data == buf);
    CHECK(buf[0] == CU_FUSE_FILL && buf[4095] == CU_FUSE_FILL);
    check_normalized(&t);
    CHECK(ts_ns(&t) > 5000LL * 1000000 && ts_ns(&t) <= 10000LL * 1000000);

    /* Two in flight, one held: min 2 times out, and the one that did
     * complete (a flush: FUSE answers fsync at once) is not lost. */
    cu_fuse_hold(f);
    blkioq_read(q, 8192, buf, 512, (void *)1, 0);   /* a page not cached */
    blkioq_flush(q, (void *)2, 0);
    t = (struct timespec){ 0, 200 * 1000000 };
    CHECK_RET(blkioq_do_io(q, &c, 2, 2, &t), -ETIME);
    c = cu_wait_one(q);
    CHECK(c.user_data == (void *)2);
    CHECK_RET(c.ret, 0);
    t = (struct timespec){ 0, 100 * 1000000 };
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, &t), -ETIME);
    cu_fuse_release(f);
    c = cu_wait_one(q);
    CHECK(c.user_data == (void *)1);
    CHECK_RET(c.ret, 0);

    blkio_destroy(&b);
    cu_fuse_stop(f);
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

    if (!blocked_case())
        t_skip("the -ETIME case needs a read that does not complete "
               "(a FUSE file); the rest passed");
    return T_EXIT_PASS;
}
