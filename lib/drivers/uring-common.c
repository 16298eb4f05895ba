/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * uring-common.c - the wait loop and ring teardown shared by the io_uring
 * based drivers (see uring-common.h).
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "uring-common.h"

/* user_data of the cancel request uring_drain() adds; no slot has it. */
#define URING_DRAIN_TAG UINT64_MAX

/* How long teardown waits for the kernel to finish requests. */
#define URING_DRAIN_SECONDS 5

static bool uring_deadline_passed(const struct timespec *deadline)
{
    struct timespec left;

    blkio_deadline_remaining(deadline, &left);
    return left.tv_sec == 0 && left.tv_nsec == 0;
}

/*
 * One io_uring_enter: submit everything queued and wait for up to `want`
 * CQEs.  Returns 0 when the caller should reap and look again, -ETIME once
 * the deadline has passed, -EINTR for a signal when sig was given, or
 * another negative errno.
 */
static int uring_wait(struct io_uring *ring, bool poll, unsigned want,
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

int uring_process(struct blkioq *q, struct io_uring *ring, uring_reap_fn reap,
                  const uint32_t *inflight, int min,
                  const struct timespec *deadline, const sigset_t *sig)
{
    for (;;) {
        uint32_t have;
        unsigned want;
        int ret;

        reap(q);
        have = blkioq_ring_count(q);
        if (have >= (uint32_t)min) {
            /* Enough already: pass on what was queued without waiting.
             * A poll queue also polls once, so that do_io with min 0
             * makes progress.  With nothing prepared or in the kernel
             * there is nothing to pass on (and the ring's shared memory
             * is left alone). */
            if (*inflight == 0)
                return 0;
            if (q->poll)
                ret = io_uring_submit_and_get_events(ring);
            else if (io_uring_sq_ready(ring))
                ret = io_uring_submit(ring);
            else
                return 0;
            if (ret < 0 && ret != -EAGAIN && ret != -EBUSY &&
                ret != -EINTR)
                return blkio_set_error(ret, "io_uring_enter: %s",
                                       strerror(-ret));
            reap(q);
            return 0;
        }

        want = (unsigned)min - have;
        if (want > *inflight)
            want = *inflight;
        if (want == 0)
            return blkio_set_error(-EIO, "waiting for %d completions, %u "
                                   "of them not in the completion ring, "
                                   "but no request is in flight", min,
                                   (unsigned)min - have);

        ret = uring_wait(ring, q->poll, want, deadline, sig);
        reap(q);
        if (blkioq_ring_count(q) >= (uint32_t)min)
            return 0;
        if (ret == -ETIME || ret == -EINTR)
            return ret;
        if (ret < 0)
            return blkio_set_error(ret, "io_uring_enter: %s",
                                   strerror(-ret));
        if (deadline && uring_deadline_passed(deadline))
            return -ETIME;
    }
}

uint32_t uring_drain(struct io_uring *ring, uint32_t inflight, bool poll,
                     bool cancel)
{
    struct timespec deadline;

    if (inflight == 0)
        return 0;
    if (cancel) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

        if (!sqe) {
            io_uring_submit(ring);
            sqe = io_uring_get_sqe(ring);
        }
        if (sqe) {
            io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ALL | IORING_ASYNC_CANCEL_ANY);
            io_uring_sqe_set_data64(sqe, URING_DRAIN_TAG);
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += URING_DRAIN_SECONDS;
    while (inflight > 0) {
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        int ret = uring_wait(ring, poll, 1, &deadline, NULL);

        io_uring_for_each_cqe(ring, head, cqe) {
            n++;
            if (cqe->user_data != URING_DRAIN_TAG && inflight > 0)
                inflight--;
        }
        io_uring_cq_advance(ring, n);
        if (ret == -ETIME || (ret < 0 && n == 0))
            break;
    }
    return inflight;
}

void uring_set_eventfd_enabled(struct io_uring *ring, bool enable)
{
    (void)io_uring_cq_eventfd_toggle(ring, enable);
    if (enable)
        atomic_thread_fence(memory_order_seq_cst);
}
