/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * uring-common.h - what the io_uring and nvme-io_uring drivers share: the
 * process() loop of a queue driven by one io_uring (submit, reap, wait with
 * deadline and signal mask) and the teardown of a ring that still has
 * requests in the kernel.
 *
 * A driver keeps the rest: its request slots, how it turns a CQE into a
 * completion, and its backlog of requests that did not fit the rings.
 */
#ifndef BLKIO_URING_COMMON_H
#define BLKIO_URING_COMMON_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* Moves every posted CQE into the completion ring (or into a request's
 * next step) and refills the SQ from the driver's backlog. */
typedef void (*uring_reap_fn)(struct blkioq *q);

/*
 * driver->process() for queue q driven by ring.  *inflight is the driver's
 * count of SQEs prepared and not yet reaped: the CQEs still to come, which
 * bound how many the wait may ask for.  Submits whatever is queued with the
 * same io_uring_enter that waits, so a do_io costs one system call in
 * steady state.  Signals end the wait with -EINTR only when sig is given
 * (blkioq_do_io_interruptible); plain blkioq_do_io() waits on.
 */
int uring_process(struct blkioq *q, struct io_uring *ring, uring_reap_fn reap,
                  const uint32_t *inflight, int min,
                  const struct timespec *deadline, const sigset_t *sig);

/*
 * Before io_uring_queue_exit() on a ring with `inflight` SQEs prepared and
 * not reaped: submit them (with a cancel-everything request when `cancel`),
 * then wait, for a few seconds at most, until the kernel has posted a CQE
 * for each, discarding them.  Closing the ring would not wait: the kernel
 * finishes requests after close() returns, still reading and writing their
 * buffers.  Returns how many are still out; the caller must then leave
 * memory the kernel may touch allocated.
 */
uint32_t uring_drain(struct io_uring *ring, uint32_t inflight, bool poll,
                     bool cancel);

/*
 * driver->set_completion_fd_enabled() of a ring with a registered eventfd.
 * Turning it on is followed by a full barrier, so that the caller's next
 * look at the CQ (the re-check the libblkio manual asks for) cannot be
 * ordered before the kernel can see the flag.  Before Linux 5.8 the
 * eventfd cannot be turned off and keeps signalling: spurious events,
 * which the API allows.
 */
void uring_set_eventfd_enabled(struct io_uring *ring, bool enable);

#endif /* BLKIO_URING_COMMON_H */
