/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * io_uring driver: regular files and block device nodes through Linux
 * io_uring (liburing).
 *
 * Each queue owns one io_uring, set up, fed and reaped by the ring code
 * both io_uring drivers share (uring-common.c): a request lives in a slot
 * whose index is the SQE's user_data, so no memory is allocated per
 * request, and requests beyond what the CQ can take wait on a backlog.
 * Connect, which looks at the file or device, is in io-uring-file.c.
 *
 * Some requests take several steps: short reads and writes are resubmitted
 * for the remainder, write zeroes and discard try a list of fallocate modes
 * (and, for write zeroes without BLKIO_REQ_NO_FALLBACK, finally plain writes
 * from a zero buffer), and FUA on write zeroes adds an fdatasync.  Every step
 * goes through the same slot until the request completes once.
 *
 * A lone buffered request may skip the ring.  When a request is the only
 * one of an idle queue, do_io runs it in the caller:
 * - a read first tries preadv2(RWF_NOWAIT), the attempt io_uring makes
 *   inline anyway, without the ring's submission and completion
 *   bookkeeping; what is not in the page cache goes through the ring;
 * - anything else, when the caller waits for it (min_completions, no
 *   deadline, no signal mask), is made of plain pwritev2, fallocate and
 *   fdatasync calls: io_uring would hand each to a worker thread (ext4
 *   cannot do buffered writes without blocking, fallocate and fsync
 *   always block), costing two context switches and a wake-up for the
 *   same work.
 * Each step is described once (struct iou_call, io-uring-call.c) and made
 * either as an SQE or as that system call.  Batches, O_DIRECT, poll queues and FUSE always
 * use the ring.  Measured in bench/HISTORY.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "io-uring.h"
#include "uring-common.h"

/* Memcheck cannot see the kernel fill read buffers through io_uring; tell
 * it, so that programs using libblkio run clean under valgrind.  Whether
 * valgrind runs is asked once (each client request costs about 27
 * instructions even outside valgrind). */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define IOU_HAVE_MEMCHECK 1
static bool iou_under_valgrind;
#endif
#endif

struct iou_queue {
    struct uring_queue uq;      /* first: ring, slots, backlog */
    uint32_t held;              /* request held back for iou_run_held() */
    uint32_t caller_step;       /* request iou_run_blocking() is running */
    bool caller_step_again;     /* ... and it wants its next step */
    uint32_t cache_skip;        /* reads to send straight to the ring */
    uint32_t cache_backoff;     /* cache_skip after the next miss */
    bool cache_reads;           /* reads may try the page cache first */
    bool caller_runs;           /* buffered I/O: requests may be held */
    bool fixed_file;            /* the fd is registered as file 0 */
    int sqe_fd;                 /* what SQEs name the file by: 0 (fixed
                                 * file) or b->fd */
    uint8_t sqe_flags;          /* IOSQE_FIXED_FILE, IOSQE_ASYNC */
};

/* ---- properties ---- */

static const struct blkio_property iou_props[] = {
    BLKIO_PROP("direct", PROP_BOOL, ST_ALL, ST_CREATED, direct, NULL),
    /* Any value, as in libblkio 1.5: a negative one means "not set". */
    BLKIO_PROP("fd", PROP_INT, ST_ALL, ST_CREATED, fd, NULL),
    BLKIO_PROP("path", PROP_STR, ST_ALL, ST_CREATED, path, NULL),
    URING_FIXED_BUFFERS_PROP,
    URING_CREATED_PROPS,
};

/* ---- instance life cycle ---- */

static int iou_create(struct blkio *b)
{
    struct io_uring probe;
    int ret;

    /* The manual promises -ENOSYS from blkio_create() when the kernel has
     * no (or a disabled) io_uring, so find out now with a tiny ring. */
    ret = io_uring_queue_init(1, &probe, 0);
    if (ret == -ENOSYS || ret == -EPERM || ret == -EACCES)
        return blkio_set_error(-ENOSYS, "io_uring is not available: %s",
                               strerror(-ret));
    /* Out of fds, memory or locked memory passes: a later try may work,
     * and the program must not take io_uring to be missing for good. */
    if (ret < 0)
        return blkio_set_error(ret, "io_uring_setup, to see whether "
                               "io_uring is available: %s", strerror(-ret));
    io_uring_queue_exit(&probe);
    ret = uring_create_defaults(b, sizeof(struct iou_instance));
    if (ret == 0)
        uring_fixed_table_init(&((struct iou_instance *)b->priv)->fixed);
    return ret;
}

