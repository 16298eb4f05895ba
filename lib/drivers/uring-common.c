/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * uring-common.c - the ring plumbing shared by the io_uring based drivers
 * (see uring-common.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "uring-common.h"

/* LIBBLKIO_URING_DECLINE (URING_DECLINE_* bits, a number): fallbacks on
 * demand, for tests and for measuring what a feature is worth.  Read at
 * set-up, never per request. */
static unsigned uring_declined(void)
{
    const char *s = getenv("LIBBLKIO_URING_DECLINE");

    return s ? (unsigned)strtoul(s, NULL, 0) : 0;
}

/* user_data of the cancel request uring_drain() adds; no slot has it. */
#define URING_DRAIN_TAG UINT64_MAX

/* How long teardown waits for the kernel to finish requests. */
#define URING_DRAIN_SECONDS 5

/* After the kernel refused a submission for now: the pause before the
 * next try, and how often a submission ended by a signal is retried. */
#define URING_BACKOFF_NS (1000 * 1000)
#define URING_SUBMIT_TRIES 3

bool uring_deadline_passed(const struct timespec *deadline)
{
    struct timespec left;

    blkio_deadline_remaining(deadline, &left);
    return left.tv_sec == 0 && left.tv_nsec == 0;
}

/*
 * The kernel took no submission for now (-EAGAIN: no memory; -EBUSY:
 * completions to flush first).  With CQEs to reap the caller's reaping is
 * what helps; without, wait a moment (not past the deadline) before it
 * tries again, so that a lasting shortage is no busy loop.
 */
static void uring_backoff(struct io_uring *ring,
                          const struct timespec *deadline)
{
    if (!io_uring_cq_ready(ring))
        blkio_pause(URING_BACKOFF_NS, deadline);
}

/*
 * One io_uring_enter: submit everything queued and wait for up to `want`
 * CQEs.  Returns 0 when the caller should reap and look again, -ETIME once
 * the deadline has passed, -EINTR for a signal when sig was given, or
 * another negative errno.
 */
int uring_wait(struct io_uring *ring, bool poll, unsigned want,
               const struct timespec *deadline, const sigset_t *sig)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec kts;
    int ret;

    if (poll) {
        /* IOPOLL rings spin in the kernel until `want` CQEs and ignore
         * wait timeouts: with a deadline, poll once per round and let the
         * loop watch the clock. */
        ret = deadline ? io_uring_submit_and_get_events(ring)
                       : io_uring_submit_and_wait(ring, want);
    } else if (deadline || sig) {
        if (deadline) {
            struct timespec left;

            blkio_deadline_remaining(deadline, &left);
            kts.tv_sec = left.tv_sec;
            kts.tv_nsec = left.tv_nsec;
        }
        ret = io_uring_submit_and_wait_timeout(ring, &cqe, want,
                                               deadline ? &kts : NULL,
                                               (sigset_t *)sig);
    } else {
        ret = io_uring_submit_and_wait(ring, want);
    }

    if (ret >= 0)
        return 0;
    switch (ret) {
    case -EAGAIN:   /* no memory for the submission right now */
    case -EBUSY:    /* CQ overflow being flushed */
        uring_backoff(ring, deadline);
        return 0;
    case -EINTR:
        return sig ? -EINTR : 0;
    case -ETIME:
        /* liburing also says -ETIME when a wait ended early without a
         * CQE; only the clock decides. */
        return deadline && uring_deadline_passed(deadline) ? -ETIME : 0;
    default:
        return ret;
    }
}

/* ---- slots ---- */

/* Happens while the queue warms up to its peak depth, never per request
 * in steady state. */
int uring_slots_grow(struct uring_queue *uq)
{
    uint8_t **nc, *chunk;
    uint32_t base = uring_nslots(uq);

    if (uq->nchunks >= URING_NONE / URING_SLOTS_PER_CHUNK - 1)
        return -ENOMEM;
    nc = realloc(uq->chunks, (uq->nchunks + 1) * sizeof(*nc));
    if (!nc)
        return -ENOMEM;
    uq->chunks = nc;
    chunk = calloc(URING_SLOTS_PER_CHUNK, uq->slot_size);
    if (!chunk)
        return -ENOMEM;
    uq->chunks[uq->nchunks++] = chunk;
    for (uint32_t i = 0; i < URING_SLOTS_PER_CHUNK; i++)
        uring_slot(uq, base + i)->next =
            i + 1 < URING_SLOTS_PER_CHUNK ? base + i + 1 : uq->free_head;
    uq->free_head = base;
    return 0;
}

