/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * uring-common.h - the ring plumbing the io_uring and nvme-io_uring drivers
 * share: one io_uring per queue, a pool of request slots whose index is the
 * SQE's user_data, a backlog of requests that did not fit the rings, and
 * the process() loop (submit, reap, wait with deadline and signal mask).
 *
 * At most as many SQEs are handed to the kernel as the CQ ring has entries,
 * so the CQ can never overflow (the kernel would otherwise keep CQEs in
 * memory it may fail to allocate, and older kernels refuse submissions);
 * requests beyond that wait on the backlog, in order, and are issued as
 * completions free up room.
 *
 * A driver supplies, through struct uring_ops, how to prepare the next SQE
 * of a request and what to do with its CQE; everything else is here.
 */
#ifndef BLKIO_URING_COMMON_H
#define BLKIO_URING_COMMON_H

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

/* io_uring's limit on SQ entries since Linux 5.4 (IORING_MAX_ENTRIES). */
#define URING_MAX_ENTRIES 32768

#define URING_NONE UINT32_MAX

/* Slots come in chunks that never move: the kernel may read a slot (an
 * NVMe DSM range, an iovec copy) long after submission. */
#define URING_SLOTS_PER_CHUNK 64u

/*
 * Ring features with a fallback; LIBBLKIO_URING_DECLINE in the environment
 * (a number, these bits) makes the fallback run, for tests and for
 * measuring what a feature is worth (unset in normal use):
 * - FIXED_BUFS: mapped memory regions registered as io_uring fixed
 *   buffers, so that a request inside one is a READ_FIXED/WRITE_FIXED (or
 *   a passthrough command with IORING_URING_CMD_FIXED) and the kernel does
 *   not look up and pin its pages per request.  Without it (a kernel
 *   before 5.19 has no sparse buffer tables), plain requests.
 */
#define URING_DECLINE_FIXED_BUFS 2u

/* Fixed buffer table size per ring (sparse: one entry per mapped region,
 * the rest empty), and io_uring's limit on one registered buffer. */
#define URING_FIXED_MAX     64u
#define URING_FIXED_MAX_LEN (1ull << 30)

/* A mapped region published for the I/O path: a seqlock (odd seq while it
 * changes) guards [start, end); end 0 means unused. */
struct uring_fixed_entry {
    _Atomic uint32_t seq;
    _Atomic uintptr_t start;
    _Atomic uintptr_t end;
};

/* The regions of an instance that its rings have as fixed buffers; entry i
 * is buffer index i on every ring whose fixed_mask has bit i. */
struct uring_fixed_table {
    pthread_mutex_t lock;       /* map, unmap and queue set-up */
    struct uring_fixed_entry e[URING_FIXED_MAX];
};

/* The head of every driver slot: the first member of the driver's struct. */
struct uring_slot {
    uint32_t next;              /* free list or backlog link */
    bool in_flight;             /* a CQE is due for this slot */
};

struct uring_queue;

struct uring_ops {
    /* Fill sqe with slot idx's next step.  The shared code sets
     * user_data afterwards. */
    void (*prep)(struct uring_queue *uq, uint32_t idx,
                 struct io_uring_sqe *sqe);
    /* The CQE of slot idx arrived with result res: complete the request
     * or issue its next step (uring_issue). */
    void (*complete)(struct uring_queue *uq, uint32_t idx, int res);
};

struct uring_queue {
    struct io_uring ring;
    const struct uring_ops *ops;
    struct blkioq *q;
    uint8_t **chunks;           /* URING_SLOTS_PER_CHUNK slots each */
    uint32_t nchunks;
    uint32_t slot_size;
    uint32_t free_head;
    uint32_t backlog_head;
    uint32_t backlog_tail;
    uint32_t inflight;          /* SQEs prepared and not yet reaped */
    uint32_t max_inflight;      /* CQ ring size: no overflow possible */
    uint32_t bad_cqes;          /* CQEs that matched no slot in flight */
    struct uring_fixed_table *fixed;    /* NULL: no fixed buffers */
    _Atomic uint64_t fixed_mask;        /* table entries this ring has */
};

/* How a queue's ring is set up. */
struct uring_queue_config {
    const struct uring_ops *ops;
    size_t slot_size;           /* the driver's slot struct */
    unsigned setup_flags;       /* IORING_SETUP_*; IOPOLL added for poll
                                 * queues */
    bool need_fixed_file;       /* registering b->fd as file 0 must work
                                 * (else it is only tried) */
    struct uring_fixed_table *fixed;    /* register mapped regions as
                                         * fixed buffers (NULL: never) */
};

/*
 * Properties libblkio 1.5's io_uring drivers answer from creation on, with
 * values every file or namespace shares until connect refines them (set by
 * uring_create_defaults()).  A driver's own table is searched before the
 * core's, so listing them there changes only when they are readable.
 */