static int iou_start(struct blkio *b)
{
    return uring_check_num_entries(b);
}

static void iou_destroy(struct blkio *b)
{
    struct iou_instance *ii = b->priv;

    if (!ii)
        return;
    if (ii->zero_buf)
        munmap(ii->zero_buf, IOU_ZERO_CHUNK);
    if (ii->owns_fd && b->fd >= 0) {
        close(b->fd);
        b->fd = -1;
    }
    uring_fixed_table_destroy(&ii->fixed);
    free(ii);
    b->priv = NULL;
}

/* ---- queues ---- */

static inline struct iou_req *iou_slot(const struct iou_queue *iq,
                                       uint32_t idx)
{
    return (struct iou_req *)uring_slot(&iq->uq, idx);
}

static const struct uring_ops iou_ring_ops;

static int iou_queue_init(struct blkioq *q)
{
    struct iou_instance *ii = q->b->priv;
    struct uring_queue_config cfg = {
        .ops = &iou_ring_ops,
        .slot_size = sizeof(struct iou_req),
        /* A registered file is only an optimisation: a kernel that
         * refuses it gets the plain fd. */
        .need_fixed_file = false,
        .fixed = &ii->fixed,
    };
    struct iou_queue *iq;
    int ret;

#ifdef IOU_HAVE_MEMCHECK
    __atomic_store_n(&iou_under_valgrind, RUNNING_ON_VALGRIND != 0,
                     __ATOMIC_RELAXED);
#endif
    iq = calloc(1, sizeof(*iq));
    if (!iq)
        return blkio_set_error(-ENOMEM, "out of memory creating queue %d",
                               q->index);
    iq->held = URING_NONE;
    iq->caller_step = URING_NONE;
    iq->cache_backoff = 1;
    /* O_DIRECT goes to the device, where the ring keeps requests in
     * flight while the caller goes on; run in the caller, each would wait
     * for the device. */
    iq->caller_runs = !q->poll && !q->b->direct && !ii->force_async;
    iq->cache_reads = iq->caller_runs;

    ret = uring_queue_init(&iq->uq, q, &cfg, &iq->fixed_file);
    if (ret < 0) {
        free(iq);
        return ret;
    }
    iq->sqe_fd = iq->fixed_file ? 0 : q->b->fd;
    iq->sqe_flags = (uint8_t)((iq->fixed_file ? IOSQE_FIXED_FILE : 0) |
                              (ii->force_async ? IOSQE_ASYNC : 0));
    q->priv = iq;
    return 0;
}

static void iou_queue_destroy(struct blkioq *q)
{
    struct iou_queue *iq = q->priv;

    if (!iq)
        return;
    /* Cancel what can be cancelled and wait (bounded) for the rest, so
     * that the kernel does not fill the caller's buffers after
     * blkio_destroy() returned.  The kernel never reads the slots: the
     * queue goes either way. */
    uring_queue_exit(&iq->uq, true);
    uring_queue_free_slots(&iq->uq);
    free(iq);
    q->priv = NULL;
}

/* driver->map_mem_region(): the rings take the region as a fixed buffer
 * where they can; never fails (io_uring needs no regions). */
static int iou_map_mem_region(struct blkio *b,
                              const struct blkio_mem_region *region)
{
    uring_fixed_map(b, &((struct iou_instance *)b->priv)->fixed, region);
    return 0;
}

static void iou_unmap_mem_region(struct blkio *b,
                                 const struct blkio_mem_region *region)
{
    uring_fixed_unmap(b, &((struct iou_instance *)b->priv)->fixed, region);
}

static bool iou_set_completion_fd_enabled(struct blkioq *q, bool enable)
{
    struct iou_queue *iq = q->priv;

    return uring_set_eventfd_enabled(&iq->uq.ring, enable);
}

/* ---- requests ---- */

/* A read or write not yet started whose one buffer fits an SQE (nearly
 * every request): straight into the SQE, without describing the call
 * first. */
static inline bool iou_prep_rw_whole(struct iou_queue *iq,
                                     const struct iou_req *r,
                                     struct io_uring_sqe *sqe)
{
    const struct iovec *v = iou_req_iov(r);
    bool write = r->op == BLKIO_OP_WRITE;
    int buf_index;

