/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: virtio-blk-vfio-pci I/O on QEMU's virtio-blk-pci through
 * VFIO: random-pattern data integrity with many requests in flight, one
 * thread per queue mode at the same time (blocking do_io on a regular
 * queue, the completion fd on another, busy polling on a poll queue);
 * vectored requests split across device limits; flush, FUA, write zeroes
 * with every flag, discard; memory the application mapped itself (no fd);
 * requests the library must refuse; a read-only instance; features
 * declined; queues removed while another one keeps working.
 * Usage: test-vfio-io (in the test VM).
 */
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "vfio-util.h"

#define VT_AREA     (4u << 20)      /* device bytes per integrity thread */
#define VT_MAXCHUNK (64u * 1024)
#define VT_DEPTH    48
#define VT_PASSES   2
#define VT_OWN_OFF  (3 * (uint64_t)VT_AREA + (2u << 20))

enum vt_mode { VT_BLOCKING, VT_EVENT, VT_POLL };
static const char *const vt_mode_name[] = { "blocking", "event", "poll" };

struct vt_job {
    struct blkioq *q;
    enum vt_mode mode;
    uint64_t dev_off;           /* start of this thread's device area */
    uint8_t *buf;               /* VT_AREA bytes inside a mapped region */
    uint64_t seed;
    unsigned long requests;
};

static uint32_t vt_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)*s;
}