void uring_queue_free_slots(struct uring_queue *uq)
{
    for (uint32_t c = 0; c < uq->nchunks; c++)
        free(uq->chunks[c]);
    free(uq->chunks);
    uq->chunks = NULL;
    uq->nchunks = 0;
    uq->free_head = URING_NONE;
}

/* ---- ring set-up and teardown ---- */

/* Create the ring; its CQ size bounds the SQEs in flight. */
static int uring_ring_create(struct uring_queue *uq, struct blkioq *q,
                             unsigned flags)
{
    struct io_uring_params p;
    int ret;

    memset(&p, 0, sizeof(p));
    p.flags = flags | (q->poll ? IORING_SETUP_IOPOLL : 0);
    ret = io_uring_queue_init_params((unsigned)q->b->num_entries, &uq->ring,
                                     &p);
    if (ret < 0)
        return blkio_set_error(ret, "io_uring_queue_init with %d entries "
                               "(setup flags 0x%x) for queue %d: %s",
                               q->b->num_entries, p.flags, q->index,
                               strerror(-ret));
    uq->max_inflight = p.cq_entries;
    return 0;
}

/* Give the ring an empty fixed buffer table and the regions mapped so
 * far.  Failing is not an error: requests then go without. */
static void uring_fixed_queue_init(struct uring_queue *uq,
                                   struct uring_fixed_table *t)
{
    if (!t || !uq->q->b->fixed_buffers ||
        (uring_declined() & URING_DECLINE_FIXED_BUFS) ||
        io_uring_register_buffers_sparse(&uq->ring, URING_FIXED_MAX) < 0)
        return;
    pthread_mutex_lock(&t->lock);
    uq->fixed = t;
    for (unsigned i = 0; i < URING_FIXED_MAX; i++) {
        struct uring_fixed_entry *e = &t->e[i];
        uintptr_t start = atomic_load_explicit(&e->start,
                                               memory_order_relaxed);
        uintptr_t end = atomic_load_explicit(&e->end, memory_order_relaxed);
        struct iovec iov = { (void *)start, end - start };

        if (end && io_uring_register_buffers_update_tag(&uq->ring, i, &iov,
                                                        NULL, 1) == 1)
            atomic_fetch_or(&uq->fixed_mask, 1ull << i);
    }
    pthread_mutex_unlock(&t->lock);
}

int uring_queue_init(struct uring_queue *uq, struct blkioq *q,
                     const struct uring_queue_config *cfg, bool *fixed_file)
{
    int ret;

    memset(uq, 0, sizeof(*uq));
    uq->ops = cfg->ops;
    uq->q = q;
    uq->slot_size = (uint32_t)cfg->slot_size;
    uq->free_head = URING_NONE;
    uq->backlog_head = URING_NONE;
    uq->backlog_tail = URING_NONE;

    ret = uring_ring_create(uq, q, cfg->setup_flags);
    if (ret < 0)
        return ret;

    /* A registered file spares the kernel an fget/fput per request. */
    ret = io_uring_register_files(&uq->ring, &q->b->fd, 1);
    *fixed_file = ret == 0;
    if (ret < 0 && cfg->need_fixed_file) {
        blkio_set_error(ret, "io_uring_register_files for queue %d: %s",
                        q->index, strerror(-ret));
        goto err;
    }
    if (q->completion_fd >= 0) {
        ret = io_uring_register_eventfd(&uq->ring, q->completion_fd);
        if (ret < 0) {
            blkio_set_error(ret, "io_uring_register_eventfd for queue %d: "
                            "%s", q->index, strerror(-ret));
            goto err;
        }
        /* A registered eventfd starts out signalled for every CQE, as
         * libblkio 1.5's does: programs may poll it without enabling. */
        q->completion_fd_enabled = true;
    }
    uring_fixed_queue_init(uq, cfg->fixed);
    /* Slots for a full CQ up front: growing later is for callers that
     * keep more requests queued than the rings take. */
    while (uring_nslots(uq) < uq->max_inflight) {
        ret = uring_slots_grow(uq);
        if (ret < 0) {
            blkio_set_error(ret, "out of memory for queue %d slots",
                            q->index);
            goto err;
        }
    }
    return 0;

err:
    io_uring_queue_exit(&uq->ring);
    uring_queue_free_slots(uq);
    return ret;
}