    if (r->op > BLKIO_OP_WRITE || r->done != 0 || r->iovcnt != 1 ||
        v->iov_len > IOU_MAX_SQE_LEN)
        return false;
    buf_index = uring_fixed_index(&iq->uq, v->iov_base, v->iov_len);
    if (buf_index >= 0) {
        io_uring_prep_rw(write ? IORING_OP_WRITE_FIXED : IORING_OP_READ_FIXED,
                         sqe, iq->sqe_fd, v->iov_base, (unsigned)v->iov_len,
                         r->start);
        sqe->buf_index = (uint16_t)buf_index;
    } else {
        io_uring_prep_rw(write ? IORING_OP_WRITE : IORING_OP_READ, sqe,
                         iq->sqe_fd, v->iov_base, (unsigned)v->iov_len,
                         r->start);
    }
    sqe->rw_flags = write && r->fua ? RWF_DSYNC : 0;
    sqe->flags |= iq->sqe_flags;
    return true;
}

/* iou_prep() for every step but a whole single-buffer read or write. */
static __attribute__((noinline)) void
iou_prep_step(struct uring_queue *uq, uint32_t idx, struct io_uring_sqe *sqe)
{
    struct iou_queue *iq = (struct iou_queue *)uq;
    const struct iou_req *r = iou_slot(iq, idx);
    struct iou_call c;
    int buf_index = -1;

    iou_next_call(uq->q, r, &c);
    if (c.kind <= IOU_CALL_WRITE && c.iovcnt == 1)
        buf_index = uring_fixed_index(uq, c.iov[0].iov_base,
                                      c.iov[0].iov_len);
    iou_prep_call(sqe, iq->sqe_fd, &c, buf_index);
    sqe->flags |= iq->sqe_flags;
}

/* Fill sqe with slot idx's next step (struct uring_ops); inline where
 * uring_issue_direct() names it, so that a plain read or write is
 * written into the SQE without a call. */
static inline __attribute__((always_inline)) void
iou_prep(struct uring_queue *uq, uint32_t idx, struct io_uring_sqe *sqe)
{
    struct iou_queue *iq = (struct iou_queue *)uq;

    if (BLKIO_LIKELY(iou_prep_rw_whole(iq, iou_slot(iq, idx), sqe)))
        return;
    iou_prep_step(uq, idx, sqe);
}

/* Hand slot idx's next step to the ring (or its backlog), unless
 * iou_run_blocking() is making the steps of this request itself. */
static void iou_issue(struct iou_queue *iq, uint32_t idx)
{
    if (BLKIO_UNLIKELY(idx == iq->caller_step)) {
        iq->caller_step_again = true;
        return;
    }
    uring_issue_direct(&iq->uq, idx, iou_prep);
}

/*
 * A new request.  On an idle queue (nothing queued, nothing in the kernel)
 * it is held back for iou_run_held(); any later request puts it in the SQ
 * first, so that batches reach the kernel whole and in order.
 */
static void iou_start_request(struct blkioq *q, uint32_t idx)
{
    struct iou_queue *iq = q->priv;
    uint8_t op = iou_slot(iq, idx)->op;

    if (iq->held != URING_NONE) {
        uint32_t held = iq->held;

        iq->held = URING_NONE;
        iou_issue(iq, held);
    } else if (iq->caller_runs && iq->uq.inflight == 0) {
        if (op != BLKIO_OP_READ || (iq->cache_reads && iq->cache_skip == 0)) {
            iq->held = idx;
            return;
        }
        if (iq->cache_reads)
            iq->cache_skip--;
    }
    iou_issue(iq, idx);
}

/* Plan the steps of a write zeroes or discard request; false if there is
 * no way to do it here. */
static bool iou_plan(const struct blkio *b, const struct blkio_request *req,
                     struct iou_req *r)
{
    const struct iou_instance *ii = b->priv;
    bool unmap = !(req->flags & BLKIO_REQ_NO_UNMAP);
    bool fallback = !(req->flags & BLKIO_REQ_NO_FALLBACK);
    int n = 0;

