/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: virtio-blk-vhost-vdpa properties and connection rules: what
 * the device reports (capacity = image size, request-alignment 512,
 * max-queues = the export's num-queues, memory region needs, queue sizes),
 * path or fd (fd ownership passes only at a successful connect), refused
 * paths, the device's single-owner rule, queue-size limits, I/O with
 * a queue far smaller than the number of requests in flight, and
 * blkio_destroy() with every region the device takes still mapped (one
 * IOTLB batch) leaving the device to serve the next instance.
 * Usage: test-vdpa-props.
 */
#include <sys/uio.h>
#include <time.h>

#include "vdpa-util.h"

#define VT_SIZE (48ull << 20)

static void test_properties(const char *dev)
{
    struct blkio *b = NULL;
    char *s = NULL;
    int mqs;

    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_get_str(b, "driver", &s), 0);
    CHECK(strcmp(s, VT_DRIVER) == 0);
    free(s);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    /* Device properties exist only after connect. */
    {
        uint64_t cap;
        CHECK(blkio_get_uint64(b, "capacity", &cap) < 0);
    }
    CHECK_RET(blkio_connect(b), 0);

    CHECK_EQ(t_get_u64(b, "capacity"), VT_SIZE);
    CHECK_EQ(t_get_int(b, "request-alignment"), 512);
    CHECK_EQ(t_get_int(b, "max-queues"), VT_EXPORT_QUEUES);
    CHECK_EQ(t_get_int(b, "num-queues"), 1);
    CHECK_EQ(t_get_int(b, "num-poll-queues"), 0);
    CHECK(t_get_bool(b, "needs-mem-regions"));
    /* VDUSE maps memory from files, as libblkio 1.5 reports. */
    CHECK(t_get_bool(b, "needs-mem-region-fd"));
    CHECK_EQ(t_get_u64(b, "mem-region-alignment"), 4096);
    CHECK(t_get_bool(b, "supports-poll-queues"));
    CHECK(!t_get_bool(b, "can-add-queues"));
    CHECK(!t_get_bool(b, "can-grow"));
    CHECK(!t_get_bool(b, "read-only"));
    CHECK(t_get_bool(b, "flush-needed"));     /* qsd's export has FLUSH */
    CHECK(!t_get_bool(b, "supports-fua-natively"));
    CHECK_EQ(t_get_int(b, "buf-alignment"), 1);
    CHECK_EQ(t_get_int(b, "max-transfer"), 0);
    CHECK(t_get_int(b, "max-segments") >= 1);
    CHECK(t_get_u64(b, "max-mem-regions") >= 1);
    CHECK(t_get_u64(b, "max-write-zeroes-len") > 0);
    CHECK(t_get_u64(b, "max-discard-len") > 0);
    CHECK_EQ(t_get_int(b, "discard-alignment") % 512, 0);
    /* qemu-storage-daemon's vduse-blk export: queue-size 256 (default). */
    mqs = t_get_int(b, "max-queue-size");
    CHECK_EQ(mqs, 256);
    CHECK_EQ(t_get_int(b, "queue-size"), 256);
    /* Connected by path: fd stays -1 (it is what the caller passed in,
     * as libblkio 1.5 reports it). */
    CHECK_EQ(t_get_int(b, "fd"), -1);
    CHECK_RET(blkio_get_str(b, "path", &s), 0);
    CHECK(strcmp(s, dev) == 0);
    free(s);

    /* Written before connect only. */
    CHECK_RET(blkio_set_str(b, "path", "/dev/null"), -EBUSY);
    CHECK_RET(blkio_set_int(b, "fd", 0), -EBUSY);

    /* queue-size: a power of two up to max-queue-size. */
    CHECK_RET(blkio_set_int(b, "queue-size", 3), -EINVAL);
    CHECK_RET(blkio_set_int(b, "queue-size", 0), -EINVAL);
    CHECK_RET(blkio_set_int(b, "queue-size", mqs * 2), -EINVAL);
    CHECK_RET(blkio_set_int(b, "max-queue-size", 64), -EACCES);

    /* More queues than the export has. */
    CHECK_RET(blkio_set_int(b, "num-queues", VT_EXPORT_QUEUES + 1), 0);
    CHECK_RET(blkio_start(b), -EINVAL);
    CHECK_RET(blkio_set_int(b, "num-queues", 1), 0);
    CHECK_RET(blkio_set_int(b, "num-poll-queues", 1), 0);
    CHECK_RET(blkio_start(b), 0);
    CHECK(blkio_get_queue(b, 0));
    CHECK(blkio_get_poll_queue(b, 0));
    CHECK(blkio_set_int(b, "queue-size", 64) < 0);
    blkio_destroy(&b);
}

