/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * fuzz-vhost-user.c - libblkio's virtio-blk-vhost-user driver, through the
 * public API only, against a backend the fuzzer plays (vu-peer.c): create,
 * connect, read the properties, start, map memory, submit a mix of
 * requests and reap them with a deadline, destroy.
 *
 * Built three times, each bending one part of what the backend says
 * (FUZZ_BEND): 1 the vhost-user control replies, 2 the virtio-blk config
 * space, 3 the used ring and status bytes of requests in flight.
 *
 * Besides sanitizer reports, the oracle is the API contract: every
 * request completes at most once, with 0 or a negative errno; reported
 * limits are sane; no call waits longer than its deadline (libFuzzer's
 * -timeout) on a backend that stopped talking.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blkio.h"
#include "vu-peer.h"

#ifndef FUZZ_BEND
#define FUZZ_BEND 1
#endif

#define DRV_MAX_REQS 16
#define DRV_SLOT     16384
#define DRV_BUF      (DRV_MAX_REQS * DRV_SLOT)

/* FUZZ_VERBOSE=1: say how far each input got (for writing seeds). */
static bool drv_verbose;

static void __attribute__((noreturn)) drv_bug(const char *what, long v)
{
    fprintf(stderr, "fuzz-vhost-user: %s (%ld): %s\n", what, v,
            blkio_get_error_msg());
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    drv_verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (vu_peer_listen() < 0) {
        perror("fuzz-vhost-user: listening socket");
        exit(1);
    }
    return 0;
}

/* Read what connect learnt from the device; check what must hold. */
static void drv_props(struct blkio *b)
{
    static const char *const u64s[] = {
        "capacity", "max-discard-len", "max-write-zeroes-len",
        "mem-region-alignment", "max-mem-regions",
    };
    static const char *const ints[] = {
        "request-alignment", "optimal-io-alignment", "optimal-io-size",
        "max-segments", "max-segment-len", "max-queues",
        "discard-alignment", "max-queue-size", "queue-size",
        "max-transfer", "buf-alignment",
    };
    uint64_t u;
    int v, ra;
    bool f;
    char *s = NULL;

    for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]); i++)
        blkio_get_uint64(b, u64s[i], &u);
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
        blkio_get_int(b, ints[i], &v);
    blkio_get_bool(b, "read-only", &f);
    blkio_get_bool(b, "needs-mem-regions", &f);
    if (blkio_get_str(b, "driver", &s) == 0)
        free(s);

    if (blkio_get_int(b, "request-alignment", &v) < 0 || v < 512 ||
        (v & (v - 1)))
        drv_bug("request-alignment is not a power of two >= 512", v);
    ra = v;
    if (blkio_get_int(b, "optimal-io-alignment", &v) < 0 || v < ra ||
        v % ra)
        drv_bug("optimal-io-alignment is not a multiple of "
                "request-alignment", v);
    if (blkio_get_int(b, "max-queues", &v) < 0 || v < 1)
        drv_bug("max-queues below 1", v);
    if (blkio_get_int(b, "max-segments", &v) < 0 || v < 1)
        drv_bug("max-segments below 1", v);
}

/* Queue request i of the mix, its buffer in slot i of the region.  The
 * iovecs must live until the request completes (or the instance is
 * destroyed): one pair per request, static. */
static void drv_submit(struct blkioq *q, uint8_t *buf, unsigned i,
                       uint8_t op)
{
    static struct iovec iovs[DRV_MAX_REQS][2];
    uint64_t start = (uint64_t)i * DRV_SLOT;
    size_t len = 512u << (i % 6);
    void *tag = (void *)(uintptr_t)(i + 1);
    uint8_t *p = buf + start;
    struct iovec *iov = iovs[i];

    iov[0] = (struct iovec){ p, len / 2 };
    iov[1] = (struct iovec){ p + len / 2, len - len / 2 };

    switch (op % 7) {
    case 0: blkioq_read(q, start, p, len, tag, 0); break;
    case 1: blkioq_write(q, start, p, len, tag, i & 1 ? BLKIO_REQ_FUA : 0);
            break;
    case 2: blkioq_flush(q, tag, 0); break;
    case 3: blkioq_write_zeroes(q, start, len, tag,
                                i & 1 ? BLKIO_REQ_NO_UNMAP : 0);
            break;
    case 4: blkioq_discard(q, start, len, tag, 0); break;
    case 5: blkioq_readv(q, start, iov, 2, tag, 0); break;
    default: blkioq_writev(q, start, iov, 2, tag, 0); break;
    }
}