    if (req->op == BLKIO_OP_DISCARD) {
        if (ii->is_blkdev)
            r->steps[n++] = IOU_M_DISCARD;
        /* Files: a hole.  Block devices without discard: deallocating
         * write zeroes (never the slow path), since discarded data may
         * read back as anything, zeroes included. */
        r->steps[n++] = IOU_M_PUNCH;
    } else if (ii->is_blkdev) {
        /* PUNCH_HOLE on a block device is write zeroes that may unmap and
         * never falls back to writing; ZERO_RANGE keeps the blocks
         * allocated and falls back to writing zeroes in the kernel. */
        if (unmap)
            r->steps[n++] = IOU_M_PUNCH;
        if (fallback || (!unmap && ii->dev_write_zeroes))
            r->steps[n++] = IOU_M_ZERO_RANGE;
    } else {
        if (unmap)
            r->steps[n++] = IOU_M_PUNCH;
        r->steps[n++] = IOU_M_ZERO_RANGE;
        if (fallback)
            r->steps[n++] = IOU_M_WRITE_ZEROES;
    }
    if (n == 0)
        return false;
    if (req->op == BLKIO_OP_WRITE_ZEROES && (req->flags & BLKIO_REQ_FUA))
        r->steps[n++] = IOU_M_FDATASYNC;
    r->steps[n] = IOU_M_END;
    return true;
}

/* A block device takes fallocate() ranges in whole logical blocks only. */
static bool iou_blkdev_misaligned(const struct blkio *b,
                                  const struct blkio_request *req)
{
    const struct iou_instance *ii = b->priv;

    return ii->is_blkdev && ii->lbs &&
           ((req->start | req->len) % ii->lbs) != 0;
}

/* Slot r takes request req's fields (every kind of request). */
static inline void iou_fill_slot(struct iou_req *r,
                                 const struct blkio_request *req)
{
    r->user_data = req->user_data;
    r->op = (uint8_t)req->op;
    r->start = req->start;
    r->len = req->len;
    r->done = 0;
    r->fua = (req->flags & BLKIO_REQ_FUA) != 0;
    r->step = 0;
    r->iovcnt = req->iovcnt;
    r->iov = req->iov;
    r->single_iov = false;
    if (req->iov == &req->single) {
        /* blkioq_read()/write(): the iovec lives on the caller's stack. */
        r->single = req->single;
        r->single_iov = true;
    }
}

/* iou_queue_request() for everything but a plain read or write. */
static __attribute__((noinline)) int
iou_queue_request_other(struct blkioq *q, const struct blkio_request *req)
{
    struct iou_queue *iq = q->priv;
    struct iou_req *r;
    uint32_t idx;

    switch (req->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
        if (req->iovcnt > IOU_MAX_SEGMENTS) {
            /* The kernel's limit (UIO_MAXIOV): name it. */
            _Static_assert(IOU_MAX_SEGMENTS == 1024, "the message says 1024");
            blkioq_fail(q, req->user_data, -EINVAL, "iovcnt is above "
                        "max-segments (1024)");
            return 0;
        }
        if (BLKIO_UNLIKELY(req->len == 0)) {
            /* Nothing to transfer: complete without the kernel. */
            blkioq_fail(q, req->user_data, 0, NULL);
            return 0;
        }
        break;
    case BLKIO_OP_FLUSH:
    case BLKIO_OP_WRITE_ZEROES:
    case BLKIO_OP_DISCARD:
        /* IOPOLL rings only take reads and writes. */
        if (q->poll)
            return -ENOTSUP;
        break;
    default:
        return -ENOTSUP;
    }

    if (uring_slot_alloc(&iq->uq, &idx) < 0)
        return -ENOMEM;
    r = iou_slot(iq, idx);
    iou_fill_slot(r, req);

    if (BLKIO_LIKELY(req->op <= BLKIO_OP_WRITE)) {
        /* Checked above. */
    } else if (req->op == BLKIO_OP_FLUSH) {
        r->steps[0] = IOU_M_FDATASYNC;
        r->steps[1] = IOU_M_END;
    } else if (req->op == BLKIO_OP_WRITE_ZEROES ||
               req->op == BLKIO_OP_DISCARD) {
        /* fallocate() refuses an empty range, and libblkio 1.5 passes
         * that on: -EINVAL. */
        if (req->len == 0) {
            uring_slot_free(&iq->uq, idx);
            blkioq_fail(q, req->user_data, -EINVAL, req->op ==
                        BLKIO_OP_DISCARD ? "discard of length 0" :
                        "write zeroes of length 0");
            return 0;
        }
        if (req->op == BLKIO_OP_WRITE_ZEROES && iou_blkdev_misaligned(q->b,
                                                                      req)) {
            /* The kernel refuses it (every fallocate mode would say
             * -EINVAL), as libblkio 1.5 reports. */
            uring_slot_free(&iq->uq, idx);
            blkioq_fail(q, req->user_data, -EINVAL, "write zeroes range is "
                        "not a multiple of the block device's logical "
                        "block size");
            return 0;
        }
        if (!iou_plan(q->b, req, r)) {
            uring_slot_free(&iq->uq, idx);
            return -ENOTSUP;
        }
    }

    iou_start_request(q, idx);
    return 0;
}

