/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the completion fd of a regular queue is non-blocking and
 * becomes readable when blkioq_do_io() needs to be called again: after a
 * request completes, and after a request the library itself failed.  The
 * manual's event loop pattern works with it.  (Poll queues, which have
 * none, are in test-core-poll-queue.c.)
 */
#include <poll.h>

#include "core-util.h"

static bool wait_readable(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int r = poll(&p, 1, ms);

    CHECK(r >= 0);
    return r == 1 && (p.revents & POLLIN);
}

static void drain(int fd)
{
    uint64_t v;

    while (read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        ;
}

/* The manual's event-driven loop: wait on the fd, then do_io min 0. */
static struct blkio_completion event_wait(struct blkioq *q, int fd)
{
    struct blkio_completion c;
    int n, rounds = 0;

    for (;;) {
        if (!wait_readable(fd, 10000))
            T_FAIL("completion fd not readable within 10 s");
        drain(fd);
        n = blkioq_do_io(q, &c, 0, 1, NULL);
        CHECK(n == 0 || n == 1);
        if (n == 1)
            return c;
        if (++rounds > 1000)
            T_FAIL("only spurious events on the completion fd");
    }
}

int main(void)
{
    const char *path = cu_temp_file("disk.img", 1 << 20, 0x55);
    struct blkio *b = cu_io_uring(path, CU_CONNECTED);
    struct blkioq *q, *q1;
    struct blkio_completion c;
    static char buf[4096];
    int fd, fd1, fl;

    CHECK_RET(blkio_set_int(b, "num-queues", 2), 0);
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_queue(b, 0);
    q1 = blkio_get_queue(b, 1);
    CHECK(q && q1);

    fd = blkioq_get_completion_fd(q);
    fd1 = blkioq_get_completion_fd(q1);
    CHECK(fd >= 0 && fd1 >= 0 && fd != fd1);
    CHECK(blkioq_get_completion_fd(q) == fd);
    fl = fcntl(fd, F_GETFL);
    CHECK(fl >= 0 && (fl & O_NONBLOCK));

    blkioq_set_completion_fd_enabled(q, true);
    drain(fd);

    /* A request completes: the fd fires and do_io returns it. */
    blkioq_read(q, 0, buf, sizeof(buf), buf, 0);
    CHECK_RET(blkioq_do_io(q, NULL, 0, 0, NULL), 0);   /* submit only */
    c = event_wait(q, fd);
    CHECK_RET(c.ret, 0);
    CHECK(c.user_data == buf && buf[0] == 0x55);

    /* A request the library fails up front also wakes the loop. */
    drain(fd);
    /* FUA is not a read flag */
    blkioq_read(q, 0, buf, sizeof(buf), buf + 1, BLKIO_REQ_FUA);
    CHECK_RET(blkioq_do_io(q, NULL, 0, 0, NULL), 0);
    c = event_wait(q, fd);
    CHECK(c.ret < 0);
    CHECK(c.user_data == buf + 1);

    /* Completions of queue 0 do not show up on queue 1. */
    drain(fd1);
    blkioq_set_completion_fd_enabled(q1, true);
    blkioq_read(q, 0, buf, 512, buf + 2, 0);
    c = cu_wait_one(q);
    CHECK(c.user_data == buf + 2);
    CHECK_RET(blkioq_do_io(q1, &c, 0, 1, NULL), 0);

    /* The application may switch the fd to blocking mode. */
    CHECK_RET(fcntl(fd, F_SETFL, fl & ~O_NONBLOCK), 0);
    blkioq_read(q, 0, buf, 512, buf + 3, 0);
    CHECK_RET(blkioq_do_io(q, NULL, 0, 0, NULL), 0);
    {
        uint64_t v;
        int n;

        do {
            CHECK_RET(read(fd, &v, sizeof(v)), (ssize_t)sizeof(v));
            n = blkioq_do_io(q, &c, 0, 1, NULL);
        } while (n == 0);
        CHECK_RET(n, 1);
        CHECK(c.user_data == buf + 3);
    }
    CHECK_RET(fcntl(fd, F_SETFL, fl), 0);

    /* Disabling is allowed at any time; do_io still works. */
    blkioq_set_completion_fd_enabled(q, false);
    blkioq_read(q, 0, buf, 512, NULL, 0);
    c = cu_wait_one(q);
    CHECK_RET(c.ret, 0);

    blkio_destroy(&b);
    return T_EXIT_PASS;
}
