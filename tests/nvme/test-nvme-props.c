/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: nvme-io_uring properties match what the kernel reports for
 * the same namespace in sysfs (its own reading of the identify data), and
 * connect refuses bad path/fd combinations with clear errors.
 * Usage: test-nvme-props [/dev/ngXnY] (default $BLKIO_VM_NVME).
 */
#include "nvme-util.h"

static void test_connect_errors(const char *dev)
{
    struct blkio *b;
    int fd;

    /* neither path nor fd */
    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_connect(b), -EINVAL);
    blkio_destroy(&b);

    /* a path that does not exist */
    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", "/dev/does-not-exist-ng9n9"), 0);
    CHECK_RET(blkio_connect(b), -ENOENT);
    blkio_destroy(&b);

    /* a regular file */
    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", "/proc/self/status"), 0);
    CHECK_RET(blkio_connect(b), -EINVAL);
    CHECK(strstr(blkio_get_error_msg(), "character device") != NULL);
    blkio_destroy(&b);

    /* a char device that is not NVMe */
    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", "/dev/null"), 0);
    CHECK(blkio_connect(b) < 0);
    CHECK(strstr(blkio_get_error_msg(), "NVME_IOCTL_ID") != NULL);
    blkio_destroy(&b);

    /* both path and fd */
    fd = open(dev, O_RDWR | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_set_int(b, "fd", fd), 0);
    CHECK_RET(blkio_connect(b), -EINVAL);
    blkio_destroy(&b);
    /* failed connect: the fd is still ours */
    CHECK(fcntl(fd, F_GETFD) >= 0);

    /* fd only: ownership passes at connect, "fd" reads back; a negative
     * fd is "not set" (libblkio 1.5 takes any value) */
    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_int(b, "fd", -1), 0);
    CHECK_RET(blkio_set_int(b, "fd", fd), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(t_get_int(b, "fd"), fd);
    CHECK_RET(blkio_set_int(b, "fd", fd), -EBUSY);
    CHECK_RET(blkio_start(b), 0);
    blkio_destroy(&b);
    CHECK(fcntl(fd, F_GETFD) < 0 && errno == EBADF);
}

static void test_num_entries(const char *dev)
{
    struct blkio *b;

    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_set_int(b, "num-entries", 64), -ENODEV);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(t_get_int(b, "num-entries"), 128);
    CHECK_RET(blkio_set_int(b, "num-entries", 0), -EINVAL);
    CHECK_RET(blkio_set_int(b, "num-entries", 40000), 0);
    CHECK_RET(blkio_start(b), -EINVAL);
    CHECK_RET(blkio_set_int(b, "num-entries", 100), 0);   /* a minimum */
    CHECK_RET(blkio_start(b), 0);
    CHECK_RET(blkio_set_int(b, "num-entries", 32), -EBUSY);
    CHECK_RET(t_get_int(b, "num-entries"), 100);
    blkio_destroy(&b);
}

/* Linux reports 0 (no limit) when a limit is at least the number of
 * sequential zones; the driver reports what the namespace says. */
static void check_zone_limit(struct blkio *b, const char *blk,
                             const char *name, const char *sysfs_name)
{
    char attr[64];
    long long sys;
    int ours = t_get_int(b, name);

    snprintf(attr, sizeof(attr), "queue/%s", sysfs_name);
    sys = nt_sysfs_num(blk, attr);
    if (sys == ours)
        return;
    if (sys == 0 && (uint64_t)ours >= t_get_u64(b, "nr-zones"))
        return;
    T_FAIL("%s is %d, but sysfs %s says %lld", name, ours, attr, sys);
}

