/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: every virtio-blk-vhost-vdpa request type on a regular and
 * on a poll queue: read/write, readv/writev, FUA write, flush, write
 * zeroes (all flags, and longer than max-write-zeroes-len so the driver
 * splits it), discard; the backend image is checked after flushes.  Also
 * requests the core refuses (misaligned, past the end, buffers outside
 * mapped regions, unknown flags), a memfd region the application maps
 * itself, unmapped and mapped again, anonymous memory (VDUSE reaches
 * only shared mappings: private is refused), and the completion fd being
 * signalled.
 * Usage: test-vdpa-requests.
 */
#include <poll.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "vdpa-util.h"

#define VT_SIZE  (64ull << 20)
#define VT_BUF   (1024 * 1024)

static void vt_check_image(const void *want, size_t len, uint64_t off,
                           const char *what)
{
    uint8_t *img = malloc(len);

    CHECK(img);
    vt_read_image(img, len, off);
    if (memcmp(img, want, len) != 0)
        T_FAIL("%s: the backend image at %llu differs", what,
               (unsigned long long)off);
    free(img);
}

static void vt_check_image_zero(size_t len, uint64_t off, const char *what)
{
    uint8_t *img = malloc(len);

    CHECK(img);
    vt_read_image(img, len, off);
    if (!t_is_zero(img, len))
        T_FAIL("%s: the backend image at %llu is not zero", what,
               (unsigned long long)off);
    free(img);
}

