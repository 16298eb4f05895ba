/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: completions that arrive while the completion fd is
 * disabled make it readable as soon as it is enabled again (DIFFERENCES
 * D15): an event loop that enables the fd and then waits on it must not
 * wait for ever.  Two cases, 20 rounds each: a completion still in the
 * used ring, and completions already reaped by a blkioq_do_io() whose max
 * was too small to return them all.
 */
#include <poll.h>
#include <unistd.h>

#include "vu-util.h"

static void drain(int fd)
{
    uint64_t cnt;

    while (read(fd, &cnt, sizeof(cnt)) > 0)
        ;
}

static void expect_readable(int fd, const char *what, int round)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    if (poll(&pfd, 1, 5000) != 1)
        T_FAIL_MSG("round %d: %s: the fd is not readable after enabling",
                   round, what);
}

int main(void)
{
    struct blkio *b = vu_start(1, 0);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_completion c[2];
    int fd, n;

    CHECK(q);
    fd = blkioq_get_completion_fd(q);
    CHECK(fd >= 0);
    for (int round = 0; round < 20; round++) {
        /* In the used ring, not reaped. */
        blkioq_set_completion_fd_enabled(q, false);
        drain(fd);
        blkioq_flush(q, NULL, 0);
        CHECK(blkioq_do_io(q, c, 0, 0, NULL) == 0);
        usleep(20 * 1000);
        blkioq_set_completion_fd_enabled(q, true);
        expect_readable(fd, "a completion in the used ring", round);
        CHECK_RET(vu_wait_one(q), 0);

        /* Reaped but not returned: two completions, max 1. */
        blkioq_set_completion_fd_enabled(q, false);
        blkioq_flush(q, NULL, 0);
        blkioq_flush(q, NULL, 0);
        CHECK(blkioq_do_io(q, c, 0, 0, NULL) == 0);
        usleep(20 * 1000);
        CHECK(blkioq_do_io(q, c, 1, 1, NULL) == 1);
        drain(fd);
        blkioq_set_completion_fd_enabled(q, true);
        expect_readable(fd, "a completion reaped, not returned", round);
        n = blkioq_do_io(q, c, 1, 2, NULL);
        CHECK(n == 1);
    }
    blkio_destroy(&b);
    return 0;
}
