/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: error messages survive queue teardown.  A blkio_start()
 * that fails on its second queue (file descriptors run out) leaves its
 * own message, not an empty one from stopping the first queue; a retry
 * with fds available starts and serves I/O; a successful
 * blkio_remove_queue() leaves an earlier call's message alone.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>

#include "vu-util.h"

/* The smallest fd limit under which exactly `n` more fds can be opened. */
static rlim_t fd_limit_for(unsigned n)
{
    unsigned free_below = 0;
    rlim_t lim = 0;

    while (free_below < n) {
        if (fcntl((int)lim, F_GETFD) < 0 && errno == EBADF)
            free_below++;
        lim++;
    }
    return lim;
}

int main(void)
{
    struct blkio *b = vu_connect(false);
    struct blkio_mem_region r;
    struct rlimit old, lim;
    const char *msg;
    uint8_t *buf;
    char saved[512];

    CHECK_RET(blkio_set_int(b, "num-queues", 2), 0);
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    /* Ring memfd, the connection watch's eventfd, then per queue a
     * completion eventfd and a kick eventfd: the second queue's kick
     * eventfd is the one that cannot be had. */
    lim = old;
    lim.rlim_cur = fd_limit_for(5);
    CHECK(setrlimit(RLIMIT_NOFILE, &lim) == 0);
    CHECK(blkio_start(b) < 0);
    msg = blkio_get_error_msg();
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    if (!strstr(msg, "eventfd"))
        T_FAIL("failed blkio_start left the message \"%s\", expected the "
               "eventfd failure", msg);

    /* The retry starts from scratch and works. */
    CHECK_RET(blkio_start(b), 0);
    buf = t_region(b, 4096, &r);
    blkioq_read(blkio_get_queue(b, 1), 0, buf, 4096, NULL, 0);
    CHECK_RET(vu_wait_one(blkio_get_queue(b, 1)), 0);

    /* A failed call's message outlives a successful queue removal. */
    {
        int v;
        CHECK(blkio_get_int(b, "no-such-property", &v) < 0);
    }
    snprintf(saved, sizeof(saved), "%s", blkio_get_error_msg());
    CHECK(saved[0] != '\0');
    CHECK_RET(blkio_remove_queue(b, 1), 0);
    if (strcmp(blkio_get_error_msg(), saved) != 0)
        T_FAIL("blkio_remove_queue replaced \"%s\" with \"%s\"", saved,
               blkio_get_error_msg());

    /* The other queue still works. */
    blkioq_read(blkio_get_queue(b, 0), 0, buf, 4096, NULL, 0);
    CHECK_RET(vu_wait_one(blkio_get_queue(b, 0)), 0);
    t_region_free(b, &r);
    blkio_destroy(&b);
    return 0;
}