static void vt_flush(struct blkioq *q)
{
    blkioq_flush(q, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
}

/* All request types on q, in the device area starting at base. */
static void test_types(struct blkio *b, struct blkioq *q, uint64_t base,
                       uint8_t *buf, uint8_t *buf2, uint32_t gen)
{
    uint64_t wz_max = t_get_u64(b, "max-write-zeroes-len");
    struct iovec iov[4];
    const char *msg;

    /* Write, flush, read back; the image has it. */
    t_fill_pattern(buf, VT_BUF, base, gen);
    blkioq_write(q, base, buf, VT_BUF, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    vt_flush(q);
    vt_check_image(buf, VT_BUF, base, "write + flush");
    memset(buf2, 0xee, VT_BUF);
    blkioq_read(q, base, buf2, VT_BUF, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    CHECK(memcmp(buf, buf2, VT_BUF) == 0);

    /* writev / readv with odd segment boundaries. */
    t_fill_pattern(buf, VT_BUF, base, gen + 1);
    iov[0] = (struct iovec){ buf, 1 };
    iov[1] = (struct iovec){ buf + 1, 4095 };
    iov[2] = (struct iovec){ buf + 4096, 100000 };
    iov[3] = (struct iovec){ buf + 104096, VT_BUF - 104096 };
    blkioq_writev(q, base, iov, 4, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    memset(buf2, 0, VT_BUF);
    iov[0] = (struct iovec){ buf2, 511 };
    iov[1] = (struct iovec){ buf2 + 511, 1 };
    iov[2] = (struct iovec){ buf2 + 512, VT_BUF - 512 };
    blkioq_readv(q, base, iov, 3, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    CHECK(memcmp(buf, buf2, VT_BUF) == 0);

    /* FUA: durable without a separate flush (emulated with one). */
    t_fill_pattern(buf, 65536, base + 65536, gen + 2);
    blkioq_write(q, base + 65536, buf, 65536, NULL, BLKIO_REQ_FUA);
    CHECK_RET(t_wait(q, NULL), 0);
    vt_check_image(buf, 65536, base + 65536, "FUA write");

    /* Write zeroes, each flag combination, on patterned data. */
    {
        static const uint32_t flags[] = {
            0, BLKIO_REQ_NO_UNMAP, BLKIO_REQ_NO_FALLBACK,
            BLKIO_REQ_NO_UNMAP | BLKIO_REQ_NO_FALLBACK, BLKIO_REQ_FUA,
        };

        for (unsigned i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
            uint64_t off = base + (uint64_t)i * 131072;

            t_fill_pattern(buf, 131072, off, gen + 3 + i);
            blkioq_write(q, off, buf, 131072, NULL, 0);
            CHECK_RET(t_wait(q, NULL), 0);
            blkioq_write_zeroes(q, off + 4096, 65536, NULL, flags[i]);
            if (t_wait(q, &msg) != 0)
                T_FAIL("write zeroes with flags 0x%x failed: %s", flags[i],
                       msg);
            memset(buf2, 0xee, 131072);
            blkioq_read(q, off, buf2, 131072, NULL, 0);
            CHECK_RET(t_wait(q, NULL), 0);
            CHECK(memcmp(buf2, buf, 4096) == 0);
            CHECK(t_is_zero(buf2 + 4096, 65536));
            CHECK(memcmp(buf2 + 69632, buf + 69632, 131072 - 69632) == 0);
        }
    }

    /* Longer than one device request: the driver splits it. */
    if (wz_max && base + wz_max * 2 + 512 * 8 <= VT_SIZE) {
        uint64_t len = wz_max * 2 + 512 * 8;

        blkioq_write_zeroes(q, base, len, NULL, 0);
        CHECK_RET(t_wait(q, NULL), 0);
        vt_flush(q);
        vt_check_image_zero((size_t)len, base, "long write zeroes");
        printf("write zeroes of %llu bytes (max-write-zeroes-len %llu) ok\n",
               (unsigned long long)len, (unsigned long long)wz_max);
    }

    /* Discard: succeeds; the data afterwards is unspecified. */
    blkioq_discard(q, base, VT_BUF, NULL, 0);
    if (t_wait(q, &msg) != 0)
        T_FAIL("discard failed: %s", msg);

    /* Requests refused before they reach the device. */
    blkioq_read(q, base + 100, buf, 512, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EINVAL);
    blkioq_read(q, base, buf, 100, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EINVAL);
    blkioq_read(q, VT_SIZE - 512, buf, 1024, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EINVAL);
    blkioq_write_zeroes(q, VT_SIZE, 512, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EINVAL);
    blkioq_read(q, base, buf, 512, NULL, 0x80000000u);
    CHECK_RET(t_wait(q, NULL), -EINVAL);
    {
        uint8_t stack[512];

        blkioq_read(q, base, stack, sizeof(stack), NULL, 0);
        CHECK_RET(t_wait(q, NULL), -EFAULT);
    }
    /* The last sector works. */
    blkioq_read(q, VT_SIZE - 512, buf, 512, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
}

/* Memory the application maps itself (a memfd, shared). */
static void test_own_region(struct blkio *b, struct blkioq *q)
{
    size_t len = 2 * 1024 * 1024;
    int fd = memfd_create("test-vdpa", MFD_CLOEXEC);
    struct blkio_mem_region r;
    uint8_t *p;

    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)len) == 0);
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(p != MAP_FAILED);
    r = (struct blkio_mem_region){ .addr = p, .len = len, .fd = fd };
    CHECK_RET(blkio_map_mem_region(b, &r), 0);

    t_fill_pattern(p, len, 32u << 20, 4242);
    blkioq_write(q, 32u << 20, p, len, NULL, BLKIO_REQ_FUA);
    CHECK_RET(t_wait(q, NULL), 0);
    vt_check_image(p, len, 32u << 20, "write from the application's region");

    /* Unmapped: refused.  Mapped again: works. */
    blkio_unmap_mem_region(b, &r);
    blkioq_read(q, 32u << 20, p, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EFAULT);
    CHECK_RET(blkio_map_mem_region(b, &r), 0);
    memset(p, 0, len);
    blkioq_read(q, 32u << 20, p, len, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    {
        uint8_t *want = malloc(len);

        CHECK(want);
        t_fill_pattern(want, len, 32u << 20, 4242);
        CHECK(memcmp(want, p, len) == 0);
        free(want);
    }
    blkio_unmap_mem_region(b, &r);
    munmap(p, len);
    close(fd);
}

/*
 * VDUSE reaches only memory it can map from a file (the kernel hands it
 * the file): needs-mem-region-fd is true, as with libblkio, and memory
 * without an fd is refused at map time rather than accepted and never
 * reached, private or shared.  A private mapping of a file, fd given, is
 * refused too: the device would see the file, not our copy.
 */
static void test_anon_regions(struct blkio *b)
{
    size_t len = 256 * 1024;
    struct blkio_mem_region r;
    int fd = memfd_create("test-vdpa-private", MFD_CLOEXEC);
    uint8_t *p;

    CHECK(t_get_bool(b, "needs-mem-region-fd"));
    for (int shared = 0; shared < 2; shared++) {
        p = mmap(NULL, len, PROT_READ | PROT_WRITE,
                 (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS, -1, 0);
        CHECK(p != MAP_FAILED);
        r = (struct blkio_mem_region){ .addr = p, .len = len, .fd = -1 };
        CHECK_RET(blkio_map_mem_region(b, &r), -EINVAL);
        CHECK(strstr(blkio_get_error_msg(), "needs-mem-region-fd") != NULL);
        munmap(p, len);
    }

    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)len) == 0);
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(p != MAP_FAILED);
    r = (struct blkio_mem_region){ .addr = p, .len = len, .fd = fd };
    CHECK_RET(blkio_map_mem_region(b, &r), -EINVAL);
    CHECK(strstr(blkio_get_error_msg(), "shared") != NULL);
    munmap(p, len);
    close(fd);
}

/* The completion fd of a regular queue becomes readable when a request
 * completes. */
static void test_completion_fd(struct blkioq *q, uint8_t *buf)
{
    struct pollfd pfd = { .fd = blkioq_get_completion_fd(q),
                          .events = POLLIN };
    struct blkio_completion c;
    uint64_t v;

    CHECK(pfd.fd >= 0);
    /* It signals only once enabled (the manual). */
    blkioq_set_completion_fd_enabled(q, true);
    while (read(pfd.fd, &v, sizeof(v)) == sizeof(v))
        ;
    blkioq_read(q, 0, buf, 4096, NULL, 0);
    /* Submits; a fast device may already have completed it (0 or 1). */
    int got = blkioq_do_io(q, &c, 0, 1, NULL);
    CHECK(got == 0 || got == 1);
    if (got == 1) {
        /* Reaped at submission: nothing left to be signalled for. */
        CHECK_RET(c.ret, 0);
        return;
    }
    if (poll(&pfd, 1, 30000) != 1)
        T_FAIL("completion fd not signalled within 30 s");
    CHECK(read(pfd.fd, &v, sizeof(v)) == sizeof(v));
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, NULL), 1);
    CHECK_RET(c.ret, 0);
}

int main(void)
{
    const char *dev = vt_start(VT_SIZE);
    struct blkio *b = vt_open(dev, false, 1, 1);
    struct blkio_mem_region r;
    uint8_t *buf = t_region(b, 2 * VT_BUF, &r);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkioq *pq = blkio_get_poll_queue(b, 0);

    CHECK(q && pq);
    test_types(b, q, 0, buf, buf + VT_BUF, 100);
    printf("regular queue: every request type ok\n");
    test_types(b, pq, 16u << 20, buf, buf + VT_BUF, 200);
    printf("poll queue: every request type ok\n");
    test_own_region(b, q);
    printf("application memfd region: ok\n");
    test_anon_regions(b);
    printf("anonymous regions: private refused, shared ok\n");
    test_completion_fd(q, buf);
    printf("completion fd: ok\n");
    blkio_destroy(&b);
    return 0;
}
