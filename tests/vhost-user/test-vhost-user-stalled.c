/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: a stalled backend (SIGSTOP).  Waits end at their deadline
 * with -ETIME on regular and poll queues, blkioq_do_io_interruptible()
 * returns -EINTR when a signal it unblocks arrives (or, given no set, any
 * signal the thread takes), blkioq_do_io() is not ended by a signal, and
 * once the backend
 * continues (SIGCONT) the requests complete normally.  Then a second
 * instance, with a request in flight and a region mapped, is destroyed
 * while the backend is stopped: blkio_destroy() returns within about a
 * second (the teardown's shorter deadline), not after the 10 s one.
 */
#include <pthread.h>
#include <signal.h>

#include "vu-util.h"

static pthread_t main_thread;

static void on_usr1(int sig)
{
    (void)sig;
}

static void *send_signal(void *arg)
{
    (void)arg;
    usleep(100 * 1000);
    pthread_kill(main_thread, SIGUSR1);
    return NULL;
}

static double elapsed(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (t.tv_nsec - t0->tv_nsec) / 1e9;
}

int main(void)
{
    pid_t pid = (pid_t)vu_env_u64("VU_QSD_PID");
    struct blkio *b = vu_start(1, 1);
    struct blkioq *q = blkio_get_queue(b, 0), *pq = blkio_get_poll_queue(b, 0);
    struct blkio_mem_region r;
    uint8_t *buf = t_region(b, 65536, &r);
    struct blkio_completion c[2];
    struct timespec t0, to;
    sigset_t block, unblocked;
    pthread_t th;
    double s;

    CHECK(pid > 0 && q && pq);
    signal(SIGUSR1, on_usr1);
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &block, &unblocked);
    sigdelset(&unblocked, SIGUSR1);
    main_thread = pthread_self();

    CHECK(kill(pid, SIGSTOP) == 0);
    blkioq_read(q, 0, buf, 4096, NULL, 0);
    blkioq_read(pq, 4096, buf + 4096, 4096, NULL, 0);

    /* Deadline on a regular queue. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    to = (struct timespec){ .tv_nsec = 200 * 1000 * 1000 };
    CHECK_RET(blkioq_do_io(q, c, 1, 1, &to), -ETIME);
    s = elapsed(&t0);
    if (s < 0.15 || s > 2)
        T_FAIL_MSG("regular queue timed out after %.3f s, expected 0.2", s);

    /* Deadline on a poll queue. */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    to = (struct timespec){ .tv_nsec = 200 * 1000 * 1000 };
    CHECK_RET(blkioq_do_io(pq, c, 1, 1, &to), -ETIME);
    s = elapsed(&t0);
    if (s < 0.15 || s > 2)
        T_FAIL_MSG("poll queue timed out after %.3f s, expected 0.2", s);

    /* A signal the wait unblocks interrupts it. */
    CHECK(pthread_create(&th, NULL, send_signal, NULL) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    to = (struct timespec){ .tv_sec = 5 };
    CHECK_RET(blkioq_do_io_interruptible(q, c, 1, 1, &to, &unblocked),
              -EINTR);
    pthread_join(th, NULL);
    s = elapsed(&t0);
    if (s > 2)
        T_FAIL_MSG("interrupted wait took %.3f s", s);

    /* A signal the program handles does not end a plain wait, which goes
     * on to its deadline (libblkio 1.5 too); before, it returned -EINTR
     * with the request still in flight.  Interruptible with no set (the
     * thread's own mask) is interrupted, as in 1.5. */
    pthread_sigmask(SIG_SETMASK, &unblocked, NULL);
    CHECK(pthread_create(&th, NULL, send_signal, NULL) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    to = (struct timespec){ .tv_nsec = 500 * 1000 * 1000 };
    CHECK_RET(blkioq_do_io(q, c, 1, 1, &to), -ETIME);
    pthread_join(th, NULL);
    s = elapsed(&t0);
    if (s < 0.45)
        T_FAIL_MSG("a signal ended blkioq_do_io() after %.3f s", s);
    CHECK(pthread_create(&th, NULL, send_signal, NULL) == 0);
    to = (struct timespec){ .tv_sec = 5 };
    CHECK_RET(blkioq_do_io_interruptible(q, c, 1, 1, &to, NULL), -EINTR);
    pthread_join(th, NULL);
    pthread_sigmask(SIG_BLOCK, &block, NULL);

    /* The backend continues: both requests complete. */
    CHECK(kill(pid, SIGCONT) == 0);
    CHECK_RET(vu_wait_one(q), 0);
    CHECK_RET(vu_wait_one(pq), 0);
    blkio_destroy(&b);

    b = vu_start(2, 0);
    q = blkio_get_queue(b, 0);
    CHECK(q);
    buf = t_region(b, 65536, &r);
    CHECK(kill(pid, SIGSTOP) == 0);
    blkioq_read(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(blkioq_do_io(q, c, 0, 1, NULL) >= 0, 1);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    blkio_destroy(&b);
    s = elapsed(&t0);
    CHECK(kill(pid, SIGCONT) == 0);
    if (s > 3)
        T_FAIL_MSG("blkio_destroy() with the backend stopped took %.3f s", s);
    return 0;
}
