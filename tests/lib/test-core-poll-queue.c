/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: what the core promises for poll queues: no completion fd
 * (-1), blkioq_set_completion_fd_enabled() without effect,
 * blkioq_do_io_interruptible() with a signal mask not supported, indices separate from the
 * regular queues, and num-queues 0 allowed when poll queues are asked for.
 * Devices here rarely have poll queues, so where supports-poll-queues is
 * false this white-box test sets it through internal.h after connect on an
 * O_DIRECT file (the io_uring driver then makes an IOPOLL ring, which the
 * kernel completes by interrupt).
 */
#include <signal.h>

#include "internal.h"
#include "core-util.h"

int main(void)
{
    const char *path = cu_temp_file("disk.img", 1 << 20, 0x12);
    static char buf[4096] __attribute__((aligned(4096)));
    struct blkio *b = cu_io_uring(path, CU_CREATED);
    struct blkioq *q, *pq;
    struct blkio_completion c;
    sigset_t mask;
    int ret;

    CHECK_RET(blkio_set_bool(b, "direct", true), 0);
    ret = blkio_connect(b);
    if (ret < 0) {
        blkio_destroy(&b);
        t_skip("O_DIRECT not possible on %s: %s", path,
               blkio_get_error_msg());
    }
    if (!b->supports_poll_queues) {
        printf("note: forcing supports-poll-queues on\n");
        b->supports_poll_queues = true;
    }
    CHECK_RET(blkio_set_int(b, "num-queues", 0), 0);
    CHECK_RET(blkio_set_int(b, "num-poll-queues", 1), 0);
    CHECK_RET(blkio_start(b), 0);

    CHECK(blkio_get_queue(b, 0) == NULL);
    pq = blkio_get_poll_queue(b, 0);
    CHECK(pq != NULL);
    CHECK(blkio_get_poll_queue(b, 1) == NULL);
    CHECK_RET(blkioq_get_completion_fd(pq), -1);
    blkioq_set_completion_fd_enabled(pq, true);
    CHECK_RET(blkioq_get_completion_fd(pq), -1);
    /* Taken without a signal mask, refused with one (the manual: not
     * supported on poll queues; libblkio 1.5 does the same). */
    CHECK_RET(blkioq_do_io_interruptible(pq, NULL, 0, 0, NULL, NULL), 0);
    sigemptyset(&mask);
    CHECK_RET(blkioq_do_io_interruptible(pq, NULL, 0, 0, NULL, &mask),
              -EOPNOTSUPP);
    CHECK(strstr(blkio_get_error_msg(), "poll queue") != NULL);

    /* A read completes through plain do_io (the kernel may refuse polled
     * I/O on a device that cannot poll: -EOPNOTSUPP, as forced here). */
    blkioq_read(pq, 0, buf, sizeof(buf), buf, 0);
    c = cu_wait_one(pq);
    CHECK(c.user_data == buf);
    CHECK(c.ret == 0 || c.ret == -EOPNOTSUPP);
    if (c.ret == 0)
        CHECK(buf[0] == 0x12);

    /* A regular queue added next to it has a completion fd. */
    ret = blkio_add_queue(b);
    CHECK(ret >= 0);
    q = blkio_get_queue(b, ret);
    CHECK(q != NULL && q != pq);
    CHECK(blkioq_get_completion_fd(q) >= 0);
    CHECK(blkio_get_poll_queue(b, 0) == pq);

    /* Removing the regular queue 0 is not removing poll queue 0. */
    CHECK_RET(blkio_remove_poll_queue(b, 0), 0);
    CHECK(blkio_get_poll_queue(b, 0) == NULL);
    CHECK(blkio_get_queue(b, ret) == q);
    CHECK_RET(blkio_remove_poll_queue(b, 0), -ENOENT);
    blkio_destroy(&b);
    return T_EXIT_PASS;
}