/* Submit what is prepared, with a cancel-everything request when
 * `cancel`, then discard CQEs until every SQE in flight has one or the
 * drain time is up.  Returns how many are still out. */
static uint32_t uring_drain(struct uring_queue *uq, bool cancel)
{
    struct timespec deadline;
    uint32_t inflight = uq->inflight;

    if (inflight == 0)
        return 0;
    if (cancel) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&uq->ring);

        if (!sqe) {
            io_uring_submit(&uq->ring);
            sqe = io_uring_get_sqe(&uq->ring);
        }
        if (sqe) {
            io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ALL |
                                               IORING_ASYNC_CANCEL_ANY);
            io_uring_sqe_set_data64(sqe, URING_DRAIN_TAG);
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += URING_DRAIN_SECONDS;
    while (inflight > 0) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int ret = uring_wait(&uq->ring, uq->q->poll, 1, &deadline, NULL);

        io_uring_for_each_cqe(&uq->ring, head, cqe) {
            n++;
            if (cqe->user_data != URING_DRAIN_TAG && inflight > 0)
                inflight--;
        }
        io_uring_cq_advance(&uq->ring, n);
        if (ret == -ETIME || (ret < 0 && n == 0))
            break;
    }
    return inflight;
}

bool uring_queue_exit(struct uring_queue *uq, bool cancel)
{
    bool done = uring_drain(uq, cancel) == 0;

    io_uring_queue_exit(&uq->ring);
    return done;
}

/* ---- submission and completion ---- */

static void uring_backlog_push(struct uring_queue *uq, uint32_t idx)
{
    uring_slot(uq, idx)->next = URING_NONE;
    if (uq->backlog_tail == URING_NONE)
        uq->backlog_head = idx;
    else
        uring_slot(uq, uq->backlog_tail)->next = idx;
    uq->backlog_tail = idx;
}

/* uring_issue() for a slot that may go ahead of the backlog (its head). */
static void uring_issue_now(struct uring_queue *uq, uint32_t idx)
{
    struct io_uring_sqe *sqe;

    if (uq->inflight >= uq->max_inflight)
        goto backlog;
    sqe = io_uring_get_sqe(&uq->ring);
    if (BLKIO_UNLIKELY(!sqe)) {
        /* SQ full: pass what is there to the kernel to make room (that
         * does not wait for the device). */
        if (io_uring_submit(&uq->ring) < 0)
            goto backlog;
        sqe = io_uring_get_sqe(&uq->ring);
        if (!sqe)
            goto backlog;
    }
    uq->ops->prep(uq, idx, sqe);
    io_uring_sqe_set_data64(sqe, idx);
    uring_slot(uq, idx)->in_flight = true;
    uq->inflight++;
    return;

backlog:
    uring_backlog_push(uq, idx);
}

void uring_issue(struct uring_queue *uq, uint32_t idx)
{
    if (uq->backlog_head != URING_NONE)
        uring_backlog_push(uq, idx);
    else
        uring_issue_now(uq, idx);
}

/* Move backlogged requests into the SQ while there is room. */
void uring_backlog_drain(struct uring_queue *uq)
{
    while (uq->backlog_head != URING_NONE &&
           uq->inflight < uq->max_inflight &&
           io_uring_sq_space_left(&uq->ring) > 0) {
        uint32_t idx = uq->backlog_head;

        uq->backlog_head = uring_slot(uq, idx)->next;
        if (uq->backlog_head == URING_NONE)
            uq->backlog_tail = URING_NONE;
        uring_issue_now(uq, idx);
    }
}

