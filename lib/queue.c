/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Queues: creation and removal with stable indices, request validation,
 * the per-queue completion ring and blkioq_do_io().
 *
 * Every request a caller queues is counted as outstanding until do_io
 * hands its completion out, whether the driver ran it or the core failed it
 * up front, so "min_completions exceeds what is in flight" is one compare
 * and a failed request is completed exactly once, like any other.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"
#include "sys-io.h"

#define QUEUE_INITIAL_RING 256u

/* ---- completion ring ---- */

static int queue_ring_grow(struct blkioq *q)
{
    uint32_t cap = q->cring_mask + 1;
    uint32_t ncap = cap * 2;
    struct blkio_completion *nr;
    uint32_t count = blkioq_ring_count(q);

    if (ncap == 0 || ncap > (1u << 30))
        return -ENOMEM;
    nr = malloc((size_t)ncap * sizeof(*nr));
    if (!nr)
        return -ENOMEM;
    for (uint32_t i = 0; i < count; i++)
        nr[i] = q->cring[(q->cring_head + i) & q->cring_mask];
    free(q->cring);
    q->cring = nr;
    q->cring_mask = ncap - 1;
    q->cring_head = 0;
    q->cring_tail = count;
    return 0;
}

/*
 * Make sure the ring can take a completion for every outstanding request,
 * so that blkioq_complete() never has to fail.  Called when a request is
 * queued; grows rarely (doubling), and never in steady state.
 */
static bool queue_reserve(struct blkioq *q)
{
    /* One entry to spare: a request that finds the ring unable to grow
     * (out of memory) still has room to fail in. */
    if (BLKIO_LIKELY(q->outstanding + 1 < (uint64_t)q->cring_mask + 1))
        return true;
    return queue_ring_grow(q) == 0;
}

void blkioq_complete(struct blkioq *q, void *user_data, int ret,
                     const char *error_msg)
{
    struct blkio_completion *c;

    /* queue_reserve() guarantees room; a driver completing more than it
     * was given would be a driver bug, so grow rather than overwrite. */
    if (BLKIO_UNLIKELY(blkioq_ring_count(q) > q->cring_mask) &&
        queue_ring_grow(q) < 0)
        return;
    c = &q->cring[q->cring_tail & q->cring_mask];
    c->user_data = user_data;
    c->ret = ret;
    c->error_msg = ret ? error_msg : NULL;
    memset(c->reserved_, 0, sizeof(c->reserved_));
    q->cring_tail++;
}

void blkioq_fail(struct blkioq *q, void *user_data, int ret, const char *msg)
{
    blkioq_complete(q, user_data, ret, msg);
    blkioq_notify(q);
}

void blkioq_notify(struct blkioq *q)
{
    if (q->completion_fd >= 0) {
        long r = blkio_sys_eventfd_add1(q->completion_fd);
        (void)r;   /* a full counter already means "readable" */
    }
}

/* ---- queue creation ---- */

static int queue_new(struct blkio *b, bool poll, int index,
                     struct blkioq **qp)
{
    struct blkioq *q = calloc(1, sizeof(*q));
    uint32_t cap = QUEUE_INITIAL_RING;
    int ret;

    if (!q)
        return blkio_set_error(-ENOMEM, "out of memory creating queue %d",
                               index);
    while (cap < (uint32_t)b->num_entries * 2u ||
           cap < (uint32_t)b->queue_size * 2u)
        cap *= 2;
    q->b = b;
    q->drv = b->drv;
    q->index = index;
    q->poll = poll;
    q->completion_fd = -1;
    q->rw_req_mask = (uint64_t)b->request_alignment - 1;
    q->rw_buf_mask = (uint64_t)b->buf_alignment - 1;
    q->rw_max_len = b->max_transfer > 0 ? (uint64_t)b->max_transfer
                                        : UINT64_MAX;
    q->rw_write_ok = !b->read_only;
    q->rw_needs_region = b->needs_mem_regions;
    q->cring = malloc((size_t)cap * sizeof(*q->cring));
    q->cring_mask = cap - 1;
    if (!q->cring) {
        free(q);
        return blkio_set_error(-ENOMEM, "out of memory creating queue %d",
                               index);
    }
    if (!poll) {
        q->completion_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->completion_fd < 0) {
            ret = blkio_set_error(-errno, "eventfd for queue %d: %m", index);
            free(q->cring);
            free(q);
            return ret;
        }
    }
    ret = b->drv->queue_init ? b->drv->queue_init(q) : 0;
    if (ret < 0) {
        if (q->completion_fd >= 0)
            close(q->completion_fd);
        free(q->cring);
        free(q);
        return ret;
    }
    *qp = q;
    return 0;
}