#define URING_CREATED_PROPS                                                  \
    BLKIO_PROP("can-grow", PROP_BOOL, ST_ALL, 0, can_grow, NULL),            \
    BLKIO_PROP("flush-needed", PROP_BOOL, ST_ALL, 0, flush_needed, NULL),    \
    BLKIO_PROP("max-mem-regions", PROP_UINT64, ST_ALL, 0, max_mem_regions,   \
               NULL),                                                        \
    BLKIO_PROP("max-queues", PROP_INT, ST_ALL, 0, max_queues, NULL),         \
    BLKIO_PROP("may-pin-mem-regions", PROP_BOOL, ST_ALL, 0,                  \
               may_pin_mem_regions, NULL),                                   \
    BLKIO_PROP("needs-mem-region-fd", PROP_BOOL, ST_ALL, 0,                  \
               needs_mem_region_fd, NULL),                                   \
    BLKIO_PROP("needs-mem-regions", PROP_BOOL, ST_ALL, 0, needs_mem_regions, \
               NULL),                                                        \
    BLKIO_PROP("num-entries", PROP_INT, ST_ALL, ST_CONNECTED, num_entries,   \
               blkio_prop_set_positive_int),                                 \
    BLKIO_PROP("supports-fua-natively", PROP_BOOL, ST_ALL, 0,                \
               supports_fua_natively, NULL),                                 \
    BLKIO_PROP("supports-poll-queues", PROP_BOOL, ST_ALL, 0,                 \
               supports_poll_queues, NULL)

/*
 * fixed-buffers: mapped regions become io_uring fixed buffers.  Off by
 * default, as libblkio 1.5 has it: a fixed buffer pins its pages, which
 * a program that was told may-pin-mem-regions is false may discard
 * (MADV_DONTNEED, a hole punched in its memfd), and the kernel would then
 * go on reading and writing the old pages.  Turning it on makes
 * may-pin-mem-regions true.  Writable until blkio_start().
 */
#define URING_FIXED_BUFFERS_PROP                                             \
    BLKIO_PROP("fixed-buffers", PROP_BOOL, ST_ALL,                           \
               ST_CREATED | ST_CONNECTED, fixed_buffers,                     \
               uring_prop_set_fixed_buffers)

int uring_prop_set_fixed_buffers(struct blkio *b,
                                 const struct blkio_property *p,
                                 const void *value);

/* driver->create(): the instance state (priv_size bytes, zeroed) and the
 * values of URING_CREATED_PROPS before connect. */
int uring_create_defaults(struct blkio *b, size_t priv_size);

/* Slot idx; idx must be below the pool size. */
static inline struct uring_slot *uring_slot(const struct uring_queue *uq,
                                            uint32_t idx)
{
    return (struct uring_slot *)(uq->chunks[idx / URING_SLOTS_PER_CHUNK] +
                                 (size_t)(idx % URING_SLOTS_PER_CHUNK) *
                                     uq->slot_size);
}

static inline uint32_t uring_nslots(const struct uring_queue *uq)
{
    return uq->nchunks * URING_SLOTS_PER_CHUNK;
}

/*
 * Set up the ring of queue q (num-entries SQEs, the completion fd
 * registered for regular queues) and slots for a full CQ.  Returns 0, or a
 * negative errno after blkio_set_error().  *fixed_file tells whether b->fd
 * is registered as file 0.
 */
int uring_queue_init(struct uring_queue *uq, struct blkioq *q,
                     const struct uring_queue_config *cfg, bool *fixed_file);

/*
 * Tear the ring down.  Requests still in the kernel are first submitted
 * (with a cancel-everything request when `cancel`) and waited for, a few
 * seconds at most: closing the ring would not wait, and the kernel would
 * go on reading and writing their buffers.  Returns false when some are
 * still out: memory the kernel may still read or write (slots, buffers)
 * must then stay allocated.  The slots are freed separately.
 */
bool uring_queue_exit(struct uring_queue *uq, bool cancel);

/* Free the slot pool (after uring_queue_exit()). */
void uring_queue_free_slots(struct uring_queue *uq);

/* Add a chunk of free slots (uring_slot_alloc()'s slow path); -ENOMEM. */
int uring_slots_grow(struct uring_queue *uq);

/* A free slot, the pool grown by a chunk when empty; -ENOMEM. */
static inline int uring_slot_alloc(struct uring_queue *uq, uint32_t *idx)
{
    if (BLKIO_UNLIKELY(uq->free_head == URING_NONE) &&
        uring_slots_grow(uq) < 0)
        return -ENOMEM;
    *idx = uq->free_head;
    uq->free_head = uring_slot(uq, *idx)->next;
    return 0;
}