static void uring_reap(struct uring_queue *uq)
{
    uring_reap_with(uq, uq->ops->complete);
}

/* Enough completions already: pass on what was queued without waiting.
 * A poll queue also polls once, so that do_io with min 0 makes progress.
 * With nothing prepared or in the kernel there is nothing to pass on (and
 * the ring's shared memory is left alone). */
int uring_flush(struct uring_queue *uq)
{
    int ret;

    if (uq->inflight == 0)
        return 0;
    for (int tries = 0;; tries++) {
        if (uq->q->poll)
            ret = io_uring_submit_and_get_events(&uq->ring);
        else if (io_uring_sq_ready(&uq->ring))
            ret = io_uring_submit(&uq->ring);
        else
            return 0;
        if (ret != -EINTR || tries == URING_SUBMIT_TRIES)
            break;
    }
    if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -EINTR)
        return blkio_set_error(ret, "io_uring_enter: %s", strerror(-ret));
    uring_reap(uq);
    /* Requests the kernel did not take for now are still in the SQ, and
     * no CQE of theirs will signal the completion fd: wake a program
     * that waits on it, so that it calls again and they go in then. */
    if (ret < 0 && io_uring_sq_ready(&uq->ring))
        blkioq_notify(uq->q);
    return 0;
}

int uring_report_bad_cqes(struct uring_queue *uq)
{
    uint32_t n = uq->bad_cqes;

    uq->bad_cqes = 0;
    return blkio_set_error(-EIO, "%s queue %d: dropped %u completions "
                           "that matched no request in flight",
                           uq->q->b->drv->name, uq->q->index, n);
}

int uring_process(struct uring_queue *uq, int min,
                  const struct timespec *deadline, const sigset_t *sig)
{
    return uring_process_with(uq, min, deadline, sig, uq->ops->complete);
}

int uring_create_defaults(struct blkio *b, size_t priv_size)
{
    b->priv = calloc(1, priv_size);
    if (!b->priv)
        return blkio_set_error(-ENOMEM, "out of memory creating %s "
                               "instance", b->drv->name);
    b->num_entries = 128;
    b->can_add_queues = true;
    b->max_queues = INT_MAX;
    b->max_mem_regions = UINT64_MAX;
    b->flush_needed = true;
    return 0;
}

int uring_check_num_entries(const struct blkio *b)
{
    if (b->num_entries > URING_MAX_ENTRIES)
        return blkio_set_error(-EINVAL, "num-entries %d exceeds io_uring's "
                               "maximum of %d", b->num_entries,
                               URING_MAX_ENTRIES);
    return 0;
}

int uring_check_path_or_fd(const struct blkio *b)
{
    /* Only -1 means "no fd", as in libblkio 1.5: any other value was set
     * by the caller, and a path beside it is a mistake to report. */
    if (b->path && b->fd != -1)
        return blkio_set_error(-EINVAL, "properties 'path' and 'fd' cannot "
                               "both be set (path '%s', fd %d)", b->path,
                               b->fd);
    if (!b->path && b->fd < -1)
        return blkio_set_error(-EBADF, "property 'fd' is %d, not a file "
                               "descriptor", b->fd);
    if (!b->path && b->fd < 0)
        return blkio_set_error(-EINVAL, "property 'path' or 'fd' must be "
                               "set before blkio_connect()");
    return 0;
}

bool uring_set_eventfd_enabled(struct io_uring *ring, bool enable)
{
    (void)io_uring_cq_eventfd_toggle(ring, enable);
    if (!enable)
        return false;
    /* Completions posted while it was off signalled nothing: report
     * them (blkioq_set_completion_fd_enabled signals the fd). */
    atomic_thread_fence(memory_order_seq_cst);
    return io_uring_cq_ready(ring) > 0;
}

/* ---- fixed buffers ---- */

void uring_fixed_table_init(struct uring_fixed_table *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->lock, NULL);
}

void uring_fixed_table_destroy(struct uring_fixed_table *t)
{
    pthread_mutex_destroy(&t->lock);
}

/* The uring_queue of a live queue of b (both drivers put it first). */
static struct uring_queue *uring_queue_of(struct blkioq *q)
{
    return q ? q->priv : NULL;
}

