/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: poll queues.  A buffered file never supports them: starting
 * with num-poll-queues=1 fails with -EINVAL and blkio_add_poll_queue() with
 * -ENOTSUP.  With direct=true they are used when the device under the file
 * can poll (queue/io_poll in sysfs): reads and writes work, flush, write
 * zeroes and discard fail with -ENOTSUP, the completion fd is -1.
 * Skipped when no such device is at hand.
 */
#include "util.h"

int main(void)
{
    const char *path = ut_temp_file(1u << 20);
    struct blkio *b;
    struct blkioq *q;
    bool poll;
    void *buf;

    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", path));
    ok(blkio_connect(b));
    ok(blkio_get_bool(b, "supports-poll-queues", &poll));
    check(!poll);
    ok(blkio_set_int(b, "num-poll-queues", 1));
    err(blkio_start(b), -EINVAL);
    ok(blkio_set_int(b, "num-poll-queues", 0));
    ok(blkio_start(b));
    err(blkio_add_poll_queue(b), -ENOTSUP);
    check(blkio_get_poll_queue(b, 0) == NULL);
    blkio_destroy(&b);

    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", path));
    ok(blkio_set_bool(b, "direct", true));
    if (blkio_connect(b) < 0) {
        printf("SKIP: O_DIRECT not supported here: %s\n",
               blkio_get_error_msg());
        blkio_destroy(&b);
        return 77;
    }
    ok(blkio_get_bool(b, "supports-poll-queues", &poll));
    if (!poll) {
        ok(blkio_set_int(b, "num-poll-queues", 1));
        err(blkio_start(b), -EINVAL);
        blkio_destroy(&b);
        skip_if(true, "the device under the temporary file has no poll "
                "queues (queue/io_poll is 0); see io-uring-iopoll-forced");
    }
    ok(blkio_set_int(b, "num-queues", 0));
    ok(blkio_set_int(b, "num-poll-queues", 1));
    ok(blkio_start(b));
    q = blkio_get_poll_queue(b, 0);
    check(q != NULL);
    check(blkioq_get_completion_fd(q) == -1);
    buf = ut_aligned_alloc(4096, 4096);
    memset(buf, 0x5a, 4096);
    blkioq_write(q, 0, buf, 4096, buf, 0);
    check(ut_wait1(q, buf) == 0);
    memset(buf, 0, 4096);
    blkioq_read(q, 0, buf, 4096, buf, 0);
    check(ut_wait1(q, buf) == 0);
    check(((unsigned char *)buf)[4095] == 0x5a);
    blkioq_flush(q, NULL, 0);
    check(ut_wait1(q, NULL) == -ENOTSUP);
    blkioq_write_zeroes(q, 0, 4096, NULL, 0);
    check(ut_wait1(q, NULL) == -ENOTSUP);
    blkioq_discard(q, 0, 4096, NULL, 0);
    check(ut_wait1(q, NULL) == -ENOTSUP);
    free(buf);
    blkio_destroy(&b);
    return 0;
}
