/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: property values of an io_uring instance on a 1 GiB sparse
 * regular file match what libblkio 1.5 reports (can-grow true,
 * max-mem-regions UINT64_MAX, optimal-buf-alignment 4096,
 * discard-alignment 1), before connect (the ones libblkio answers then),
 * after connect and after start; driver properties are readable as
 * strings.
 */
#include <limits.h>

#include "util.h"

#define GIB (1ull << 30)

static void check_device(struct blkio *b)
{
    t_expect_u64(b, "capacity", GIB);
    t_expect_int(b, "max-queues", INT_MAX);
    t_expect_int(b, "request-alignment", 1);
    t_expect_bool(b, "needs-mem-regions", false);
    t_expect_bool(b, "needs-mem-region-fd", false);
    t_expect_u64(b, "mem-region-alignment", 1);
    t_expect_int(b, "buf-alignment", 1);
    t_expect_int(b, "max-transfer", 0);
    t_expect_int(b, "max-segments", 1024);
    t_expect_bool(b, "supports-poll-queues", false);
    t_expect_bool(b, "can-add-queues", true);
    t_expect_int(b, "optimal-io-alignment", 4096);
    t_expect_bool(b, "supports-fua-natively", false);
    t_expect_int(b, "num-entries", 128);
    t_expect_bool(b, "direct", false);
    t_expect_bool(b, "read-only", false);
    t_expect_bool(b, "can-grow", true);
    t_expect_u64(b, "max-mem-regions", UINT64_MAX);
    t_expect_int(b, "optimal-buf-alignment", 4096);
    t_expect_int(b, "discard-alignment", 1);
}

int main(void)
{
    const char *path = ut_temp_file(GIB);
    struct blkio *b;
    char *s;
    uint64_t mmr;
    int fd;

    ok(blkio_create("io_uring", &b));
    t_expect_bool(b, "can-add-queues", true);
    t_expect_bool(b, "direct", false);
    t_expect_int(b, "fd", -1);
    ok(blkio_get_str(b, "driver", &s));
    check(strcmp(s, "io_uring") == 0);
    free(s);
    err(blkio_get_uint64(b, "capacity", &mmr), -ENODEV);
    /* What libblkio 1.5 answers before connect */
    t_expect_int(b, "num-entries", 128);
    t_expect_int(b, "max-queues", INT_MAX);
    t_expect_u64(b, "max-mem-regions", UINT64_MAX);
    t_expect_bool(b, "can-grow", false);
    t_expect_bool(b, "flush-needed", true);
    t_expect_bool(b, "supports-poll-queues", false);
    t_expect_bool(b, "supports-fua-natively", false);
    t_expect_bool(b, "needs-mem-regions", false);
    t_expect_bool(b, "needs-mem-region-fd", false);
    t_expect_bool(b, "may-pin-mem-regions", false);

    ok(blkio_set_str(b, "path", path));
    ok(blkio_connect(b));
    check_device(b);
    ok(blkio_get_int(b, "fd", &fd));
    check(fd >= 0 && fcntl(fd, F_GETFD) >= 0);
    ok(blkio_get_str(b, "path", &s));
    check(strcmp(s, path) == 0);
    free(s);
    ok(blkio_get_str(b, "capacity", &s));
    check(strcmp(s, "1073741824") == 0);
    free(s);
    ok(blkio_get_str(b, "num-entries", &s));
    check(strcmp(s, "128") == 0);
    free(s);
    err(blkio_set_str(b, "path", path), -EBUSY);
    err(blkio_set_bool(b, "direct", true), -EBUSY);

    ok(blkio_start(b));
    check_device(b);
    t_expect_int(b, "num-queues", 1);
    t_expect_int(b, "num-poll-queues", 0);
    blkio_destroy(&b);
    return 0;
}
