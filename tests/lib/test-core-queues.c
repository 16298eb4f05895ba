/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: queue tables.  num-queues queues exist after start, removing
 * one does not shift the others' indices, removing it again is -ENOENT,
 * queues can be added when can-add-queues is true, poll queues only when
 * supported, and each queue hands out only its own completions.
 */
#include "core-util.h"

static void read_on(struct blkioq *q, void *tag)
{
    static char buf[512];
    struct blkio_completion c;

    blkioq_read(q, 0, buf, sizeof(buf), tag, 0);
    c = cu_wait_one(q);
    CHECK_RET(c.ret, 0);
    CHECK(c.user_data == tag);
    CHECK(buf[0] == 0x77);
}

int main(void)
{
    const char *path = cu_temp_file("disk.img", 1 << 20, 0x77);
    struct blkio *b = cu_io_uring(path, CU_CONNECTED);
    struct blkioq *q0, *q1, *q2, *qn;
    struct blkio_completion c;
    static char buf[512];
    bool can_add, poll_ok;
    int idx, maxq;

    CHECK_RET(blkio_get_bool(b, "can-add-queues", &can_add), 0);
    CHECK_RET(blkio_get_bool(b, "supports-poll-queues", &poll_ok), 0);
    CHECK_RET(blkio_get_int(b, "max-queues", &maxq), 0);
    CHECK(blkio_add_queue(b) < 0);   /* not started */
    if (maxq < 3) {
        blkio_destroy(&b);
        t_skip("max-queues is %d, need 3", maxq);
    }
    CHECK_RET(blkio_set_int(b, "num-queues", 3), 0);
    CHECK_RET(blkio_start(b), 0);

    q0 = blkio_get_queue(b, 0);
    q1 = blkio_get_queue(b, 1);
    q2 = blkio_get_queue(b, 2);
    CHECK(q0 && q1 && q2 && q0 != q1 && q1 != q2 && q0 != q2);
    CHECK(blkio_get_queue(b, 3) == NULL);
    CHECK(blkio_get_poll_queue(b, 0) == NULL);

    /* Each queue has its own completions. */
    blkioq_read(q0, 0, buf, sizeof(buf), q0, 0);
    blkioq_read(q1, 0, buf, sizeof(buf), q1, 0);
    c = cu_wait_one(q1);
    CHECK(c.user_data == q1);
    c = cu_wait_one(q0);
    CHECK(c.user_data == q0);
    CHECK_RET(blkioq_do_io(q2, &c, 1, 1, NULL), -EINVAL);

    /* The manual's example: remove 0, 1 stays 1, removing 0 again fails. */
    CHECK_RET(blkio_remove_queue(b, 0), 0);
    CHECK(blkio_get_queue(b, 0) == NULL);
    CHECK(blkio_get_queue(b, 1) == q1);
    CHECK(blkio_get_queue(b, 2) == q2);
    CHECK_RET(blkio_remove_queue(b, 0), -ENOENT);
    CHECK_RET(blkio_remove_queue(b, -1), -ENOENT);
    CHECK_RET(blkio_remove_queue(b, 3), -ENOENT);
    CHECK_RET(blkio_remove_queue(b, 1000000), -ENOENT);
    CHECK_RET(blkio_remove_poll_queue(b, 0), -ENOENT);
    read_on(q1, &q1);
    read_on(q2, &q2);

    /* Remove one with a request still queued: no leak, no crash. */
    blkioq_read(q2, 0, buf, sizeof(buf), NULL, 0);
    CHECK_RET(blkio_remove_queue(b, 2), 0);
    CHECK(blkio_get_queue(b, 2) == NULL);
    CHECK(blkio_get_queue(b, 1) == q1);

    /* Adding. */
    idx = blkio_add_queue(b);
    if (can_add) {
        CHECK(idx >= 0);
        qn = blkio_get_queue(b, idx);
        CHECK(qn != NULL);
        CHECK(blkio_get_queue(b, 1) == q1);
        read_on(qn, &qn);
        CHECK_RET(blkio_remove_queue(b, idx), 0);
        CHECK_RET(blkio_remove_queue(b, idx), -ENOENT);
        CHECK(blkio_get_queue(b, idx) == NULL);
    } else {
        CHECK(idx < 0);
    }

    idx = blkio_add_poll_queue(b);
    if (!poll_ok) {
        CHECK(idx < 0);
        CHECK(blkio_get_error_msg()[0] != '\0');
    } else if (can_add) {
        CHECK(idx >= 0);
        CHECK(blkio_get_poll_queue(b, idx) != NULL);
        CHECK_RET(blkio_remove_poll_queue(b, idx), 0);
        CHECK_RET(blkio_remove_poll_queue(b, idx), -ENOENT);
    }

    /* Remove the last one; queues can come back only by adding. */
    CHECK_RET(blkio_remove_queue(b, 1), 0);
    CHECK(blkio_get_queue(b, 1) == NULL);
    if (can_add) {
        idx = blkio_add_queue(b);
        CHECK(idx >= 0);
        read_on(blkio_get_queue(b, idx), &idx);
    }
    blkio_destroy(&b);

    /* Zero queues at start, then add up to a few. */
    if (can_add) {
        b = cu_io_uring(path, CU_CONNECTED);
        CHECK_RET(blkio_set_int(b, "num-queues", 0), 0);
        CHECK_RET(blkio_start(b), 0);
        CHECK(blkio_get_queue(b, 0) == NULL);
        for (int i = 0; i < 3; i++) {
            idx = blkio_add_queue(b);
            CHECK(idx >= 0);
            read_on(blkio_get_queue(b, idx), &idx);
        }
        blkio_destroy(&b);
    }
    return T_EXIT_PASS;
}
