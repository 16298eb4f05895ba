/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the created -> connected -> started state machine.  Calls
 * made in the wrong state fail without changing the state, failed
 * connect/start can be retried, and destroy works from every state
 * (including with requests queued) without leaking file descriptors.
 */
#include "core-util.h"

static void check_not_started(struct blkio *b)
{
    static char page[4096] __attribute__((aligned(4096)));
    struct blkio_mem_region user = { .addr = page, .len = sizeof(page),
                                     .fd = -1 };

    CHECK(blkio_get_queue(b, 0) == NULL);
    CHECK(blkio_get_error_msg()[0] != '\0');
    CHECK(blkio_get_poll_queue(b, 0) == NULL);
    CHECK(blkio_add_queue(b) < 0);
    CHECK(blkio_add_poll_queue(b) < 0);
    CHECK(blkio_remove_queue(b, 0) < 0);
    /* (blkio_alloc_mem_region() works from connect on: core-mem-region.) */
    CHECK(blkio_map_mem_region(b, &user) < 0);
}

int main(void)
{
    char *path = cu_temp_file("disk.img", 1 << 20, 0x5a);
    struct blkio *b;
    struct blkioq *q;
    int fds_before, n;
    bool bv;

    /* Create first so that a missing driver skips before we count. */
    b = cu_create("io_uring");
    blkio_destroy(&b);
    fds_before = cu_count_fds();

    /* Created: no start, no queues, no memory regions. */
    b = cu_io_uring(path, CU_CREATED);
    CHECK_RET(blkio_start(b), -ENODEV);
    CHECK(blkio_get_error_msg()[0] != '\0');
    check_not_started(b);

    /* A failed connect leaves the instance created and retryable. */
    CHECK_RET(blkio_set_str(b, "path", "/nonexistent/blkio-core-test"), 0);
    CHECK(blkio_connect(b) < 0);
    CHECK_RET(blkio_set_str(b, "path", path), 0);
    CHECK_RET(blkio_connect(b), 0);

    /* Connected: connect again does nothing (as in libblkio), still no
     * queues. */
    CHECK_RET(blkio_connect(b), 0);
    check_not_started(b);
    CHECK_RET(blkio_set_str(b, "path", path), -EBUSY);

    /* A failed start (poll queues the device cannot do, or more queues
     * than max-queues) leaves it connected and retryable. */
    CHECK_RET(blkio_get_bool(b, "supports-poll-queues", &bv), 0);
    if (!bv) {
        CHECK_RET(blkio_set_int(b, "num-poll-queues", 1), 0);
        CHECK(blkio_start(b) < 0);
        CHECK_RET(blkio_set_int(b, "num-poll-queues", 0), 0);
    }
    CHECK_RET(blkio_get_int(b, "max-queues", &n), 0);
    CHECK(n >= 1);
    if (n < 64) {
        CHECK_RET(blkio_set_int(b, "num-queues", n + 1), 0);
        CHECK(blkio_start(b) < 0);
        CHECK_RET(blkio_set_int(b, "num-queues", 1), 0);
    }
    CHECK(blkio_get_queue(b, 0) == NULL);
    CHECK_RET(blkio_start(b), 0);

    /* Started: start again does nothing (as in libblkio), connect fails,
     * the queue is there. */
    CHECK_RET(blkio_start(b), 0);
    CHECK_RET(blkio_connect(b), -EBUSY);
    q = blkio_get_queue(b, 0);
    CHECK(q != NULL);
    CHECK(blkio_get_queue(b, 1) == NULL);
    CHECK(blkio_get_queue(b, -1) == NULL);
    CHECK(blkio_get_poll_queue(b, 0) == NULL);
    /* Same queue every time. */
    CHECK(blkio_get_queue(b, 0) == q);

    /* Still usable after all those failures. */
    {
        char buf[512];
        struct blkio_completion c;

        blkioq_read(q, 0, buf, sizeof(buf), buf, 0);
        c = cu_wait_one(q);
        CHECK_RET(c.ret, 0);
        CHECK(c.user_data == buf);
        CHECK(buf[0] == 0x5a && buf[511] == 0x5a);
    }
    blkio_destroy(&b);
    CHECK(b == NULL);
    CHECK_RET(cu_count_fds(), fds_before);

    /* Destroy from the connected state. */
    b = cu_io_uring(path, CU_CONNECTED);
    blkio_destroy(&b);
    CHECK_RET(cu_count_fds(), fds_before);

    /* Destroy with requests queued but never submitted, and with
     * requests submitted but never reaped. */
    {
        static char buf[2][4096];

        b = cu_io_uring(path, CU_STARTED);
        q = blkio_get_queue(b, 0);
        blkioq_read(q, 0, buf[0], 4096, NULL, 0);
        CHECK_RET(blkioq_do_io(q, NULL, 0, 0, NULL), 0);
        blkioq_read(q, 4096, buf[1], 4096, NULL, 0);
        blkioq_write(q, 1 << 20, buf[1], 4096, NULL, 0);  /* fails */
        blkio_destroy(&b);
        CHECK_RET(cu_count_fds(), fds_before);
    }

    /* Zero queues at start is fine when queues can be added later. */
    b = cu_io_uring(path, CU_CONNECTED);
    CHECK_RET(blkio_get_bool(b, "can-add-queues", &bv), 0);
    CHECK_RET(blkio_set_int(b, "num-queues", 0), 0);
    CHECK_RET(blkio_set_int(b, "num-poll-queues", 0), 0);
    if (bv) {
        CHECK_RET(blkio_start(b), 0);
        CHECK(blkio_get_queue(b, 0) == NULL);
    } else {
        CHECK(blkio_start(b) < 0);
    }
    blkio_destroy(&b);
    CHECK_RET(cu_count_fds(), fds_before);
    return T_EXIT_PASS;
}
