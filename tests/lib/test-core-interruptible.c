/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: blkioq_do_io_interruptible().  With SIGUSR1 blocked and a
 * mask that unblocks it, a signal sent while waiting for a request that
 * does not complete (a read held back by the test's FUSE server) returns
 * -EINTR, runs the handler and restores the caller's mask; a signal the
 * mask keeps blocked does not interrupt; without a signal it behaves like
 * blkioq_do_io().
 */
#include <pthread.h>
#include <signal.h>

#include "core-fuse.h"

static volatile sig_atomic_t got_signal;

static void on_sigusr1(int sig)
{
    (void)sig;
    got_signal = 1;
}

struct killer {
    pthread_t target;
    int delay_ms;
};

static void *killer_main(void *arg)
{
    struct killer *k = arg;

    usleep((useconds_t)k->delay_ms * 1000);
    pthread_kill(k->target, SIGUSR1);
    return NULL;
}

int main(void)
{
    const char *path = cu_temp_file("disk.img", 1 << 20, 0x44);
    struct blkio *b;
    struct blkioq *q;
    struct blkio_completion c;
    struct sigaction sa = { .sa_handler = on_sigusr1 };  /* no SA_RESTART */
    sigset_t block, waitmask, now;
    struct timespec t;
    static char buf[4096];
    char why[256];
    struct cu_fuse *f;
    struct killer k;
    pthread_t th;
    int ret;

    CHECK_RET(sigaction(SIGUSR1, &sa, NULL), 0);
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    CHECK_RET(pthread_sigmask(SIG_BLOCK, &block, NULL), 0);
    CHECK_RET(pthread_sigmask(SIG_BLOCK, NULL, &waitmask), 0);
    sigdelset(&waitmask, SIGUSR1);

    /* No signal: an ordinary wait. */
    b = cu_io_uring(path, CU_STARTED);
    q = blkio_get_queue(b, 0);
    blkioq_read(q, 0, buf, sizeof(buf), buf, 0);
    t = (struct timespec){ .tv_sec = 10 };
    CHECK_RET(blkioq_do_io_interruptible(q, &c, 1, 1, &t, &waitmask), 1);
    CHECK_RET(c.ret, 0);
    CHECK(c.user_data == buf && buf[0] == 0x44);
    CHECK_RET(blkioq_do_io_interruptible(q, &c, 1, 1, NULL, &waitmask),
              -EINVAL);
    blkio_destroy(&b);

    /* A wait that only a signal ends: a read the FUSE server holds. */
    f = cu_fuse_start(1 << 20, why, sizeof(why));
    if (!f)
        t_skip("no request that blocks: %s", why);
    b = cu_io_uring(f->file, CU_STARTED);
    q = blkio_get_queue(b, 0);
    cu_fuse_hold(f);
    blkioq_read(q, 0, buf, 512, buf, 0);
    t = (struct timespec){ 0, 50 * 1000000 };
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, &t), -ETIME);
    cu_fuse_wait_held(f, 1);

    if (cu_under_valgrind()) {
        cu_fuse_release(f);
        c = cu_wait_one(q);
        CHECK_RET(c.ret, 0);
        blkio_destroy(&b);
        cu_fuse_stop(f);
        t_skip("under valgrind, signals cannot interrupt io_uring_enter() "
               "waits (the rest passed)");
    }

    k.target = pthread_self();
    k.delay_ms = 200;
    CHECK_RET(pthread_create(&th, NULL, killer_main, &k), 0);
    t = (struct timespec){ .tv_sec = 5 };
    ret = blkioq_do_io_interruptible(q, &c, 1, 1, &t, &waitmask);
    CHECK_RET(pthread_join(th, NULL), 0);
    CHECK_RET(ret, -EINTR);
    CHECK(got_signal);
    CHECK(blkio_get_error_msg()[0] != '\0');
    /* Time left was reported, and the mask is ours again. */
    CHECK(t.tv_sec < 5 && t.tv_sec >= 2);
    CHECK_RET(pthread_sigmask(SIG_BLOCK, NULL, &now), 0);
    CHECK(sigismember(&now, SIGUSR1));

    /* A signal that is blocked during the wait does not interrupt it. */
    got_signal = 0;
    k.delay_ms = 50;
    CHECK_RET(pthread_create(&th, NULL, killer_main, &k), 0);
    t = (struct timespec){ 0, 400 * 1000000 };
    ret = blkioq_do_io_interruptible(q, &c, 1, 1, &t, &now);
    CHECK_RET(pthread_join(th, NULL), 0);
    CHECK_RET(ret, -ETIME);
    CHECK(!got_signal);
    /* Deliver it now that we unblock it, so it does not linger. */
    CHECK_RET(pthread_sigmask(SIG_UNBLOCK, &block, NULL), 0);
    CHECK(got_signal);

    /* The request is still in flight and completes normally. */
    cu_fuse_release(f);
    c = cu_wait_one(q);
    CHECK_RET(c.ret, 0);
    CHECK(c.user_data == buf && buf[0] == CU_FUSE_FILL);
    blkio_destroy(&b);
    cu_fuse_stop(f);
    return T_EXIT_PASS;
}