/* Call fn on every ring of b that has a fixed buffer table. */
static void uring_fixed_each(struct blkio *b,
                             void (*fn)(struct uring_queue *uq, unsigned i,
                                        const struct iovec *iov),
                             unsigned i, const struct iovec *iov)
{
    for (int k = 0; k < b->nqueues + b->npoll_queues; k++) {
        struct uring_queue *uq = uring_queue_of(
            k < b->nqueues ? b->queues[k] : b->poll_queues[k - b->nqueues]);

        if (uq && uq->fixed)
            fn(uq, i, iov);
    }
}

static void uring_fixed_ring_add(struct uring_queue *uq, unsigned i,
                                 const struct iovec *iov)
{
    if (io_uring_register_buffers_update_tag(&uq->ring, i, iov, NULL,
                                             1) == 1)
        atomic_fetch_or(&uq->fixed_mask, 1ull << i);
}

/* Clear the bit first, so that no new request names the buffer, then
 * empty the ring's entry (requests in flight keep their pages). */
static void uring_fixed_ring_drop(struct uring_queue *uq, unsigned i,
                                  const struct iovec *iov)
{
    uint64_t bit = 1ull << i;

    if (atomic_fetch_and(&uq->fixed_mask, ~bit) & bit)
        (void)io_uring_register_buffers_update_tag(&uq->ring, i, iov, NULL,
                                                   1);
}

/* Publish [start, end) in entry e (end 0: empty it). */
static void uring_fixed_entry_set(struct uring_fixed_entry *e,
                                  uintptr_t start, uintptr_t end)
{
    uint32_t seq = atomic_load_explicit(&e->seq, memory_order_relaxed);

    atomic_store_explicit(&e->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&e->start, start, memory_order_relaxed);
    atomic_store_explicit(&e->end, end, memory_order_relaxed);
    atomic_store_explicit(&e->seq, seq + 2, memory_order_release);
}

void uring_fixed_map(struct blkio *b, struct uring_fixed_table *t,
                     const struct blkio_mem_region *region)
{
    uintptr_t start = (uintptr_t)region->addr;
    struct iovec iov = { region->addr, region->len };

    if (!b->fixed_buffers || region->len > URING_FIXED_MAX_LEN ||
        (uring_declined() & URING_DECLINE_FIXED_BUFS))
        return;
    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < URING_FIXED_MAX; i++) {
        if (atomic_load_explicit(&t->e[i].end, memory_order_relaxed))
            continue;
        /* The entry first, then each ring's bit once its kernel table
         * holds the buffer. */
        uring_fixed_entry_set(&t->e[i], start, start + region->len);
        uring_fixed_each(b, uring_fixed_ring_add, i, &iov);
        break;
    }
    pthread_mutex_unlock(&t->lock);
}

void uring_fixed_unmap(struct blkio *b, struct uring_fixed_table *t,
                       const struct blkio_mem_region *region)
{
    uintptr_t start = (uintptr_t)region->addr;
    const struct iovec none = { NULL, 0 };

    pthread_mutex_lock(&t->lock);
    for (unsigned i = 0; i < URING_FIXED_MAX; i++) {
        struct uring_fixed_entry *e = &t->e[i];

        if (atomic_load_explicit(&e->start, memory_order_relaxed) != start ||
            atomic_load_explicit(&e->end, memory_order_relaxed) !=
                start + region->len)
            continue;
        uring_fixed_each(b, uring_fixed_ring_drop, i, &none);
        uring_fixed_entry_set(e, 0, 0);
        break;
    }
    pthread_mutex_unlock(&t->lock);
}

int uring_prop_set_fixed_buffers(struct blkio *b,
                                 const struct blkio_property *p,
                                 const void *value)
{
    (void)p;
    /* Connected: may-pin-mem-regions is readable already. */
    if (b->state == BLKIO_STATE_CONNECTED)
        b->may_pin_mem_regions = *(const bool *)value;
    return 0;
}

bool uring_kernel_at_least(int major, int minor)
{
    struct utsname u;
    int ma = 0, mi = 0;

    if (uname(&u) < 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
        return false;
    return ma > major || (ma == major && mi >= minor);
}