static void queue_free(struct blkioq *q)
{
    if (!q)
        return;
    if (q->drv->queue_destroy)
        q->drv->queue_destroy(q);
    if (q->completion_fd >= 0)
        close(q->completion_fd);
    free(q->cring);
    free(q);
}

static int queue_count(struct blkio *b)
{
    int n = 0;

    for (int i = 0; i < b->nqueues; i++)
        n += b->queues[i] != NULL;
    for (int i = 0; i < b->npoll_queues; i++)
        n += b->poll_queues[i] != NULL;
    return n;
}

/* Add a new queue to the regular or poll table at the lowest free index
 * (a removed queue's index is used again, as libblkio does); returns the
 * index. */
static int queue_append(struct blkio *b, bool poll)
{
    struct blkioq ***tab = poll ? &b->poll_queues : &b->queues;
    int *n = poll ? &b->npoll_queues : &b->nqueues;
    struct blkioq **nt;
    struct blkioq *q = NULL;
    int i, ret;

    for (i = 0; i < *n && (*tab)[i]; i++)
        ;
    if (i == *n) {
        if (*n == INT_MAX)
            return blkio_set_error(-ENOSPC, "too many queues");
        nt = realloc(*tab, (size_t)(*n + 1) * sizeof(*nt));
        if (!nt)
            return blkio_set_error(-ENOMEM, "out of memory adding a queue");
        *tab = nt;
        nt[i] = NULL;
    }
    ret = queue_new(b, poll, i, &q);
    if (ret < 0)
        return ret;
    (*tab)[i] = q;
    if (i == *n)
        (*n)++;
    return i;
}

int blkio_queues_create(struct blkio *b)
{
    for (int i = 0; i < b->num_queues; i++) {
        int ret = queue_append(b, false);
        if (ret < 0)
            return ret;
    }
    for (int i = 0; i < b->num_poll_queues; i++) {
        int ret = queue_append(b, true);
        if (ret < 0)
            return ret;
    }
    return 0;
}

void blkio_queues_destroy(struct blkio *b)
{
    for (int i = 0; i < b->nqueues; i++)
        queue_free(b->queues[i]);
    for (int i = 0; i < b->npoll_queues; i++)
        queue_free(b->poll_queues[i]);
    free(b->queues);
    free(b->poll_queues);
    b->queues = b->poll_queues = NULL;
    b->nqueues = b->npoll_queues = 0;
}

static struct blkioq *queue_get(struct blkio *b, int index, bool poll)
{
    struct blkioq **tab = poll ? b->poll_queues : b->queues;
    int n = poll ? b->npoll_queues : b->nqueues;

    if (!b) {
        blkio_set_error(-EINVAL, "blkio instance is NULL");
        return NULL;
    }
    if (b->state != BLKIO_STATE_STARTED) {
        blkio_set_error(-EBUSY, "queues exist only after blkio_start()");
        return NULL;
    }
    if (index < 0 || index >= n || !tab[index]) {
        blkio_set_error(-ENOENT, "no %squeue with index %d",
                        poll ? "poll " : "", index);
        return NULL;
    }
    return tab[index];
}

struct blkioq *blkio_get_queue(struct blkio *b, int index)
{
    return b ? queue_get(b, index, false) : NULL;
}

struct blkioq *blkio_get_poll_queue(struct blkio *b, int index)
{
    return b ? queue_get(b, index, true) : NULL;
}