/* Wait for completions the way this job's mode does; returns how many. */
static int vt_reap(struct vt_job *j, struct blkio_completion *c, int max)
{
    struct timespec t = { .tv_sec = 30 };
    int n;

    switch (j->mode) {
    case VT_EVENT: {
        struct pollfd p = { .fd = blkioq_get_completion_fd(j->q),
                            .events = POLLIN };
        uint64_t v;

        /* Whatever is already there first, then sleep on the fd. */
        n = blkioq_do_io(j->q, c, 0, max, NULL);
        if (n != 0)
            return n;
        if (poll(&p, 1, 30000) != 1)
            T_FAIL("event mode: no completion fd signal within 30 s");
        if (read(p.fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
            T_FAIL("event mode: read completion fd: %s", strerror(errno));
        return blkioq_do_io(j->q, c, 0, max, NULL);
    }
    case VT_BLOCKING:
    case VT_POLL:
    default:
        n = blkioq_do_io(j->q, c, 1, max, &t);
        if (n < 1)
            T_FAIL("%s mode: do_io returned %d (%s)",
                   vt_mode_name[j->mode], n, blkio_get_error_msg());
        return n;
    }
}

/*
 * Cut the area into chunks of random length (multiples of 512), write each
 * with this pass's pattern in random order, VT_DEPTH in flight, then read
 * everything back in random order through random iovec splits and verify.
 */
static void *vt_integrity(void *arg)
{
    struct vt_job *j = arg;
    uint32_t *starts = calloc(VT_AREA / 512 + 1, sizeof(*starts));
    uint32_t *order = calloc(VT_AREA / 512 + 1, sizeof(*order));
    struct iovec (*iovs)[4] = calloc(VT_AREA / 512 + 1, sizeof(*iovs));
    struct blkio_completion c[VT_DEPTH];
    uint32_t nchunks = 0;

    CHECK(starts && order && iovs);
    for (uint32_t off = 0; off < VT_AREA; nchunks++) {
        uint32_t len = (1 + vt_rand(&j->seed) % (VT_MAXCHUNK / 512)) * 512;

        starts[nchunks] = off;
        off += len;
        if (off > VT_AREA)
            off = VT_AREA;
    }
    starts[nchunks] = VT_AREA;

    for (uint32_t pass = 0; pass < VT_PASSES; pass++) {
        uint32_t gen = (uint32_t)j->seed ^ pass;

        for (int write = 1; write >= 0; write--) {
            uint32_t next = 0, done = 0, inflight = 0;

            t_shuffle(order, nchunks, vt_rand, &j->seed);
            if (write)
                t_fill_pattern(j->buf, VT_AREA, j->dev_off, gen);
            else
                memset(j->buf, 0x5a, VT_AREA);

            while (done < nchunks) {
                while (inflight < VT_DEPTH && next < nchunks) {
                    uint32_t k = order[next++];
                    uint32_t s = starts[k], len = starts[k + 1] - s;
                    uint8_t *b = j->buf + s;
                    void *ud = (void *)(uintptr_t)(k + 1);

                    if (write) {
                        blkioq_write(j->q, j->dev_off + s, b, len, ud,
                                     k % 7 == 0 ? BLKIO_REQ_FUA : 0);
                    } else {
                        /* Up to 4 segments at random byte boundaries. */
                        struct iovec *v = iovs[k];
                        int n = 0;
                        uint32_t pos = 0;

                        while (pos < len && n < 3) {
                            uint32_t l = 1 + vt_rand(&j->seed) % len;
                            if (l > len - pos)
                                l = len - pos;
                            v[n++] = (struct iovec){ b + pos, l };
                            pos += l;
                        }
                        if (pos < len)
                            v[n++] = (struct iovec){ b + pos, len - pos };
                        blkioq_readv(j->q, j->dev_off + s, v, n, ud, 0);
                    }
                    inflight++;
                    j->requests++;
                }
                int n = vt_reap(j, c, VT_DEPTH);
                for (int i = 0; i < n; i++)
                    if (c[i].ret != 0)
                        T_FAIL("%s mode: chunk %lu %s failed: %d (%s)",
                               vt_mode_name[j->mode],
                               (unsigned long)(uintptr_t)c[i].user_data - 1,
                               write ? "write" : "read", c[i].ret,
                               c[i].error_msg ? c[i].error_msg : "");
                inflight -= (uint32_t)n;
                done += (uint32_t)n;
            }
        }
        for (uint32_t k = 0; k < nchunks; k++) {
            uint32_t s = starts[k];
            if (!t_verify_pattern(j->buf + s, starts[k + 1] - s,
                                  j->dev_off + s, gen))
                T_FAIL("%s mode, pass %u: chunk %u at %llu reads back "
                       "different data", vt_mode_name[j->mode], pass, k,
                       (unsigned long long)(j->dev_off + s));
        }
    }
    free(starts);
    free(order);
    free(iovs);
    return NULL;
}

static void test_integrity(struct blkio *b, uint8_t *mem)
{
    struct vt_job jobs[3] = {
        { .q = blkio_get_queue(b, 0), .mode = VT_BLOCKING },
        { .q = blkio_get_queue(b, 1), .mode = VT_EVENT },
        { .q = blkio_get_poll_queue(b, 0), .mode = VT_POLL },
    };
    pthread_t th[3];

    for (int i = 0; i < 3; i++) {
        CHECK(jobs[i].q != NULL);
        jobs[i].dev_off = (uint64_t)i * VT_AREA;
        jobs[i].buf = mem + (size_t)i * VT_AREA;
        /* The completion fd signals only once enabled (the manual). */
        if (jobs[i].mode == VT_EVENT)
            blkioq_set_completion_fd_enabled(jobs[i].q, true);
        jobs[i].seed = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
        CHECK(pthread_create(&th[i], NULL, vt_integrity, &jobs[i]) == 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(th[i], NULL);
        printf("integrity, %s mode: %lu requests\n",
               vt_mode_name[jobs[i].mode], jobs[i].requests);
    }
}

/* One request on q: submitted, waited for, its result returned. */
#define VT_ONE(q, call) (call, t_wait((q), NULL))

static void test_request_types(struct blkio *b, struct blkioq *q, uint8_t *mem)
{
    const uint64_t base = 3 * (uint64_t)VT_AREA;   /* after integrity */
    const size_t len = 256 * 1024;
    uint8_t *buf = mem, *back = mem + len;
    struct iovec *v = calloc(1024, sizeof(*v));
    const char *msg;

    CHECK(v != NULL);
    /* FUA write, then flush, read back. */
    t_fill_pattern(buf, len, base, 11);
    CHECK_RET(VT_ONE(q, blkioq_write(q, base, buf, len, NULL,
                                     BLKIO_REQ_FUA)), 0);
    CHECK_RET(VT_ONE(q, blkioq_flush(q, NULL, 0)), 0);
    CHECK_RET(VT_ONE(q, blkioq_read(q, base, back, len, NULL, 0)), 0);
    CHECK(t_verify_pattern(back, len, base, 11));

    /* 512 segments of 512 bytes: more than seg_max, split into parts. */
    t_fill_pattern(buf, len, base, 12);
    for (int i = 0; i < 512; i++)
        v[i] = (struct iovec){ buf + (size_t)i * 512, 512 };
    CHECK_RET(VT_ONE(q, blkioq_writev(q, base, v, 512, NULL, 0)), 0);
    memset(back, 0, len);
    for (int i = 0; i < 512; i++)
        v[i] = (struct iovec){ back + (size_t)(511 - i) * 512, 512 };
    CHECK_RET(VT_ONE(q, blkioq_readv(q, base, v, 512, NULL, 0)), 0);
    for (int i = 0; i < 512; i++)
        CHECK(t_verify_pattern(back + (size_t)(511 - i) * 512, 512,
                               base + (uint64_t)i * 512, 12));

    /* Write zeroes with every flag combination. */
    {
        const uint32_t flags[] = { 0, BLKIO_REQ_NO_UNMAP,
                                   BLKIO_REQ_NO_FALLBACK,
                                   BLKIO_REQ_NO_UNMAP |
                                       BLKIO_REQ_NO_FALLBACK };

        for (size_t i = 0; i < 4; i++) {
            t_fill_pattern(buf, len, base, 20 + (uint32_t)i);
            CHECK_RET(VT_ONE(q, blkioq_write(q, base, buf, len, NULL, 0)),
                      0);
            CHECK_RET(VT_ONE(q, blkioq_write_zeroes(q, base + 4096,
                                                    len - 8192, NULL,
                                                    flags[i])), 0);
            memset(back, 0xee, len);
            CHECK_RET(VT_ONE(q, blkioq_read(q, base, back, len, NULL, 0)), 0);
            CHECK(t_verify_pattern(back, 4096, base, 20 + (uint32_t)i));
            CHECK(t_is_zero(back + 4096, len - 8192));
            CHECK(t_verify_pattern(back + len - 4096, 4096, base + len - 4096,
                                   20 + (uint32_t)i));
        }
    }
    /* A longer write zeroes (QEMU's limit is far above: one part). */
    CHECK_RET(VT_ONE(q, blkioq_write_zeroes(q, 8u << 20, 8u << 20, NULL, 0)),
              0);

    /* Discard: the data is then unspecified, but the request works. */
    CHECK_RET(VT_ONE(q, blkioq_discard(q, base, len, NULL, 0)), 0);
    CHECK_RET(VT_ONE(q, blkioq_read(q, base, back, len, NULL, 0)), 0);

    /* Refused by the library before the device. */
    {
        static uint8_t unmapped[4096] __attribute__((aligned(4096)));
        uint64_t cap = t_get_u64(b, "capacity");

        blkioq_read(q, 0, unmapped, 4096, NULL, 0);
        CHECK_RET(t_wait(q, &msg), -EFAULT);
        printf("unmapped buffer: %s\n", msg);
        blkioq_read(q, 100, buf, 512, NULL, 0);
        CHECK_RET(t_wait(q, &msg), -EINVAL);
        blkioq_read(q, cap - 512, buf, 1024, NULL, 0);
        CHECK_RET(t_wait(q, &msg), -EINVAL);
        blkioq_write_zeroes(q, cap, 512, NULL, 0);
        CHECK_RET(t_wait(q, &msg), -EINVAL);
        /* The last block works. */
        CHECK_RET(VT_ONE(q, blkioq_read(q, cap - 512, buf, 512, NULL, 0)),
                  0);
    }
    free(v);
}

/* Memory the application mapped itself, without an fd. */
static void test_own_memory(struct blkio *b, struct blkioq *q)
{
    const size_t len = 1u << 20;
    const uint64_t off = VT_OWN_OFF;
    uint8_t *m = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    struct blkio_mem_region r = { .addr = m, .len = 2 * len, .fd = -1 };

    CHECK(m != MAP_FAILED);
    CHECK_RET(blkio_map_mem_region(b, &r), 0);
    t_fill_pattern(m, len, off, 31);
    CHECK_RET(VT_ONE(q, blkioq_write(q, off, m, len, NULL, 0)), 0);
    CHECK_RET(VT_ONE(q, blkioq_read(q, off, m + len, len, NULL, 0)), 0);
    CHECK(t_verify_pattern(m + len, len, off, 31));
    blkio_unmap_mem_region(b, &r);
    /* Unmapped again: refused. */
    blkioq_read(q, off, m, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EFAULT);
    munmap(m, 2 * len);
}

static void test_read_only(const char *path)
{
    struct blkio *b = vt_open(path, true, 1, 0);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_mem_region r;
    uint8_t *buf = t_region(b, 1u << 20, &r);
    const char *msg;

    CHECK(t_get_bool(b, "read-only"));
    /* What test_own_memory() wrote is there. */
    CHECK_RET(VT_ONE(q, blkioq_read(q, VT_OWN_OFF, buf, 1u << 20, NULL, 0)),
              0);
    CHECK(t_verify_pattern(buf, 1u << 20, VT_OWN_OFF, 31));
    blkioq_write(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(t_wait(q, &msg), -EBADF);
    blkioq_write_zeroes(q, 0, 4096, NULL, 0);
    CHECK_RET(t_wait(q, &msg), -EBADF);
    blkioq_discard(q, 0, 4096, NULL, 0);
    CHECK_RET(t_wait(q, &msg), -EBADF);
    printf("read-only: %s\n", msg);
    CHECK_RET(VT_ONE(q, blkioq_flush(q, NULL, 0)), 0);
    t_region_free(b, &r);
    blkio_destroy(&b);
}

/*
 * Without indirect descriptors and event index (declined through the test
 * hook): the device accepts the smaller feature set and plain descriptor
 * chains with used-ring flags work, with many requests in flight.
 */
static void test_declined_features(const char *path)
{
    const size_t chunk = 16 * 1024, n = 64;
    const uint64_t base = VT_OWN_OFF + (2u << 20);
    struct blkio *b;
    struct blkioq *q;
    struct blkio_mem_region r;
    struct blkio_completion c[64];
    uint8_t *buf;
    size_t done;

    setenv("LIBBLKIO_VIRTIO_DECLINE_FEATURES", "0x30000000", 1);
    b = vt_open(path, false, 1, 0);
    unsetenv("LIBBLKIO_VIRTIO_DECLINE_FEATURES");
    q = blkio_get_queue(b, 0);
    buf = t_region(b, chunk * n, &r);
    for (int write = 1; write >= 0; write--) {
        if (write)
            t_fill_pattern(buf, chunk * n, base, 41);
        else
            memset(buf, 0, chunk * n);
        for (size_t i = 0; i < n; i++) {
            if (write)
                blkioq_write(q, base + i * chunk, buf + i * chunk, chunk,
                             NULL, 0);
            else
                blkioq_read(q, base + i * chunk, buf + i * chunk, chunk,
                            NULL, 0);
        }
        for (done = 0; done < n;) {
            struct timespec t = { .tv_sec = 30 };
            int got = blkioq_do_io(q, c, 1, 64, &t);

            CHECK(got >= 1);
            for (int i = 0; i < got; i++)
                CHECK_RET(c[i].ret, 0);
            done += (size_t)got;
        }
    }
    CHECK(t_verify_pattern(buf, chunk * n, base, 41));
    t_region_free(b, &r);
    blkio_destroy(&b);
}

/* Removing one queue leaves the device and the other queue working (a
 * single virtqueue cannot be stopped without VIRTIO_F_RING_RESET). */
static void test_remove_queue(const char *path)
{
    struct blkio *b = vt_open(path, false, 2, 1);
    struct blkio_mem_region r;
    uint8_t *buf = t_region(b, 65536, &r);
    struct blkioq *q0 = blkio_get_queue(b, 0);

    CHECK_RET(blkio_remove_queue(b, 1), 0);
    CHECK_RET(blkio_remove_poll_queue(b, 0), 0);
    CHECK(blkio_get_queue(b, 1) == NULL);
    CHECK_RET(VT_ONE(q0, blkioq_read(q0, VT_OWN_OFF, buf, 65536, NULL, 0)),
              0);
    CHECK(t_verify_pattern(buf, 65536, VT_OWN_OFF, 31));
    CHECK_RET(VT_ONE(q0, blkioq_flush(q0, NULL, 0)), 0);
    t_region_free(b, &r);
    blkio_destroy(&b);
}

int main(void)
{
    const char *path = vt_device();
    struct blkio *b = vt_open(path, false, 2, 1);
    struct blkio_mem_region r;
    uint8_t *mem = t_region(b, 3 * (size_t)VT_AREA, &r);

    test_integrity(b, mem);
    test_request_types(b, blkio_get_queue(b, 0), mem);
    test_own_memory(b, blkio_get_queue(b, 1));
    t_region_free(b, &r);
    blkio_destroy(&b);
    test_read_only(path);
    test_declined_features(path);
    test_remove_queue(path);
    printf("ok\n");
    return 0;
}
