/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the properties of a qemu-storage-daemon vhost-user-blk
 * export (num-queues=4, 64 MiB) match what libblkio 1.x reports for it.
 */
#include "vu-util.h"

static void check_int(struct blkio *b, const char *name, int want)
{
    int v = -12345;

    CHECK_RET(blkio_get_int(b, name, &v), 0);
    if (v != want)
        T_FAIL("%s is %d, expected %d", name, v, want);
}

static void check_u64(struct blkio *b, const char *name, uint64_t want)
{
    uint64_t v = 0;

    CHECK_RET(blkio_get_uint64(b, name, &v), 0);
    if (v != want)
        T_FAIL("%s is %llu, expected %llu", name, (unsigned long long)v,
               (unsigned long long)want);
}

static void check_bool(struct blkio *b, const char *name, bool want)
{
    bool v = !want;

    CHECK_RET(blkio_get_bool(b, name, &v), 0);
    if (v != want)
        T_FAIL("%s is %d, expected %d", name, v, want);
}

int main(void)
{
    struct blkio *b = vu_connect(false);
    uint64_t size = vu_env_u64("VU_SIZE");
    char *s = NULL;

    check_u64(b, "capacity", size);
    check_int(b, "max-queues", 4);
    check_int(b, "request-alignment", 512);
    check_bool(b, "needs-mem-regions", true);
    check_bool(b, "needs-mem-region-fd", true);
    check_u64(b, "mem-region-alignment", 1);
    check_int(b, "buf-alignment", 1);
    check_int(b, "max-transfer", 0);
    check_int(b, "max-segments", 126);
    check_int(b, "max-segment-len", 0);
    check_bool(b, "supports-poll-queues", true);
    check_bool(b, "can-add-queues", false);
    check_bool(b, "supports-fua-natively", false);
    check_int(b, "max-queue-size", 32768);
    check_int(b, "queue-size", 256);
    check_int(b, "discard-alignment", 512);
    check_u64(b, "max-discard-len", 16777216);
    check_u64(b, "max-write-zeroes-len", 16777216);
    check_u64(b, "max-mem-regions", 32);
    check_bool(b, "read-only", false);
    CHECK_RET(blkio_get_str(b, "path", &s), 0);
    CHECK(strcmp(s, vu_sock()) == 0);
    free(s);

    /* queue-size must be a power of two within max-queue-size. */
    CHECK_RET(blkio_set_int(b, "queue-size", 100), -EINVAL);
    CHECK_RET(blkio_set_int(b, "queue-size", 65536), -EINVAL);
    CHECK_RET(blkio_set_int(b, "queue-size", 128), 0);
    check_int(b, "queue-size", 128);
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