/* driver->queue_request(): a read or write with data (nearly every
 * request) takes the short way; the rest is iou_queue_request_other(). */
static int iou_queue_request(struct blkioq *q,
                             const struct blkio_request *req)
{
    struct iou_queue *iq = q->priv;
    uint32_t idx;

    if (BLKIO_UNLIKELY(req->op > BLKIO_OP_WRITE || req->len == 0 ||
                       req->iovcnt > IOU_MAX_SEGMENTS))
        return iou_queue_request_other(q, req);
    if (uring_slot_alloc(&iq->uq, &idx) < 0)
        return -ENOMEM;
    iou_fill_slot(iou_slot(iq, idx), req);
    iou_start_request(q, idx);
    return 0;
}

static const char *iou_op_error(enum blkio_op op)
{
    switch (op) {
    case BLKIO_OP_READ:
        return "io_uring read failed";
    case BLKIO_OP_WRITE:
        return "io_uring write failed";
    case BLKIO_OP_WRITE_ZEROES:
        return "io_uring write zeroes failed";
    case BLKIO_OP_DISCARD:
        return "io_uring discard failed";
    case BLKIO_OP_FLUSH:
        return "io_uring flush failed";
    default:
        return "io_uring request failed";
    }
}

static void iou_finish(struct blkioq *q, uint32_t idx, int ret,
                       const char *msg)
{
    struct iou_queue *iq = q->priv;
    const struct iou_req *r = iou_slot(iq, idx);
    void *user_data = r->user_data;
    enum blkio_op op = (enum blkio_op)r->op;

    uring_slot_free(&iq->uq, idx);
    /* A success carries no message. */
    blkioq_complete(q, user_data, ret,
                    ret == 0 ? NULL : msg ? msg : iou_op_error(op));
}

/* A read is complete: its buffers hold data now. */
static void iou_mark_read_defined(const struct iou_req *r)
{
#ifdef IOU_HAVE_MEMCHECK
    const struct iovec *iov = iou_req_iov(r);

    if (!__atomic_load_n(&iou_under_valgrind, __ATOMIC_RELAXED))
        return;
    for (int k = 0; k < r->iovcnt; k++)
        VALGRIND_MAKE_MEM_DEFINED(iov[k].iov_base, iov[k].iov_len);
#else
    (void)r;
#endif
}

/* What a read or write has not transferred reads as zeroes: end of file
 * of a regular file (which reads like a hole). */
static void iou_zero_rest(const struct iou_req *r)
{
    const struct iovec *iov = iou_req_iov(r);
    uint64_t skip = r->done;

    for (int k = 0; k < r->iovcnt; k++) {
        if (skip >= iov[k].iov_len) {
            skip -= iov[k].iov_len;
            continue;
        }
        memset((char *)iov[k].iov_base + skip, 0, iov[k].iov_len - skip);
        skip = 0;
    }
}

/*
 * A write or write zeroes that ended at `end` succeeded on a regular file
 * (can-grow).  If that is past the capacity, the file grew: the capacity
 * property follows the file's size, as libblkio's does.  Only requests
 * that end past the capacity pay for the fstat.  Queues of several
 * threads may race here; the largest size wins.
 */