static int queue_add(struct blkio *b, bool poll)
{
    /* libblkio's order and codes: can-add-queues, then the state, then
     * poll support (-EINVAL). */
    if (!b)
        return blkio_set_error(-EINVAL, "blkio instance is NULL");
    if (!b->can_add_queues)
        return blkio_set_error(-ENOTSUP, "driver '%s' cannot add queues "
                               "(can-add-queues is false)", b->driver_name);
    if (b->state != BLKIO_STATE_STARTED)
        return blkio_set_error(-EBUSY, "queues can only be added after "
                               "blkio_start()");
    if (poll && !b->supports_poll_queues)
        return blkio_set_error(-EINVAL, "driver '%s' does not support poll "
                               "queues here (supports-poll-queues is false)",
                               b->driver_name);
    if (queue_count(b) >= b->max_queues)
        return blkio_set_error(-EBUSY, "already %d queues (max-queues)",
                               b->max_queues);
    return queue_append(b, poll);
}

int blkio_add_queue(struct blkio *b)
{
    return queue_add(b, false);
}

int blkio_add_poll_queue(struct blkio *b)
{
    return queue_add(b, true);
}

static int queue_remove(struct blkio *b, int index, bool poll)
{
    struct blkioq **tab;
    int n;

    if (!b)
        return blkio_set_error(-EINVAL, "blkio instance is NULL");
    tab = poll ? b->poll_queues : b->queues;
    n = poll ? b->npoll_queues : b->nqueues;
    if (b->state != BLKIO_STATE_STARTED || index < 0 || index >= n ||
        !tab[index])
        return blkio_set_error(-ENOENT, "no %squeue with index %d",
                               poll ? "poll " : "", index);
    queue_free(tab[index]);
    tab[index] = NULL;
    return 0;
}

int blkio_remove_queue(struct blkio *b, int index)
{
    return queue_remove(b, index, false);
}

int blkio_remove_poll_queue(struct blkio *b, int index)
{
    return queue_remove(b, index, true);
}

int blkioq_get_completion_fd(struct blkioq *q)
{
    return q ? q->completion_fd : -1;
}

void blkioq_set_completion_fd_enabled(struct blkioq *q, bool enable)
{
    if (!q || q->poll)
        return;
    bool waiting = false;

    q->completion_fd_enabled = enable;
    if (q->drv->set_completion_fd_enabled)
        waiting = q->drv->set_completion_fd_enabled(q, enable);
    /* Completions that arrived while the fd was off (waiting in the
     * driver's ring, or reaped but not yet returned because an earlier
     * call's max was smaller) signalled nothing: signal them now, or an
     * event loop that enables the fd and then waits on it waits for
     * ever. */
    if (enable && (waiting || blkioq_ring_count(q) > 0))
        blkioq_notify(q);
}

/* ---- requests ---- */

/* Which flags each operation accepts. */
static uint32_t queue_allowed_flags(enum blkio_op op)
{
    switch (op) {
    case BLKIO_OP_WRITE:
        return BLKIO_REQ_FUA;
    case BLKIO_OP_WRITE_ZEROES:
        return BLKIO_REQ_FUA | BLKIO_REQ_NO_UNMAP | BLKIO_REQ_NO_FALLBACK;
    default:
        return 0;
    }
}

static bool queue_op_writes(enum blkio_op op)
{
    return op != BLKIO_OP_READ && op != BLKIO_OP_FLUSH &&
           op != BLKIO_OP_REPORT_ZONES;
}

static bool queue_op_is_zone(enum blkio_op op)
{
    return op >= BLKIO_OP_REPORT_ZONES;
}

/* Check start/len against alignment and capacity.  Returns a static
 * message on failure, NULL when fine. */
static const char *queue_check_range(const struct blkio *b, uint64_t start,
                                     uint64_t len)
{
    uint64_t align = (uint64_t)b->request_alignment;

    /* blkio_connect() guarantees a power of two: mask, don't divide. */
    if ((start | len) & (align - 1))
        return "request start or length is not a multiple of "
               "request-alignment";
    if (!b->can_grow && (start > b->capacity || len > b->capacity - start))
        return "request extends beyond the end of the device (capacity)";
    return NULL;
}