/* The device has one owner at a time; it is free again after destroy. */
static void test_exclusive(const char *dev)
{
    struct blkio *a = NULL, *b = NULL;

    CHECK_RET(blkio_create(VT_DRIVER, &a), 0);
    CHECK_RET(blkio_set_str(a, "path", dev), 0);
    CHECK_RET(blkio_connect(a), 0);
    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_connect(b), -EBUSY);
    CHECK(strstr(blkio_get_error_msg(), dev) != NULL);
    blkio_destroy(&a);
    CHECK_RET(blkio_connect(b), 0);
    blkio_destroy(&b);
}

static void test_bad_paths(void)
{
    struct blkio *b = NULL;

    /* Neither path nor fd. */
    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_connect(b), -EINVAL);
    blkio_destroy(&b);

    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_set_str(b, "path", "/dev/vhost-vdpa-does-not-exist"), 0);
    CHECK_RET(blkio_connect(b), -ENOENT);
    CHECK(strstr(blkio_get_error_msg(), "vhost-vdpa-does-not-exist"));
    blkio_destroy(&b);

    /* A character device that is not vhost-vdpa. */
    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_set_str(b, "path", "/dev/null"), 0);
    CHECK(blkio_connect(b) < 0);
    printf("connect to /dev/null: %s\n", blkio_get_error_msg());
    blkio_destroy(&b);

    /* A regular file. */
    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_set_str(b, "path", vt_image), 0);
    CHECK(blkio_connect(b) < 0);
    blkio_destroy(&b);
}

static bool vt_fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static void test_fd(const char *dev)
{
    struct blkio *b = NULL;
    int fd, nullfd;

    /* QEMU probes for fd support by setting -1: 0 (libblkio 1.5's answer)
     * says the driver takes an fd. */
    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_set_int(b, "fd", -1), 0);

    /* A failed connect leaves the fd with the caller. */
    nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    CHECK(nullfd >= 0);
    CHECK_RET(blkio_set_int(b, "fd", nullfd), 0);
    CHECK(blkio_connect(b) < 0);
    blkio_destroy(&b);
    CHECK(vt_fd_open(nullfd));
    close(nullfd);

    /* path and fd together. */
    fd = open(dev, O_RDWR | O_CLOEXEC);
    CHECK(fd >= 0);
    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_set_int(b, "fd", fd), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_connect(b), -EINVAL);
    blkio_destroy(&b);
    CHECK(vt_fd_open(fd));

    /* A good fd: the instance owns it after connect and closes it. */
    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_set_int(b, "fd", fd), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_EQ(t_get_int(b, "fd"), fd);
    CHECK_EQ(t_get_u64(b, "capacity"), VT_SIZE);
    CHECK_RET(blkio_start(b), 0);
    {
        struct blkio_mem_region r;
        struct blkioq *q = blkio_get_queue(b, 0);
        uint8_t *buf = t_region(b, 4096, &r);

        memset(buf, 0x5a, 4096);
        blkioq_write(q, 8192, buf, 4096, NULL, 0);
        CHECK_RET(t_wait(q, NULL), 0);
        memset(buf, 0, 4096);
        blkioq_read(q, 8192, buf, 4096, NULL, 0);
        CHECK_RET(t_wait(q, NULL), 0);
        CHECK(buf[0] == 0x5a && buf[4095] == 0x5a);
    }
    blkio_destroy(&b);
    CHECK(!vt_fd_open(fd));
}

/* A queue of 4 descriptors with 64 requests queued at once: requests wait
 * for ring slots inside the library. */