/* Reap until every request is back or the backend stops answering;
 * true when all came back. */
static bool drv_reap(struct blkioq *q, unsigned nreq)
{
    struct blkio_completion c[DRV_MAX_REQS];
    bool done[DRV_MAX_REQS + 1] = { false };
    unsigned ndone = 0;

    while (ndone < nreq) {
        struct timespec t = { 0, 10 * 1000 * 1000 };
        int r = blkioq_do_io(q, c, 1, DRV_MAX_REQS, &t);

        if (r < 0)
            break;      /* timed out or the device is gone */
        if (r > DRV_MAX_REQS)
            drv_bug("do_io returned more completions than asked", r);
        for (int i = 0; i < r; i++) {
            uintptr_t tag = (uintptr_t)c[i].user_data;

            if (tag < 1 || tag > nreq)
                drv_bug("completion with a user_data never submitted",
                        (long)tag);
            if (done[tag])
                drv_bug("request completed twice", (long)tag);
            if (c[i].ret > 0 || c[i].ret < -4095)
                drv_bug("completion ret is not 0 or -errno", c[i].ret);
            done[tag] = true;
        }
        ndone += (unsigned)r;
    }
    if (drv_verbose)
        fprintf(stderr, "fuzz-vhost-user: %u of %u requests completed\n",
                ndone, nreq);
    return ndone == nreq;
}

static void drv_io(struct blkio *b, const uint8_t *ctl)
{
    struct blkio_mem_region r;
    struct blkioq *q;
    int maxq = 1, nq;
    unsigned nreq;

    blkio_get_int(b, "max-queues", &maxq);
    nq = 1 + ctl[0] % 2;
    if (nq > maxq)
        nq = maxq;
    blkio_set_int(b, "num-queues", nq);
    if (ctl[1] & 3)
        blkio_set_int(b, "queue-size", 1 << ((ctl[1] & 3) * 3));
    if (blkio_start(b) < 0) {
        if (drv_verbose)
            fprintf(stderr, "fuzz-vhost-user: start: %s\n",
                    blkio_get_error_msg());
        return;
    }
    if (blkio_alloc_mem_region(b, &r, DRV_BUF) < 0)
        return;
    if (blkio_map_mem_region(b, &r) == 0) {
        q = blkio_get_queue(b, ctl[2] % nq);
        nreq = 1 + ctl[3] % DRV_MAX_REQS;
        if (!q)
            drv_bug("no queue after a successful start", ctl[2] % nq);
        for (unsigned i = 0; i < nreq; i++)
            drv_submit(q, r.addr, i, (uint8_t)(ctl[4 + (i & 3)] + i));
        /* A region must not go while requests use it: with requests
         * still in flight, blkio_destroy() stops the queues first and
         * then releases the region. */
        if (!drv_reap(q, nreq))
            return;
        blkio_unmap_mem_region(b, &r);
    }
    blkio_free_mem_region(b, &r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct vu_peer_opts opts = {
        .bend_control = FUZZ_BEND == 1,
        .bend_config = FUZZ_BEND == 2,
        .bend_rings = FUZZ_BEND == 3,
    };
    struct fz in = { data, size };
    uint8_t ctl[8];
    struct vu_peer *p;
    struct blkio *b = NULL;

    fz_bytes(&in, ctl, sizeof(ctl));
    p = vu_peer_start(&in, &opts);
    if (blkio_create("virtio-blk-vhost-user", &b) < 0)
        drv_bug("blkio_create failed", 0);
    if (blkio_set_str(b, "path", vu_peer_path()) == 0 &&
        blkio_connect(b) == 0) {
        drv_props(b);
        drv_io(b, ctl);
    } else if (drv_verbose) {
        fprintf(stderr, "fuzz-vhost-user: connect: %s\n",
                blkio_get_error_msg());
    }
    blkio_destroy(&b);
    vu_peer_stop(p);
    return 0;
}