static void test_props(const char *dev)
{
    char blk[64], s[128];
    struct blkio *b;
    long long v;
    int ralign, max_transfer;
    uint64_t capacity;

    nt_block_name(dev, blk, sizeof(blk));
    if (nt_sysfs_num(blk, "size") < 0)
        t_skip("/sys/block/%s is missing", blk);

    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_connect(b), 0);

    capacity = t_get_u64(b, "capacity");
    CHECK_EQ_U64(capacity, (uint64_t)nt_sysfs_num(blk, "size") * 512);

    ralign = t_get_int(b, "request-alignment");
    CHECK_EQ_U64(ralign, nt_sysfs_num(blk, "queue/logical_block_size"));

    /* what QEMU's block layer limits need (see style-anchors, QEMU) */
    CHECK(t_get_int(b, "buf-alignment") >= 1);
    CHECK(t_get_int(b, "optimal-buf-alignment") >= 1);
    CHECK(t_get_int(b, "max-segments") >= 1);
    max_transfer = t_get_int(b, "max-transfer");
    CHECK(max_transfer > 0 && max_transfer % ralign == 0);
    v = nt_sysfs_num(blk, "queue/max_hw_sectors_kb");
    CHECK(v > 0 && (long long)max_transfer <= v * 1024);
    v = nt_sysfs_num(blk, "queue/max_segments");
    CHECK(v > 0 && t_get_int(b, "max-segments") <= v);

    nt_sysfs_str(blk, "queue/write_cache", s, sizeof(s));
    CHECK(t_get_bool(b, "flush-needed") == (strcmp(s, "write back") == 0));
    CHECK(t_get_bool(b, "supports-fua-natively"));
    CHECK(!t_get_bool(b, "needs-mem-regions"));
    CHECK(t_get_bool(b, "can-add-queues"));
    CHECK(t_get_int(b, "max-queues") >= 1);
    CHECK(t_get_bool(b, "supports-poll-queues") ==
          (nt_sysfs_num(blk, "queue/io_poll") == 1));

    v = nt_sysfs_num(blk, "queue/discard_max_hw_bytes");
    CHECK((t_get_u64(b, "max-discard-len") > 0) == (v > 0));
    v = nt_sysfs_num(blk, "queue/write_zeroes_max_bytes");
    if (v > 0)
        CHECK(t_get_u64(b, "max-write-zeroes-len") > 0);

    nt_sysfs_str(blk, "queue/zoned", s, sizeof(s));
    if (strcmp(s, "host-managed") == 0) {
        uint64_t zs = t_get_u64(b, "zone-size");

        CHECK_RET(t_get_int(b, "zoned"), 2);
        CHECK_EQ_U64(zs, (uint64_t)nt_sysfs_num(blk, "queue/chunk_sectors")
                             * 512);
        CHECK_EQ_U64(t_get_u64(b, "nr-zones"),
                     (uint64_t)nt_sysfs_num(blk, "queue/nr_zones"));
        check_zone_limit(b, blk, "max-open-zones", "max_open_zones");
        check_zone_limit(b, blk, "max-active-zones", "max_active_zones");
        CHECK(t_get_bool(b, "append-support"));
        CHECK_EQ_U64(t_get_u64(b, "zone-append-max-bytes"),
                     (uint64_t)nt_sysfs_num(blk,
                                           "queue/zone_append_max_bytes"));
    } else {
        CHECK_RET(t_get_int(b, "zoned"), 0);
        CHECK_EQ_U64(t_get_u64(b, "nr-zones"), 0);
        CHECK_EQ_U64(t_get_u64(b, "zone-size"), 0);
        CHECK(!t_get_bool(b, "append-support"));
    }
    /* libblkio 1.5 spells them with hyphens and has no underscore forms */
    {
        static const char *const underscored[] = {
            "zone_size", "nr_zones", "max_open_zones", "max_active_zones",
            "append_support", "zone_append_max_bytes",
        };
        uint64_t u;

        for (size_t i = 0; i < sizeof(underscored) / sizeof(char *); i++)
            CHECK_RET(blkio_get_uint64(b, underscored[i], &u), -ENOENT);
    }

    printf("%s: capacity %llu request-alignment %d max-transfer %d "
           "max-segments %d flush-needed %d max-write-zeroes-len %llu "
           "max-discard-len %llu zoned %d nr_zones %llu zone_size %llu\n",
           dev, (unsigned long long)capacity, ralign, max_transfer,
           t_get_int(b, "max-segments"), t_get_bool(b, "flush-needed"),
           (unsigned long long)t_get_u64(b, "max-write-zeroes-len"),
           (unsigned long long)t_get_u64(b, "max-discard-len"),
           t_get_int(b, "zoned"),
           (unsigned long long)t_get_u64(b, "nr-zones"),
           (unsigned long long)t_get_u64(b, "zone-size"));
    blkio_destroy(&b);
}

int main(int argc, char **argv)
{
    const char *dev = nt_device(argc, argv, "BLKIO_VM_NVME", "/dev/ng0n1");
    const char *zdev = getenv("BLKIO_VM_NVME_ZONED");

    if (geteuid() != 0)
        t_skip("nvme-io_uring needs CAP_SYS_ADMIN (run as root)");
    test_connect_errors(dev);
    test_num_entries(dev);
    test_props(dev);
    if (zdev && *zdev)
        test_props(zdev);
    return 0;
}
