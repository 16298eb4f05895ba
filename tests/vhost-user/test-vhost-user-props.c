/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the properties of a qemu-storage-daemon vhost-user-blk
 * export (num-queues=4, 64 MiB) match what libblkio 1.x reports for it.
 */
#include "vu-util.h"

int main(void)
{
    struct blkio *b = vu_connect(false);
    uint64_t size = vu_env_u64("VU_SIZE");
    char *s = NULL;

    t_expect_u64(b, "capacity", size);
    t_expect_int(b, "max-queues", 4);
    t_expect_int(b, "request-alignment", 512);
    t_expect_bool(b, "needs-mem-regions", true);
    t_expect_bool(b, "needs-mem-region-fd", true);
    t_expect_u64(b, "mem-region-alignment", 1);
    t_expect_int(b, "buf-alignment", 1);
    t_expect_int(b, "max-transfer", 0);
    t_expect_int(b, "max-segments", 126);
    t_expect_int(b, "max-segment-len", 0);
    t_expect_bool(b, "supports-poll-queues", true);
    t_expect_bool(b, "can-add-queues", false);
    t_expect_bool(b, "supports-fua-natively", false);
    t_expect_int(b, "max-queue-size", 32768);
    t_expect_int(b, "queue-size", 256);
    t_expect_int(b, "discard-alignment", 512);
    t_expect_u64(b, "max-discard-len", 16777216);
    t_expect_u64(b, "max-write-zeroes-len", 16777216);
    t_expect_u64(b, "max-mem-regions", 32);
    t_expect_bool(b, "read-only", false);
    CHECK_RET(blkio_get_str(b, "path", &s), 0);
    CHECK(strcmp(s, vu_sock()) == 0);
    free(s);

    /* queue-size must be a power of two within max-queue-size. */
    CHECK_RET(blkio_set_int(b, "queue-size", 100), -EINVAL);
    CHECK_RET(blkio_set_int(b, "queue-size", 65536), -EINVAL);
    CHECK_RET(blkio_set_int(b, "queue-size", 128), 0);
    t_expect_int(b, "queue-size", 128);
    /* More queues than the export has. */
    CHECK_RET(blkio_set_int(b, "num-queues", 5), 0);
    CHECK_RET(blkio_start(b), -EINVAL);
    CHECK_RET(blkio_set_int(b, "num-queues", 2), 0);
    CHECK_RET(blkio_set_int(b, "num-poll-queues", 2), 0);
    CHECK_RET(blkio_start(b), 0);
    /* Read-only once started. */
    CHECK_RET(blkio_set_int(b, "queue-size", 64), -EBUSY);
    CHECK(blkio_get_queue(b, 1) != NULL);
    CHECK(blkio_get_poll_queue(b, 1) != NULL);
    CHECK(blkio_get_queue(b, 2) == NULL);
    blkio_destroy(&b);
    CHECK(b == NULL);
    return 0;
}
