/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the three ways of waiting for completions on one queue:
 * blocking (min_completions 1), event-driven (completion fd in epoll, with
 * notifications disabled and re-enabled), and application polling
 * (min_completions 0 in a loop).
 */
#include <sys/epoll.h>

#include "util.h"

#define N 32
#define BS 4096

static char buf[N][BS];

static void blocking(struct blkioq *q)
{
    struct blkio_completion c[N];
    int got = 0;

    for (int i = 0; i < N; i++)
        blkioq_read(q, (uint64_t)i * BS, buf[i], BS, buf[i], 0);
    while (got < N) {
        int n = (int)ok(blkioq_do_io(q, c, 1, N, NULL));

        check(n >= 1);
        for (int k = 0; k < n; k++)
            check(c[k].ret == 0);
        got += n;
    }
}

static void event_driven(struct blkioq *q)
{
    int cfd = blkioq_get_completion_fd(q);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN };
    struct blkio_completion c;
    uint64_t cnt;
    int got = 0;

    check(cfd >= 0);
    check(ep >= 0);
    check(epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev) == 0);
    /* Nothing in flight: the fd must not be readable. */
    while (read(cfd, &cnt, sizeof(cnt)) == sizeof(cnt))
        ;
    check(epoll_wait(ep, &ev, 1, 0) == 0);

    for (int i = 0; i < N; i++)
        blkioq_write(q, (uint64_t)i * BS, buf[i], BS, buf[i], 0);
    check(ok(blkioq_do_io(q, NULL, 0, 0, NULL)) == 0);   /* submit */

    while (got < N) {
        /* io_uring completes buffered I/O through task work, which
         * interrupts a blocking epoll_wait with EINTR: retry. */
        int n;

        do
            n = epoll_wait(ep, &ev, 1, 10000);
        while (n < 0 && errno == EINTR);
        if (n != 1)
            T_FAIL("epoll_wait returned %d (%s) with %d of %d completions",
                   n, strerror(errno), got, N);
        check(read(cfd, &cnt, sizeof(cnt)) == sizeof(cnt) || errno == EAGAIN);

        /* Process with notifications off, as the manual suggests. */
        blkioq_set_completion_fd_enabled(q, false);
        for (;;) {
            int r = (int)ok(blkioq_do_io(q, &c, 0, 1, NULL));

            if (r == 0) {
                blkioq_set_completion_fd_enabled(q, true);
                r = (int)ok(blkioq_do_io(q, &c, 0, 1, NULL));
                if (r == 0)
                    break;
                blkioq_set_completion_fd_enabled(q, false);
            }
            check(c.ret == 0);
            got++;
        }
    }

    /* Disabled notifications: a completion does not make the fd readable,
     * but it is still there for do_io.  The kernel may signal the eventfd
     * for the last CQEs above after they were reaped (io_uring can defer
     * the signal): let that land before the fd is drained for good. */
    usleep(100 * 1000);
    while (read(cfd, &cnt, sizeof(cnt)) == sizeof(cnt))
        ;
    blkioq_set_completion_fd_enabled(q, false);
    blkioq_read(q, 0, buf[0], BS, buf[0], 0);
    check(ok(blkioq_do_io(q, NULL, 0, 0, NULL)) == 0);
    usleep(100 * 1000);
    check(epoll_wait(ep, &ev, 1, 0) == 0);
    /* Entering the kernel runs io_uring's task work, which posts the CQE
     * if it was not yet: still no notification. */
    check(ok(blkioq_do_io(q, NULL, 0, 0, NULL)) == 0);
    check(epoll_wait(ep, &ev, 1, 0) == 0);
    check(ut_wait1(q, buf[0]) == 0);

    /* Enabled again: the next completion wakes the fd. */
    blkioq_set_completion_fd_enabled(q, true);
    blkioq_read(q, 0, buf[0], BS, buf[0], 0);
    check(ok(blkioq_do_io(q, NULL, 0, 0, NULL)) == 0);
    {
        int n;

        do
            n = epoll_wait(ep, &ev, 1, 10000);
        while (n < 0 && errno == EINTR);
        check(n == 1);
    }
    check(ut_wait1(q, buf[0]) == 0);

    /* A zero-length read completes without the kernel: it must wake the
     * fd all the same. */
    while (read(cfd, &cnt, sizeof(cnt)) == sizeof(cnt))
        ;
    blkioq_read(q, 0, buf[0], 0, buf[1], 0);
    check(ok(blkioq_do_io(q, NULL, 0, 0, NULL)) == 0);
    check(epoll_wait(ep, &ev, 1, 1000) == 1);
    check(ut_wait1(q, buf[1]) == 0);
    close(ep);
}

static void polling(struct blkioq *q)
{
    struct blkio_completion c[N];
    struct timespec t0, t1;
    int got = 0;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < N; i++)
        blkioq_read(q, (uint64_t)i * BS, buf[i], BS, buf[i], 0);
    while (got < N) {
        int n = (int)ok(blkioq_do_io(q, c, 0, N, NULL));

        for (int k = 0; k < n; k++)
            check(c[k].ret == 0);
        got += n;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        check(t1.tv_sec - t0.tv_sec < 10);
    }
    check(ok(blkioq_do_io(q, c, 0, N, NULL)) == 0);
}

int main(void)
{
    const char *path = ut_temp_file(N * BS);
    struct blkio *b = ut_start(path, false, false);
    struct blkioq *q = blkio_get_queue(b, 0);

    for (int i = 0; i < N; i++)
        t_fill_random(buf[i], BS, (uint64_t)i + 1);
    blocking(q);
    event_driven(q);
    polling(q);
    blkio_destroy(&b);
    return 0;
}