static inline void uring_slot_free(struct uring_queue *uq, uint32_t idx)
{
    uring_slot(uq, idx)->next = uq->free_head;
    uq->free_head = idx;
}

/*
 * Hand slot idx's next step to the SQ, or put it on the backlog when the
 * backlog is not empty (nothing overtakes it), the SQ is full even after
 * passing what is there to the kernel, or the CQ could overflow.  Never
 * fails, never waits.
 */
void uring_issue(struct uring_queue *uq, uint32_t idx);

/*
 * uring_issue() for a driver that names its prep function: when nothing
 * waits on the backlog and the rings have room (every request in steady
 * state), the SQE is filled here with a direct call to prep, which the
 * compiler can inline, instead of through uq->ops->prep.  Anything else
 * takes uring_issue(), so behaviour is the same.
 */
static inline __attribute__((always_inline)) void
uring_issue_direct(struct uring_queue *uq, uint32_t idx,
                   void (*prep)(struct uring_queue *uq, uint32_t idx,
                                struct io_uring_sqe *sqe))
{
    struct io_uring_sqe *sqe;

    if (BLKIO_LIKELY(uq->backlog_head == URING_NONE &&
                     uq->inflight < uq->max_inflight) &&
        BLKIO_LIKELY((sqe = io_uring_get_sqe(&uq->ring)) != NULL)) {
        prep(uq, idx, sqe);
        io_uring_sqe_set_data64(sqe, idx);
        uring_slot(uq, idx)->in_flight = true;
        uq->inflight++;
        return;
    }
    uring_issue(uq, idx);
}

/*
 * driver->process(): reap, submit whatever is queued with the same
 * io_uring_enter that waits (one system call per do_io in steady state),
 * until min completions are in the completion ring.  Signals end the wait
 * with -EINTR only when sig is given (blkioq_do_io_interruptible); plain
 * blkioq_do_io() waits on.  CQEs that matched no slot in flight are
 * dropped and reported as -EIO.
 */
int uring_process(struct uring_queue *uq, int min,
                  const struct timespec *deadline, const sigset_t *sig);

/* The slot a CQE's user_data names, if it has a command in flight (then
 * no longer); otherwise counts a bad CQE and returns false.  Everything
 * the kernel posts is checked: a stray CQE must not complete a request. */
static inline bool uring_cqe_slot(struct uring_queue *uq,
                                  uint64_t user_data, uint32_t *idx)
{
    struct uring_slot *sl;

    if (BLKIO_UNLIKELY(user_data >= uring_nslots(uq))) {
        uq->bad_cqes++;
        return false;
    }
    sl = uring_slot(uq, (uint32_t)user_data);
    if (BLKIO_UNLIKELY(!sl->in_flight)) {
        uq->bad_cqes++;
        return false;
    }
    sl->in_flight = false;
    uq->inflight--;
    *idx = (uint32_t)user_data;
    return true;
}

/* The parts of uring_process() that uring_process_with() calls. */
bool uring_deadline_passed(const struct timespec *deadline);
int uring_wait(struct io_uring *ring, bool poll, unsigned want,
               const struct timespec *deadline, const sigset_t *sig);
void uring_backlog_drain(struct uring_queue *uq);
int uring_flush(struct uring_queue *uq);
int uring_report_bad_cqes(struct uring_queue *uq);

typedef void uring_complete_fn(struct uring_queue *uq, uint32_t idx,
                               int res);

/* Move every posted CQE into the completion ring (or into a request's
 * next step) with complete, then refill the SQ from the backlog.  The
 * tail is read once per pass (acquire: the CQEs before it are visible).
 * Each CQE is copied out and consumed (the head stored, release) before
 * complete() runs: a next step it issues may submit, and a completion the
 * kernel posts then must find room in the ring, not overflow it. */
static inline __attribute__((always_inline)) void
uring_reap_with(struct uring_queue *uq, uring_complete_fn *complete)
{
    unsigned head, tail, n;

    /* No CQE is due, and a backlog only builds up behind requests in
     * flight. */
    if (uq->inflight == 0)
        return;
    do {
        tail = io_uring_smp_load_acquire(uq->ring.cq.ktail);
        head = *uq->ring.cq.khead;
        n = tail - head;
        if (n) {
            while (head != tail) {
                const struct io_uring_cqe *cqe = &uq->ring.cq.cqes[
                    io_uring_cqe_index(&uq->ring, head,
                                       uq->ring.cq.ring_mask)];
                uint64_t user_data = cqe->user_data;
                int res = cqe->res;
                uint32_t idx;

                io_uring_smp_store_release(uq->ring.cq.khead, ++head);
                if (uring_cqe_slot(uq, user_data, &idx))
                    complete(uq, idx, res);
            }
        }
        /* Another pass is for the CQEs of what the backlog adds; with
         * no backlog there is nothing to wait for here. */
        if (uq->backlog_head == URING_NONE)
            return;
        uring_backlog_drain(uq);
    } while (n);
}

