/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: adding and removing queues: start with num-queues=0, add
 * queues, do I/O on each, remove some (indices do not shift, removing twice
 * is -ENOENT), add again, and destroy with requests still in flight.
 */
#include "util.h"

int main(void)
{
    const char *path = ut_temp_file(1u << 20);
    struct blkio *b;
    struct blkioq *q;
    char buf[4][4096];
    int idx[4];

    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", path));
    ok(blkio_connect(b));
    ok(blkio_set_int(b, "num-queues", 0));
    ok(blkio_start(b));
    check(blkio_get_queue(b, 0) == NULL);

    for (int i = 0; i < 4; i++) {
        idx[i] = (int)ok(blkio_add_queue(b));
        check(idx[i] == i);
        q = blkio_get_queue(b, idx[i]);
        check(q != NULL);
        check(blkioq_get_completion_fd(q) >= 0);
        memset(buf[i], 'a' + i, sizeof(buf[i]));
        blkioq_write(q, (uint64_t)i * 4096, buf[i], 4096, buf[i], 0);
        check(ut_wait1(q, buf[i]) == 0);
    }

    ok(blkio_remove_queue(b, 1));
    err(blkio_remove_queue(b, 1), -ENOENT);
    err(blkio_remove_queue(b, 9), -ENOENT);
    check(blkio_get_queue(b, 1) == NULL);
    q = blkio_get_queue(b, 2);
    check(q != NULL);
    blkioq_read(q, 4096, buf[0], 4096, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(buf[0][0] == 'b');

    /* The lowest free index is used again, as in libblkio. */
    check(ok(blkio_add_queue(b)) == 1);
    q = blkio_get_queue(b, 1);
    check(q != NULL);
    blkioq_read(q, 3 * 4096, buf[0], 4096, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(buf[0][4095] == 'd');

    /* Removing a queue with requests queued, then destroying with more. */
    blkioq_read(q, 0, buf[0], 4096, NULL, 0);
    ok(blkio_remove_queue(b, 1));
    q = blkio_get_queue(b, 0);
    blkioq_read(q, 0, buf[1], 4096, NULL, 0);
    check(ok(blkioq_do_io(q, NULL, 0, 0, NULL)) == 0);
    blkio_destroy(&b);
    return 0;
}