static void test_small_queue(const char *dev)
{
    struct blkio *b = NULL;
    struct blkio_mem_region r;
    struct blkio_completion c[64];
    struct blkioq *q;
    uint8_t *buf;
    int n = 0;

    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(blkio_set_int(b, "queue-size", 4), 0);
    CHECK_RET(blkio_start(b), 0);
    CHECK_EQ(t_get_int(b, "queue-size"), 4);
    q = blkio_get_queue(b, 0);
    buf = t_region(b, 64 * 4096, &r);
    for (int i = 0; i < 64; i++) {
        t_fill_pattern(buf + i * 4096, 4096, (uint64_t)i * 4096, 77);
        blkioq_write(q, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    }
    while (n < 64) {
        int r2 = blkioq_do_io(q, c, 1, 64, NULL);

        CHECK(r2 >= 1);
        for (int i = 0; i < r2; i++)
            CHECK_RET(c[i].ret, 0);
        n += r2;
    }
    memset(buf, 0, 64 * 4096);
    for (int i = 0; i < 64; i++)
        blkioq_read(q, (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
    CHECK_RET(blkioq_do_io(q, c, 64, 64, NULL), 64);
    for (int i = 0; i < 64; i++) {
        uint8_t want[4096];

        CHECK_RET(c[i].ret, 0);
        t_fill_pattern(want, 4096, (uint64_t)i * 4096, 77);
        if (memcmp(want, buf + i * 4096, 4096) != 0)
            T_FAIL("block %d read back wrong through a 4-entry queue", i);
    }
    blkio_destroy(&b);
}

/* I/O through the region at buf (4 KiB): write a pattern, read it back. */
static void vt_region_io(struct blkioq *q, uint8_t *buf, uint64_t off,
                         uint32_t gen)
{
    t_fill_pattern(buf, 4096, off, gen);
    blkioq_write(q, off, buf, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    memset(buf, 0, 4096);
    blkioq_read(q, off, buf, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    if (!t_verify_pattern(buf, 4096, off, gen))
        T_FAIL("data at %llu read back wrong", (unsigned long long)off);
}

/*
 * max-mem-regions regions (4 KiB slices of one allocation) mapped, I/O
 * through the last, then blkio_destroy() with all of them still mapped:
 * the invalidations go to the device in one IOTLB batch.  The device must
 * then serve a new instance.  The time destroy took is printed (6.5 s
 * with one batch per region, 0.01 s with one batch, under TCG; tests do
 * not judge speed).
 */
static void test_destroy_many_regions(const char *dev)
{
    struct blkio *b = vt_open(dev, false, 1, 0);
    struct blkio_mem_region all, r1, *r;
    struct timespec t0, t1;
    uint64_t n;

    n = t_get_u64(b, "max-mem-regions");
    CHECK(n >= 1 && n <= 65536);
    CHECK_RET(blkio_alloc_mem_region(b, &all, n * 4096), 0);
    r = calloc(n, sizeof(*r));
    CHECK(r != NULL);
    for (uint64_t i = 0; i < n; i++) {
        r[i] = all;
        r[i].addr = (uint8_t *)all.addr + i * 4096;
        r[i].len = 4096;
        r[i].fd_offset = all.fd_offset + (int64_t)(i * 4096);
        CHECK_RET(blkio_map_mem_region(b, &r[i]), 0);
    }
    vt_region_io(blkio_get_queue(b, 0), r[n - 1].addr, 4096 * 3, 31);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    blkio_destroy(&b);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("destroy with %llu regions mapped: %.3f s\n", (unsigned long long)n,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
    free(r);

    b = vt_open(dev, false, 1, 0);
    vt_region_io(blkio_get_queue(b, 0), t_region(b, 4096, &r1), 4096 * 5, 32);
    blkio_destroy(&b);
}

/* A process forked after start cannot map regions: the device would look
 * them up in the parent's memory.  A clear -EPERM in the child; the parent
 * still maps and does I/O. */
static void test_fork_map(const char *dev)
{
    struct blkio *b = vt_open(dev, false, 1, 0);
    struct blkio_mem_region r;
    int status;
    pid_t pid;

    CHECK_RET(blkio_alloc_mem_region(b, &r, 65536), 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int ret = blkio_map_mem_region(b, &r);

        _exit(ret == -EPERM && strstr(blkio_get_error_msg(), "forked") ? 0 : 1);
    }
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_RET(blkio_map_mem_region(b, &r), 0);
    vt_region_io(blkio_get_queue(b, 0), r.addr, 4096 * 7, 33);
    blkio_destroy(&b);
}

int main(void)
{
    const char *dev = vt_start(VT_SIZE);

    test_properties(dev);
    test_exclusive(dev);
    test_bad_paths();
    test_fd(dev);
    test_small_queue(dev);
    test_destroy_many_regions(dev);
    test_fork_map(dev);
    printf("ok\n");
    return 0;
}