static int queue_validate(struct blkioq *q, struct blkio_request *req,
                          const char **msg)
{
    const struct blkio *b = q->b;

    if (BLKIO_UNLIKELY(req->flags & ~queue_allowed_flags(req->op))) {
        *msg = "request flags not supported for this request type";
        return -EINVAL;
    }
    if (BLKIO_UNLIKELY(b->read_only && queue_op_writes(req->op))) {
        *msg = "device is read-only";
        return -EBADF;
    }
    if (queue_op_is_zone(req->op)) {
        if (!b->zoned) {
            *msg = "device does not support zoned storage requests";
            return -ENOTSUP;
        }
        return 0;
    }

    switch (req->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE: {
        uint64_t total = 0;
        uint64_t balign = (uint64_t)b->buf_alignment;

        if (BLKIO_UNLIKELY(req->iovcnt < 0 ||
                           (req->iovcnt > 0 && !req->iov))) {
            *msg = "invalid iovec array or iovcnt";
            return -EINVAL;
        }
        for (int i = 0; i < req->iovcnt; i++) {
            const struct iovec *v = &req->iov[i];

            if (BLKIO_UNLIKELY(((uintptr_t)v->iov_base | v->iov_len) &
                               (balign - 1))) {
                /* A misaligned request says so first: its length is the
                 * buffer's too, but the start is what to fix. */
                *msg = (req->start | (req->iovcnt == 1 ? v->iov_len : 0)) &
                               ((uint64_t)b->request_alignment - 1)
                           ? "request start or length is not a multiple "
                             "of request-alignment"
                           : "buffer address or length is not a multiple "
                             "of buf-alignment";
                return -EINVAL;
            }
            if (BLKIO_UNLIKELY(b->needs_mem_regions && v->iov_len &&
                               !blkioq_in_mem_region(q, v->iov_base,
                                                     v->iov_len))) {
                *msg = "buffer is not inside a mapped memory region "
                       "(needs-mem-regions is true)";
                return -EFAULT;
            }
            if (BLKIO_UNLIKELY(v->iov_len > UINT64_MAX - total)) {
                *msg = "iovec lengths add up to more than 2^64 bytes";
                return -EINVAL;
            }
            total += v->iov_len;
        }
        req->len = total;
        if (BLKIO_UNLIKELY(b->max_transfer > 0 &&
                           total > (uint64_t)b->max_transfer)) {
            *msg = "request is longer than max-transfer";
            return -EINVAL;
        }
        *msg = queue_check_range(b, req->start, total);
        return *msg ? -EINVAL : 0;
    }
    case BLKIO_OP_WRITE_ZEROES:
    case BLKIO_OP_DISCARD:
        *msg = queue_check_range(b, req->start, req->len);
        return *msg ? -EINVAL : 0;
    default:
        return 0;
    }
}

/*
 * Queue a request: count it, check it unless `checked` (the caller has
 * already found it valid), hand it to the driver or fail it.
 */
static inline __attribute__((always_inline)) void
queue_request_common(struct blkioq *q, struct blkio_request *req,
                     bool checked)
{
    const char *msg = NULL;
    int ret = 0;

    if (BLKIO_UNLIKELY(!queue_reserve(q))) {
        if (q->outstanding > q->cring_mask) {
            /* Not even room to fail it: the spare entry went to an
             * earlier request, and nothing was reaped since. */
            blkio_set_error(-ENOMEM, "request dropped: the completion "
                            "ring cannot grow beyond %u entries",
                            q->cring_mask + 1);
            return;
        }
        q->outstanding++;
        blkioq_fail(q, req->user_data, -ENOMEM, "out of memory growing the "
                    "completion ring");
        return;
    }
    q->outstanding++;
    if (!checked)
        ret = queue_validate(q, req, &msg);
    if (BLKIO_LIKELY(ret == 0)) {
        if (BLKIO_UNLIKELY(!q->drv->queue_request)) {
            ret = -ENOTSUP;
            msg = "driver does not implement requests";
        } else {
            ret = q->drv->queue_request(q, req);
            if (ret < 0 && !msg)
                msg = ret == -ENOTSUP ? "request type not supported by "
                                        "this driver or queue"
                    : ret == -ENOMEM ? "out of memory queueing the request"
                                     : "driver refused the request";
        }
    }
    if (BLKIO_UNLIKELY(ret < 0))
        blkioq_fail(q, req->user_data, ret, msg);
}

