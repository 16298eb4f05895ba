/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: virtio-blk-vhost-vdpa data integrity with many requests in
 * flight on two queues, one thread per queue, in each completion mode:
 * blocking (blkioq_do_io waits), event (poll the completion fd, then
 * do_io with min 0) and poll (two poll queues).  Every chunk is written
 * (some FUA), then overwritten in random pieces through 1-3 element
 * iovecs, then read back in random order and compared with a shadow copy;
 * after a flush the backend's image file must hold the same bytes.
 * Usage: test-vdpa-integrity [blocking|event|poll]... (default: all).
 */
#include <poll.h>
#include <pthread.h>
#include <sys/uio.h>

#include "vdpa-util.h"

#define VT_CHUNK    (64 * 1024)
#define VT_NCHUNK   48                      /* per queue */
#define VT_AREA     ((size_t)VT_CHUNK * VT_NCHUNK)
#define VT_DEPTH    16
#define VT_PIECES   192                     /* random overwrites per queue */
#define VT_SIZE     (64ull << 20)

enum vt_mode { VT_BLOCKING, VT_EVENT, VT_POLL };
static const char *const vt_mode_names[] = { "blocking", "event", "poll" };

struct vt_worker {
    struct blkio *b;
    struct blkioq *q;
    enum vt_mode mode;
    uint64_t base;              /* device offset of this queue's area */
    uint32_t gen;
    uint64_t rng;
    uint8_t *buf;               /* mapped region, one buffer per chunk */
    uint8_t *shadow;            /* what the device must hold */
    struct iovec iov[VT_NCHUNK][3];
    bool busy[VT_NCHUNK];
    unsigned inflight;
    unsigned reqs;
};

/* Wait for at least one completion and handle each: check success,
 * verify reads against the shadow. */