/*
 * uring_process() with the driver's complete function named, so that the
 * CQEs a wait brings are handed to it by a direct call the compiler can
 * inline, not through uq->ops->complete.
 */
static inline __attribute__((always_inline)) int
uring_process_with(struct uring_queue *uq, int min,
                   const struct timespec *deadline, const sigset_t *sig,
                   uring_complete_fn *complete)
{
    struct blkioq *q = uq->q;
    int ret;

    for (;;) {
        uint32_t have;
        unsigned want;

        uring_reap_with(uq, complete);
        have = blkioq_ring_count(q);
        if (have >= (uint32_t)min) {
            ret = uring_flush(uq);
            break;
        }
        want = (unsigned)min - have;
        if (want > uq->inflight)
            want = uq->inflight;
        if (want == 0) {
            ret = blkio_set_error(-EIO, "waiting for %d completions, %u "
                                  "of them not in the completion ring, "
                                  "but no request is in flight", min,
                                  (unsigned)min - have);
            break;
        }
        ret = uring_wait(&uq->ring, q->poll, want, deadline, sig);
        uring_reap_with(uq, complete);
        if (blkioq_ring_count(q) >= (uint32_t)min) {
            ret = 0;
            break;
        }
        if (ret == -ETIME || ret == -EINTR)
            break;
        if (ret < 0) {
            ret = blkio_set_error(ret, "io_uring_enter: %s",
                                  strerror(-ret));
            break;
        }
        if (deadline && uring_deadline_passed(deadline)) {
            ret = -ETIME;
            break;
        }
    }
    if (BLKIO_UNLIKELY(uq->bad_cqes))
        return uring_report_bad_cqes(uq);
    return ret;
}

/*
 * driver->set_completion_fd_enabled() of a ring with a registered eventfd.
 * Turning it on is followed by a full barrier, so that the caller's next
 * look at the CQ (the re-check the libblkio manual asks for) cannot be
 * ordered before the kernel can see the flag.  Before Linux 5.8 the
 * eventfd cannot be turned off and keeps signalling: spurious events,
 * which the API allows.  Returns whether completions are waiting in the
 * ring once it is enabled.
 */
bool uring_set_eventfd_enabled(struct io_uring *ring, bool enable);

/* The instance's table: set up at create, torn down at destroy. */
void uring_fixed_table_init(struct uring_fixed_table *t);
void uring_fixed_table_destroy(struct uring_fixed_table *t);

/*
 * driver->map_mem_region()/unmap_mem_region(): register the region as a
 * fixed buffer on every ring of the instance (each ring that cannot goes
 * on without: fixed buffers are only an optimisation, never an error),
 * and drop it again.  The I/O path finds it with uring_fixed_index().
 */
void uring_fixed_map(struct blkio *b, struct uring_fixed_table *t,
                     const struct blkio_mem_region *region);
void uring_fixed_unmap(struct blkio *b, struct uring_fixed_table *t,
                       const struct blkio_mem_region *region);

/* The fixed buffer index of this ring that holds [addr, addr + len), or
 * -1.  Costs one load when no region is registered. */
static inline int uring_fixed_index(struct uring_queue *uq, const void *addr,
                                    size_t len)
{
    uint64_t mask = atomic_load_explicit(&uq->fixed_mask,
                                         memory_order_acquire);
    uintptr_t a = (uintptr_t)addr;

    while (mask) {
        unsigned i = (unsigned)__builtin_ctzll(mask);
        struct uring_fixed_entry *e = &uq->fixed->e[i];
        uint32_t s1 = atomic_load_explicit(&e->seq, memory_order_acquire);
        uintptr_t start = atomic_load_explicit(&e->start,
                                               memory_order_relaxed);
        uintptr_t end = atomic_load_explicit(&e->end, memory_order_relaxed);

        atomic_thread_fence(memory_order_acquire);
        if (!(s1 & 1) &&
            s1 == atomic_load_explicit(&e->seq, memory_order_relaxed) &&
            a >= start && a < end && len <= end - a)
            return (int)i;
        mask &= mask - 1;
    }
    return -1;
}

/* The running kernel is at least major.minor (uname). */
bool uring_kernel_at_least(int major, int minor);

/* driver->start(): num-entries is a minimum (io_uring rounds it up to a
 * power of two), up to io_uring's maximum. */
int uring_check_num_entries(const struct blkio *b);

/* driver->connect(): exactly one of the path and fd properties is set. */
int uring_check_path_or_fd(const struct blkio *b);

#endif /* BLKIO_URING_COMMON_H */