static void queue_request(struct blkioq *q, struct blkio_request *req)
{
    queue_request_common(q, req, false);
}

/*
 * Whether a blkioq_read()/write() passes every check queue_validate()
 * makes, in one combined test on the values precomputed per queue (false
 * means "look closer", not "invalid").
 */
static inline bool queue_rw_ok(struct blkioq *q, uint64_t start,
                               const void *buf, uint64_t len, uint32_t flags,
                               uint32_t allowed)
{
    const struct blkio *b = q->b;

    if (((flags & ~allowed) | ((uintptr_t)buf & q->rw_buf_mask) |
         (len & (q->rw_buf_mask | q->rw_req_mask)) |
         (start & q->rw_req_mask)) != 0 ||
        len > q->rw_max_len)
        return false;
    if (!b->can_grow && (start > b->capacity || len > b->capacity - start))
        return false;
    return !q->rw_needs_region || len == 0 ||
           blkioq_in_mem_region(q, buf, len);
}

void blkioq_read(struct blkioq *q, uint64_t start, void *buf, size_t len,
                 void *user_data, uint32_t flags)
{
    struct blkio_request req = {
        .op = BLKIO_OP_READ, .flags = flags, .start = start, .len = len,
        .single = { .iov_base = buf, .iov_len = len }, .iovcnt = 1,
        .user_data = user_data,
    };
    req.iov = &req.single;
    if (BLKIO_LIKELY(queue_rw_ok(q, start, buf, len, flags, 0)))
        queue_request_common(q, &req, true);
    else
        queue_request(q, &req);
}

void blkioq_write(struct blkioq *q, uint64_t start, const void *buf,
                  size_t len, void *user_data, uint32_t flags)
{
    struct blkio_request req = {
        .op = BLKIO_OP_WRITE, .flags = flags, .start = start, .len = len,
        .single = { .iov_base = (void *)buf, .iov_len = len }, .iovcnt = 1,
        .user_data = user_data,
    };
    req.iov = &req.single;
    if (BLKIO_LIKELY(q->rw_write_ok &&
                     queue_rw_ok(q, start, buf, len, flags, BLKIO_REQ_FUA)))
        queue_request_common(q, &req, true);
    else
        queue_request(q, &req);
}

void blkioq_readv(struct blkioq *q, uint64_t start, const struct iovec *iovec,
                  int iovcnt, void *user_data, uint32_t flags)
{
    struct blkio_request req = {
        .op = BLKIO_OP_READ, .flags = flags, .start = start, .iov = iovec,
        .iovcnt = iovcnt, .user_data = user_data,
    };
    queue_request(q, &req);
}

void blkioq_writev(struct blkioq *q, uint64_t start, struct iovec *iovec,
                   int iovcnt, void *user_data, uint32_t flags)
{
    struct blkio_request req = {
        .op = BLKIO_OP_WRITE, .flags = flags, .start = start, .iov = iovec,
        .iovcnt = iovcnt, .user_data = user_data,
    };
    queue_request(q, &req);
}

static void queue_simple(struct blkioq *q, enum blkio_op op, uint64_t start,
                         uint64_t len, void *user_data, uint32_t flags)
{
    struct blkio_request req = {
        .op = op, .flags = flags, .start = start, .len = len,
        .user_data = user_data,
    };
    queue_request(q, &req);
}

void blkioq_write_zeroes(struct blkioq *q, uint64_t start, uint64_t len,
                         void *user_data, uint32_t flags)
{
    queue_simple(q, BLKIO_OP_WRITE_ZEROES, start, len, user_data, flags);
}

void blkioq_discard(struct blkioq *q, uint64_t start, uint64_t len,
                    void *user_data, uint32_t flags)
{
    queue_simple(q, BLKIO_OP_DISCARD, start, len, user_data, flags);
}

void blkioq_flush(struct blkioq *q, void *user_data, uint32_t flags)
{
    queue_simple(q, BLKIO_OP_FLUSH, 0, 0, user_data, flags);
}

