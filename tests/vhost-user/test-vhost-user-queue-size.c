/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: queue-size from 1 to max-queue-size (32768) works, with
 * 2000 reads queued at once (far more than small rings hold, so most wait
 * in the pending FIFO); sizes that are not powers of two are refused.
 * Successive instances reconnect to the same export.
 */
#include "vu-util.h"

#define NREQ 2000

static void run(int qsize)
{
    struct blkio *b = vu_connect(false);
    struct blkio_mem_region r;
    struct blkioq *q;
    uint8_t *buf;

    CHECK_RET(blkio_set_int(b, "queue-size", qsize), 0);
    CHECK_RET(blkio_set_int(b, "num-queues", 2), 0);
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_queue(b, 1);
    CHECK(q);
    buf = t_region(b, 1 << 20, &r);
    for (int i = 0; i < NREQ; i++)
        blkioq_read(q, (uint64_t)i * 4096, buf + (i % 256) * 4096, 4096,
                    NULL, 0);
    vu_wait_ok(q, NREQ);
    blkio_destroy(&b);
}

int main(void)
{
    struct blkio *b = vu_connect(false);
    int max = 0;

    CHECK_RET(blkio_get_int(b, "max-queue-size", &max), 0);
    CHECK_RET(blkio_set_int(b, "queue-size", 0), -EINVAL);
    CHECK_RET(blkio_set_int(b, "queue-size", 3), -EINVAL);
    CHECK_RET(blkio_set_int(b, "queue-size", max * 2), -EINVAL);
    blkio_destroy(&b);

    run(1);
    run(2);
    run(64);
    run(1024);
    run(max);
    return 0;
}