static void iou_grow_capacity(struct blkio *b, uint64_t end)
{
    uint64_t cap = __atomic_load_n(&b->capacity, __ATOMIC_RELAXED);
    struct stat st;

    if (BLKIO_LIKELY(end <= cap) || fstat(b->fd, &st) < 0)
        return;
    while ((uint64_t)st.st_size > cap &&
           !__atomic_compare_exchange_n(&b->capacity, &cap,
                                        (uint64_t)st.st_size, true,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

/* A read or write step returned res. */
static void iou_rw_done(struct blkioq *q, uint32_t idx, int res)
{
    struct iou_queue *iq = q->priv;
    struct iou_instance *ii = q->b->priv;
    struct iou_req *r = iou_slot(iq, idx);

    if (res < 0) {
        iou_finish(q, idx, res, NULL);
        return;
    }
    if (res == 0) {
        /* No progress.  A read of a regular file that hit end of file:
         * the rest reads as zeroes, like a hole.  Anything else must not
         * pass as success. */
        if (r->op == BLKIO_OP_READ && ii->is_reg) {
            iou_zero_rest(r);
            iou_mark_read_defined(r);
            iou_finish(q, idx, 0, NULL);
        } else {
            iou_finish(q, idx, -EIO, r->op == BLKIO_OP_READ ?
                       "short read: the device returned no data" :
                       "short write: the device accepted no data");
        }
        return;
    }
    r->done += (uint64_t)res;
    if (r->done < r->len) {
        iou_issue(iq, idx);  /* the remainder */
        return;
    }
    if (r->op == BLKIO_OP_READ)
        iou_mark_read_defined(r);
    else if (q->b->can_grow)
        iou_grow_capacity(q->b, r->start + r->len);
    iou_finish(q, idx, 0, NULL);
}

/* A step of a write zeroes, discard or flush request returned res: the
 * request is done, or takes its next step. */
static void iou_step_done(struct blkioq *q, uint32_t idx, int res)
{
    struct iou_queue *iq = q->priv;
    struct iou_req *r = iou_slot(iq, idx);
    uint8_t m = r->steps[r->step];

    if (m == IOU_M_WRITE_ZEROES && res > 0) {
        r->done += (uint64_t)res;
        if (r->done < r->len) {
            iou_issue(iq, idx);
            return;
        }
        res = 0;
    } else if (m == IOU_M_WRITE_ZEROES && res == 0) {
        res = -EIO;
    }

    if (res == -EOPNOTSUPP || (res == -EINVAL && m != IOU_M_FDATASYNC &&
                               m != IOU_M_WRITE_ZEROES)) {
        /* This mode is not available here: try the next one, skipping a
         * trailing fdatasync that only belongs to a successful step. */
        uint8_t next = r->steps[r->step + 1];

        if (next == IOU_M_END || next == IOU_M_FDATASYNC) {
            iou_finish(q, idx, -ENOTSUP,
                       r->op == BLKIO_OP_DISCARD ?
                       "discard is not supported by this file or device" :
                       "write zeroes is not supported by this file or "
                       "device without falling back to writing zeroes");
            return;
        }
        r->step++;
        iou_issue(iq, idx);
        return;
    }
    if (res < 0) {
        iou_finish(q, idx, res, NULL);
        return;
    }

    /* Success: skip the remaining alternatives, keep a trailing fdatasync
     * (FUA) if this was not it. */
    if (m != IOU_M_FDATASYNC) {
        int k = r->step + 1;

        while (r->steps[k] != IOU_M_END && r->steps[k] != IOU_M_FDATASYNC)
            k++;
        if (r->steps[k] == IOU_M_FDATASYNC) {
            r->step = (uint8_t)k;
            iou_issue(iq, idx);
            return;
        }
    }
    if (r->op == BLKIO_OP_WRITE_ZEROES && q->b->can_grow)
        iou_grow_capacity(q->b, r->start + r->len);
    iou_finish(q, idx, 0, NULL);
}

/* One step of slot idx returned res (a CQE's, or the system call's made
 * in the caller): complete the request or take its next step. */
static void iou_handle_cqe(struct blkioq *q, uint32_t idx, int res)
{
    struct iou_queue *iq = q->priv;
    uint8_t op = iou_slot(iq, idx)->op;

    if (op == BLKIO_OP_READ || op == BLKIO_OP_WRITE)
        iou_rw_done(q, idx, res);
    else
        iou_step_done(q, idx, res);
}

/* struct uring_ops: a CQE for slot idx. */
static void iou_complete(struct uring_queue *uq, uint32_t idx, int res)
{
    iou_handle_cqe(uq->q, idx, res);
}

static const struct uring_ops iou_ring_ops = {
    .prep = iou_prep,
    .complete = iou_complete,
};

/* After a miss, this many reads (doubling per miss in a row, up to the
 * maximum) go straight to the ring: data that is not cached tends to stay
 * so, and every miss costs a system call. */
#define IOU_CACHE_BACKOFF_MAX 64

/*
 * Copy the held read from the page cache if it is all there, without
 * blocking, as io_uring's own first attempt would.  Returns false when
 * nothing was read: the ring does it.  Errors other than "would block" are
 * left to the ring too, so that they are reported the same way on both
 * paths.
 */
static bool iou_read_cached(struct blkioq *q, uint32_t idx)
{
    struct iou_queue *iq = q->priv;
    struct iou_req *r = iou_slot(iq, idx);
    struct iou_call c;
    int res;

    iou_next_call(q, r, &c);
    res = iou_call_now(q->b->fd, &c, RWF_NOWAIT);
    if (res >= 0) {               /* 0: end of file, as from the ring */
        iq->cache_backoff = 1;
        iou_handle_cqe(q, idx, res);    /* a partial read resubmits */
        return true;
    }
    if (res == -EAGAIN) {
        iq->cache_skip = iq->cache_backoff;
        if (iq->cache_backoff < IOU_CACHE_BACKOFF_MAX)
            iq->cache_backoff *= 2;
    } else if (res == -EOPNOTSUPP) {
        iq->cache_reads = false;    /* the file system has no RWF_NOWAIT */
    }
    return false;
}

/*
 * Run the held request's steps in the calling thread, which is about to
 * sleep until it completes anyway.  io_uring runs what it cannot do
 * without blocking on one of its worker threads: buffered writes on file
 * systems without RWF_NOWAIT for them (ext4), and every fallocate and
 * fdatasync; that is two context switches and a wake-up per step for the
 * same work.  A step interrupted (EINTR, EAGAIN) goes to the ring.
 */
static void iou_run_blocking(struct blkioq *q, uint32_t idx)
{
    struct iou_queue *iq = q->priv;
    struct iou_call c;
    int res;

    do {
        iou_next_call(q, iou_slot(iq, idx), &c);
        res = iou_call_now(q->b->fd, &c, 0);
        if (res == -EINTR || res == -EAGAIN) {
            iou_issue(iq, idx);
            return;
        }
        /* Completes the request, or asks iou_issue() for the next step
         * (the rest of a short write, the next fallocate mode, FUA's
         * fdatasync), which lands back here. */
        iq->caller_step = idx;
        iq->caller_step_again = false;
        iou_handle_cqe(q, idx, res);
        iq->caller_step = URING_NONE;
    } while (iq->caller_step_again);
}

/*
 * The held request (see iou_start_request()): a read tries the page cache;
 * anything else runs here when the caller waits for it without a deadline
 * or signal mask (a blocking system call could overrun either).
 * Otherwise, or for what that did not do, the ring.
 */
static void iou_run_held(struct blkioq *q, bool caller_waits)
{
    struct iou_queue *iq = q->priv;
    uint32_t idx = iq->held;
    uint32_t completions = blkioq_ring_count(q);

    iq->held = URING_NONE;
    if (iou_slot(iq, idx)->op == BLKIO_OP_READ) {
        if (!iou_read_cached(q, idx))
            iou_issue(iq, idx);
    } else if (caller_waits) {
        iou_run_blocking(q, idx);
    } else {
        iou_issue(iq, idx);
    }
    if (blkioq_ring_count(q) != completions)
        q->completed_unsignalled = true;
}

static int iou_process(struct blkioq *q, int min,
                       const struct timespec *deadline, const sigset_t *sig)
{
    struct iou_queue *iq = q->priv;

    if (iq->held != URING_NONE)
        iou_run_held(q, (uint32_t)min > blkioq_ring_count(q) && !deadline &&
                        !sig);

    return uring_process_with(&iq->uq, min, deadline, sig, iou_complete);
}

const struct blkio_driver blkio_driver_io_uring = {
    .name = "io_uring",
    .props = iou_props,
    .nprops = sizeof(iou_props) / sizeof(iou_props[0]),
    .create = iou_create,
    .connect = iou_connect,
    .start = iou_start,
    .destroy = iou_destroy,
    .queue_init = iou_queue_init,
    .queue_destroy = iou_queue_destroy,
    .queue_request = iou_queue_request,
    .process = iou_process,
    .set_completion_fd_enabled = iou_set_completion_fd_enabled,
    .map_mem_region = iou_map_mem_region,
    .unmap_mem_region = iou_unmap_mem_region,
    .refresh_property = iou_refresh_property,
};
