/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: virtio-blk-vfio-pci properties against QEMU's virtio-blk-pci
 * (capacity = the image size, the device's queue count and queue size,
 * memory-region needs), queue-size limits, bad paths, a second instance
 * on a device already in use, and re-opening after destroy.
 * Usage: test-vfio-props (in the test VM; $BLKIO_VFIO_CAPACITY and
 * $BLKIO_VFIO_QUEUES give the expected capacity and queue count).
 */
#include "vfio-util.h"

static uint64_t vt_env_u64(const char *name)
{
    const char *s = getenv(name);

    if (!s || !*s)
        T_FAIL("%s is not set (the meson test passes it)", name);
    return strtoull(s, NULL, 0);
}

static void test_props(const char *path)
{
    uint64_t capacity = vt_env_u64("BLKIO_VFIO_CAPACITY");
    int queues = (int)vt_env_u64("BLKIO_VFIO_QUEUES");
    struct blkio *b = NULL;
    char *s = NULL;
    int qs, mqs;

    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_get_str(b, "driver", &s), 0);
    CHECK(strcmp(s, VT_DRIVER) == 0);
    free(s);
    CHECK_RET(blkio_set_str(b, "path", path), 0);
    CHECK_RET(blkio_connect(b), 0);

    CHECK_EQ_U64(t_get_u64(b, "capacity"), capacity);
    CHECK_EQ_U64(t_get_int(b, "max-queues"), queues);
    CHECK(t_get_bool(b, "needs-mem-regions"));
    CHECK(!t_get_bool(b, "needs-mem-region-fd"));
    CHECK_EQ_U64(t_get_u64(b, "mem-region-alignment"),
                 (uint64_t)sysconf(_SC_PAGESIZE));
    CHECK(t_get_bool(b, "supports-poll-queues"));
    CHECK(!t_get_bool(b, "can-add-queues"));
    CHECK_EQ_U64(t_get_int(b, "request-alignment"), 512);
    CHECK(t_get_int(b, "max-segments") >= 1);
    CHECK(t_get_bool(b, "flush-needed"));          /* QEMU: write cache on */
    CHECK(t_get_u64(b, "max-discard-len") > 0);    /* discard=on */
    CHECK(t_get_u64(b, "max-write-zeroes-len") > 0);
    CHECK(!t_get_bool(b, "read-only"));
    {
        /* Registers are reached through an mmap of the BAR where VFIO
         * allows it (QEMU's virtio BAR has no MSI-X table in it). */
        char line[512];
        bool mapped = false;
        FILE *f = fopen("/proc/self/maps", "r");

        CHECK(f != NULL);
        while (fgets(line, sizeof(line), f))
            if (strstr(line, "vfio-device"))
                mapped = true;
        fclose(f);
        CHECK(mapped);
    }

    /* QEMU's virtio-blk queue-size default is 256 for every queue. */
    qs = t_get_int(b, "queue-size");
    mqs = t_get_int(b, "max-queue-size");
    CHECK_EQ_U64(mqs, 256);
    CHECK_EQ_U64(qs, 256);
    CHECK_RET(blkio_set_int(b, "queue-size", 3), -EINVAL);
    CHECK_RET(blkio_set_int(b, "queue-size", mqs * 2), -EINVAL);
    CHECK_RET(blkio_set_int(b, "queue-size", 64), 0);
    CHECK_EQ_U64(t_get_int(b, "queue-size"), 64);

    /* More regular queues than the device has: start refuses. */
    CHECK_RET(blkio_set_int(b, "num-queues", queues + 1), 0);
    CHECK(blkio_start(b) < 0);
    printf("too many queues: %s\n", blkio_get_error_msg());
    CHECK_RET(blkio_set_int(b, "num-queues", 1), 0);
    CHECK_RET(blkio_set_int(b, "num-poll-queues", 1), 0);
    CHECK_RET(blkio_start(b), 0);
    CHECK_RET(blkio_set_int(b, "queue-size", 128), -EBUSY);
    CHECK(blkio_get_queue(b, 0) != NULL);
    CHECK(blkio_get_poll_queue(b, 0) != NULL);

    /* The IOMMU group is in use: a second instance is refused. */
    {
        struct blkio *b2 = NULL;

        CHECK_RET(blkio_create(VT_DRIVER, &b2), 0);
        CHECK_RET(blkio_set_str(b2, "path", path), 0);
        CHECK(blkio_connect(b2) < 0);
        printf("second instance: %s\n", blkio_get_error_msg());
        CHECK(strstr(blkio_get_error_msg(), "/dev/vfio/") != NULL);
        blkio_destroy(&b2);
    }
    blkio_destroy(&b);
    CHECK(b == NULL);
}

static void test_bad_paths(void)
{
    const char *bad[] = {
        "/nonexistent/0000:00:10.0",
        "/sys/bus/pci/devices/0000:00:00.0",   /* host bridge, not vfio */
        "/dev/null",
    };
    struct blkio *b = NULL;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
        CHECK_RET(blkio_set_str(b, "path", bad[i]), 0);
        CHECK(blkio_connect(b) < 0);
        printf("path %s: %s\n", bad[i], blkio_get_error_msg());
        CHECK(*blkio_get_error_msg());
        blkio_destroy(&b);
    }
    /* No path at all. */
    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_connect(b), -EINVAL);
    CHECK(strstr(blkio_get_error_msg(), "path") != NULL);
    blkio_destroy(&b);
}

/* Destroy resets the device and closes the group: open, use, close, three
 * times, with a read in between. */
static void test_reopen(const char *path)
{
    for (int i = 0; i < 3; i++) {
        struct blkio *b = vt_open(path, true, 1, 0);
        struct blkio_mem_region r;
        uint8_t *buf = t_region(b, 4096, &r);

        blkioq_read(blkio_get_queue(b, 0), 0, buf, 4096, NULL, 0);
        CHECK_RET(t_wait(blkio_get_queue(b, 0), NULL), 0);
        t_region_free(b, &r);
        blkio_destroy(&b);
    }
}

int main(void)
{
    const char *path = vt_device();

    test_bad_paths();
    test_props(path);
    test_reopen(path);
    printf("ok\n");
    return 0;
}