void blkioq_report_zones(struct blkioq *q, uint64_t offset,
                         struct blkio_zone *zones, uint32_t nr_zones,
                         void *user_data, uint32_t flags)
{
    struct blkio_request req = {
        .op = BLKIO_OP_REPORT_ZONES, .flags = flags, .start = offset,
        .zones = zones, .nr_zones = nr_zones, .user_data = user_data,
    };
    queue_request(q, &req);
}

void blkioq_open_zone(struct blkioq *q, uint64_t offset, void *user_data,
                      uint32_t flags)
{
    queue_simple(q, BLKIO_OP_OPEN_ZONE, offset, 0, user_data, flags);
}

void blkioq_close_zone(struct blkioq *q, uint64_t offset, void *user_data,
                       uint32_t flags)
{
    queue_simple(q, BLKIO_OP_CLOSE_ZONE, offset, 0, user_data, flags);
}

void blkioq_finish_zone(struct blkioq *q, uint64_t offset, void *user_data,
                        uint32_t flags)
{
    queue_simple(q, BLKIO_OP_FINISH_ZONE, offset, 0, user_data, flags);
}

void blkioq_reset_zone(struct blkioq *q, uint64_t offset, void *user_data,
                       uint32_t flags)
{
    queue_simple(q, BLKIO_OP_RESET_ZONE, offset, 0, user_data, flags);
}

void blkioq_open_all_zones(struct blkioq *q, void *user_data, uint32_t flags)
{
    queue_simple(q, BLKIO_OP_OPEN_ALL_ZONES, 0, 0, user_data, flags);
}

void blkioq_close_all_zones(struct blkioq *q, void *user_data, uint32_t flags)
{
    queue_simple(q, BLKIO_OP_CLOSE_ALL_ZONES, 0, 0, user_data, flags);
}

void blkioq_finish_all_zones(struct blkioq *q, void *user_data,
                             uint32_t flags)
{
    queue_simple(q, BLKIO_OP_FINISH_ALL_ZONES, 0, 0, user_data, flags);
}

void blkioq_reset_all_zones(struct blkioq *q, void *user_data, uint32_t flags)
{
    queue_simple(q, BLKIO_OP_RESET_ALL_ZONES, 0, 0, user_data, flags);
}

/* ---- submission and completion ---- */

#define NSEC_PER_SEC 1000000000L

void blkio_deadline_remaining(const struct timespec *deadline,
                              struct timespec *left)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    left->tv_sec = deadline->tv_sec - now.tv_sec;
    left->tv_nsec = deadline->tv_nsec - now.tv_nsec;
    if (left->tv_nsec < 0) {
        left->tv_nsec += NSEC_PER_SEC;
        left->tv_sec--;
    }
    if (left->tv_sec < 0) {
        left->tv_sec = 0;
        left->tv_nsec = 0;
    }
}

void blkio_pause(long ns, const struct timespec *deadline)
{
    struct timespec pause = { 0, ns };

    if (deadline) {
        struct timespec left;

        blkio_deadline_remaining(deadline, &left);
        if (left.tv_sec == 0 && left.tv_nsec < pause.tv_nsec)
            pause = left;
    }
    nanosleep(&pause, NULL);
}

/* Hand up to max completions from the ring to the caller's array, in one
 * straight pass on local copies of the indices (the caller's array could
 * alias anything, so the queue's fields would be reloaded per entry). */
static inline int queue_copy_out(struct blkioq *q,
                                 struct blkio_completion *completions,
                                 int max)
{
    const struct blkio_completion *ring = q->cring;
    uint32_t head = q->cring_head, mask = q->cring_mask;
    uint32_t avail = q->cring_tail - head;
    uint32_t n = (uint32_t)max < avail ? (uint32_t)max : avail;

    for (uint32_t i = 0; i < n; i++)
        completions[i] = ring[(head + i) & mask];
    q->cring_head = head + n;
    q->outstanding -= n;
    return (int)n;
}

static int queue_do_io(struct blkioq *q, struct blkio_completion *completions,
                       int min_completions, int max_completions,
                       struct timespec *timeout, const sigset_t *sig)
{
    struct timespec deadline;
    int ret = 0, n = 0;