static void vt_reap(struct vt_worker *w, bool reading)
{
    struct blkio_completion c[VT_DEPTH];
    int n;

    if (w->mode == VT_EVENT) {
        struct pollfd pfd = { .fd = blkioq_get_completion_fd(w->q),
                              .events = POLLIN };
        uint64_t v;

        CHECK(pfd.fd >= 0);
        for (;;) {
            n = blkioq_do_io(w->q, c, 0, VT_DEPTH, NULL);
            CHECK(n >= 0);
            if (n > 0)
                break;
            /* Nothing yet: sleep until the device signals. */
            if (poll(&pfd, 1, 30000) != 1)
                T_FAIL("event mode: no completion fd signal within 30 s "
                       "with %u requests in flight", w->inflight);
            if (read(pfd.fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                T_FAIL("read completion fd: %s", strerror(errno));
        }
    } else {
        struct timespec t = { .tv_sec = 30 };

        n = blkioq_do_io(w->q, c, 1, VT_DEPTH, &t);
        if (n < 1)
            T_FAIL("%s mode: do_io returned %d (%s) with %u in flight",
                   vt_mode_names[w->mode], n, blkio_get_error_msg(),
                   w->inflight);
    }
    for (int i = 0; i < n; i++) {
        unsigned k = (unsigned)(uintptr_t)c[i].user_data;

        if (k >= VT_NCHUNK || !w->busy[k])
            T_FAIL("completion for unknown chunk %u", k);
        if (c[i].ret != 0)
            T_FAIL("%s mode: request on chunk %u failed: %d (%s)",
                   vt_mode_names[w->mode], k, c[i].ret,
                   c[i].error_msg ? c[i].error_msg : "");
        if (reading &&
            memcmp(w->buf + (size_t)k * VT_CHUNK,
                   w->shadow + (size_t)k * VT_CHUNK, VT_CHUNK) != 0)
            T_FAIL("%s mode: chunk %u at %llu read back different data",
                   vt_mode_names[w->mode], k,
                   (unsigned long long)(w->base +
                                        (uint64_t)k * VT_CHUNK));
        w->busy[k] = false;
        w->inflight--;
    }
}

static void *vt_work(void *arg)
{
    struct vt_worker *w = arg;
    uint32_t order[VT_NCHUNK];

    /* Phase 1: write every chunk, every third one with FUA. */
    t_shuffle(order, VT_NCHUNK, t_rand32, &w->rng);
    for (unsigned i = 0; i < VT_NCHUNK; i++) {
        unsigned k = order[i];
        size_t o = (size_t)k * VT_CHUNK;

        while (w->inflight == VT_DEPTH)
            vt_reap(w, false);
        t_fill_pattern(w->shadow + o, VT_CHUNK, w->base + o, w->gen);
        memcpy(w->buf + o, w->shadow + o, VT_CHUNK);
        w->busy[k] = true;
        w->inflight++;
        w->reqs++;
        blkioq_write(w->q, w->base + o, w->buf + o, VT_CHUNK,
                     (void *)(uintptr_t)k, k % 3 == 0 ? BLKIO_REQ_FUA : 0);
    }

    /* Phase 2: random sector-aligned pieces of idle chunks, vectored. */
    for (unsigned i = 0; i < VT_PIECES; i++) {
        unsigned k, sectors = VT_CHUNK / 512, s0, ns, niov;
        size_t o, po, plen, a, bcut;

        while (w->inflight == VT_DEPTH)
            vt_reap(w, false);
        do {
            k = t_rand32(&w->rng) % VT_NCHUNK;
            if (w->busy[k])
                vt_reap(w, false);
        } while (w->busy[k]);
        s0 = t_rand32(&w->rng) % sectors;
        ns = 1 + t_rand32(&w->rng) % (sectors - s0);
        o = (size_t)k * VT_CHUNK;
        po = o + (size_t)s0 * 512;
        plen = (size_t)ns * 512;
        t_fill_pattern(w->shadow + po, plen, w->base + po, w->gen + 1 + i);
        memcpy(w->buf + po, w->shadow + po, plen);
        /* Up to three segments with odd (not sector) boundaries. */
        niov = 1 + t_rand32(&w->rng) % 3;
        a = plen > 8 ? 1 + t_rand32(&w->rng) % (plen - 2) : plen;
        bcut = a + (plen - a > 1 ? t_rand32(&w->rng) % (plen - a) : 0);
        if (niov == 1 || plen < 4) {
            w->iov[k][0] = (struct iovec){ w->buf + po, plen };
            niov = 1;
        } else if (niov == 2 || bcut == a) {
            w->iov[k][0] = (struct iovec){ w->buf + po, a };
            w->iov[k][1] = (struct iovec){ w->buf + po + a, plen - a };
            niov = 2;
        } else {
            w->iov[k][0] = (struct iovec){ w->buf + po, a };
            w->iov[k][1] = (struct iovec){ w->buf + po + a, bcut - a };
            w->iov[k][2] = (struct iovec){ w->buf + po + bcut, plen - bcut };
        }
        w->busy[k] = true;
        w->inflight++;
        w->reqs++;
        blkioq_writev(w->q, w->base + po, w->iov[k], (int)niov,
                      (void *)(uintptr_t)k, i % 7 == 0 ? BLKIO_REQ_FUA : 0);
    }
    while (w->inflight)
        vt_reap(w, false);

    /* Phase 3: read everything back in random order, two segments each. */
    t_shuffle(order, VT_NCHUNK, t_rand32, &w->rng);
    memset(w->buf, 0xa5, VT_AREA);
    for (unsigned i = 0; i < VT_NCHUNK; i++) {
        unsigned k = order[i];
        size_t o = (size_t)k * VT_CHUNK, cut = 4096 + 512 * (k % 64);

        while (w->inflight == VT_DEPTH)
            vt_reap(w, true);
        w->iov[k][0] = (struct iovec){ w->buf + o, cut };
        w->iov[k][1] = (struct iovec){ w->buf + o + cut, VT_CHUNK - cut };
        w->busy[k] = true;
        w->inflight++;
        w->reqs++;
        blkioq_readv(w->q, w->base + o, w->iov[k], 2, (void *)(uintptr_t)k,
                     0);
    }
    while (w->inflight)
        vt_reap(w, true);
    return NULL;
}

static void vt_run_mode(const char *dev, enum vt_mode mode)
{
    bool poll = mode == VT_POLL;
    struct blkio *b = vt_open(dev, false, poll ? 0 : 2, poll ? 2 : 0);
    struct blkio_mem_region r[2];
    struct vt_worker w[2];
    pthread_t th[2];
    uint8_t *img = malloc(VT_AREA);
    struct timespec t0, t1;

    CHECK(img);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 2; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].b = b;
        w[i].mode = mode;
        w[i].q = poll ? blkio_get_poll_queue(b, i) : blkio_get_queue(b, i);
        CHECK(w[i].q);
        /* Each mode and queue has its own area, so stale data from an
         * earlier mode can never pass for fresh. */
        w[i].base = ((uint64_t)mode * 2 + (uint64_t)i) * VT_AREA;
        w[i].gen = 0x1000u * (uint32_t)(mode + 1) + (uint32_t)i * 0x100u;
        w[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(mode * 2 + i + 1);
        w[i].buf = t_region(b, VT_AREA, &r[i]);
        w[i].shadow = malloc(VT_AREA);
        CHECK(w[i].shadow);
        if (mode == VT_EVENT)
            blkioq_set_completion_fd_enabled(w[i].q, true);
    }
    for (int i = 0; i < 2; i++)
        CHECK_RET(pthread_create(&th[i], NULL, vt_work, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        CHECK_RET(pthread_join(th[i], NULL), 0);

    /* Durable and really in the backend. */
    blkioq_flush(w[0].q, NULL, 0);
    CHECK_RET(t_wait(w[0].q, NULL), 0);
    for (int i = 0; i < 2; i++) {
        vt_read_image(img, VT_AREA, w[i].base);
        if (memcmp(img, w[i].shadow, VT_AREA) != 0)
            T_FAIL("%s mode: the backend image differs from what queue "
                   "%d wrote", vt_mode_names[mode], i);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%s: %u + %u requests on 2 %squeues verified (%.1f s)\n",
           vt_mode_names[mode], w[0].reqs, w[1].reqs, poll ? "poll " : "",
           (double)(t1.tv_sec - t0.tv_sec) +
               (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    fflush(stdout);

    for (int i = 0; i < 2; i++) {
        blkio_unmap_mem_region(b, &r[i]);
        blkio_free_mem_region(b, &r[i]);
        free(w[i].shadow);
    }
    free(img);
    blkio_destroy(&b);
}

int main(int argc, char **argv)
{
    const char *dev = vt_start(VT_SIZE);
    bool any = false;

    for (int m = VT_BLOCKING; m <= VT_POLL; m++) {
        bool want = argc < 2;

        for (int i = 1; i < argc; i++)
            if (strcmp(argv[i], vt_mode_names[m]) == 0)
                want = true;
        if (want) {
            vt_run_mode(dev, (enum vt_mode)m);
            any = true;
        }
    }
    if (!any)
        T_FAIL("unknown mode; use blocking, event or poll");
    return 0;
}
