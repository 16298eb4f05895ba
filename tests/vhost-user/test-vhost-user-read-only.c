/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: a read-only export (writable=off, VIRTIO_BLK_F_RO).
 * blkio_start() without read-only=true fails with a message saying so;
 * with it, reads and flushes work and every writing request fails -EBADF.
 */
#include "vu-util.h"

int main(void)
{
    struct blkio *b = vu_connect(false);
    struct blkio_mem_region r;
    struct blkioq *q;
    uint8_t *buf;

    CHECK_RET(blkio_start(b), -EROFS);
    if (!strstr(blkio_get_error_msg(), "read-only"))
        T_FAIL_MSG("message does not mention read-only");
    blkio_destroy(&b);

    b = vu_connect(true);
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_queue(b, 0);
    CHECK(q);
    buf = t_region(b, 65536, &r);

    blkioq_read(q, 0, buf, 65536, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    blkioq_flush(q, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    blkioq_write(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(vu_wait_one(q), -EBADF);
    blkioq_write_zeroes(q, 0, 4096, NULL, 0);
    CHECK_RET(vu_wait_one(q), -EBADF);
    blkioq_discard(q, 0, 4096, NULL, 0);
    CHECK_RET(vu_wait_one(q), -EBADF);
    blkio_destroy(&b);
    return 0;
}