    if (BLKIO_UNLIKELY(!q))
        return blkio_set_error(-EINVAL, "blkioq_do_io: queue is NULL");
    if (BLKIO_UNLIKELY(min_completions < 0 ||
                       max_completions < min_completions))
        return blkio_set_error(-EINVAL, "blkioq_do_io: min_completions %d "
                               "must be >= 0 and <= max_completions %d",
                               min_completions, max_completions);
    if (BLKIO_UNLIKELY(max_completions > 0 && !completions))
        return blkio_set_error(-EINVAL, "blkioq_do_io: completions is NULL "
                               "but max_completions is %d",
                               max_completions);
    if (BLKIO_UNLIKELY((uint64_t)min_completions > q->outstanding))
        return blkio_set_error(-EINVAL, "blkioq_do_io: min_completions %d "
                               "exceeds the %llu requests in flight",
                               min_completions,
                               (unsigned long long)q->outstanding);
    if (timeout) {
        if (timeout->tv_sec < 0 || timeout->tv_nsec < 0 ||
            timeout->tv_nsec >= NSEC_PER_SEC)
            return blkio_set_error(-EINVAL, "blkioq_do_io: invalid timeout "
                                   "{%lld, %ld}",
                                   (long long)timeout->tv_sec,
                                   timeout->tv_nsec);
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += timeout->tv_sec;
        deadline.tv_nsec += timeout->tv_nsec;
        if (deadline.tv_nsec >= NSEC_PER_SEC) {
            deadline.tv_nsec -= NSEC_PER_SEC;
            deadline.tv_sec++;
        }
    }

    /* Completions already in the ring count towards min. */
    ret = q->drv->process(q, min_completions, timeout ? &deadline : NULL,
                          sig);

    if (BLKIO_UNLIKELY(ret < 0 &&
                       blkioq_ring_count(q) < (uint32_t)min_completions)) {
        if (timeout)
            blkio_deadline_remaining(&deadline, timeout);
        if (ret == -ETIME)
            return blkio_set_error(-ETIME, "blkioq_do_io: timed out");
        if (ret == -EINTR)
            return blkio_set_error(-EINTR, "blkioq_do_io: interrupted");
        return ret;
    }

    n = queue_copy_out(q, completions, max_completions);
    if (BLKIO_UNLIKELY(q->completed_unsignalled)) {
        /* "Readable when do_io needs to be called again" (spuriously
         * when the quiet one was handed out above). */
        q->completed_unsignalled = false;
        if (q->cring_head != q->cring_tail && q->completion_fd_enabled)
            blkioq_notify(q);
    }
    if (timeout)
        blkio_deadline_remaining(&deadline, timeout);
    return n;
}

int blkioq_do_io(struct blkioq *q, struct blkio_completion *completions,
                 int min_completions, int max_completions,
                 struct timespec *timeout)
{
    return queue_do_io(q, completions, min_completions, max_completions,
                       timeout, NULL);
}

int blkioq_do_io_interruptible(struct blkioq *q,
                               struct blkio_completion *completions,
                               int min_completions, int max_completions,
                               struct timespec *timeout, const sigset_t *sig)
{
    sigset_t current;

    /* As the manual says and libblkio 1.5 does: a poll queue refuses a
     * signal mask (it never sleeps, so there is no wait to interrupt),
     * but takes the call without one, as blkioq_do_io(). */
    if (q && q->poll) {
        if (sig)
            return blkio_set_error(-EOPNOTSUPP,
                                   "blkioq_do_io_interruptible() with a "
                                   "signal mask is not supported on poll "
                                   "queues: use blkioq_do_io()");
        return queue_do_io(q, completions, min_completions, max_completions,
                           timeout, NULL);
    }
    /* Drivers take a signal set as "interruptible": without one, the wait
     * keeps the thread's mask and is still interrupted (libblkio 1.5 is),
     * while blkioq_do_io() passes none and is not. */
    if (!sig) {
        pthread_sigmask(SIG_SETMASK, NULL, &current);
        sig = &current;
    }
    return queue_do_io(q, completions, min_completions, max_completions,
                       timeout, sig);
}
