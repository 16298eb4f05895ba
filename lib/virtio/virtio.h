/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio.h - the virtio device initialization sequence (virtio 1.x,
 * section 3.1.1), written once for every transport: reset, ACKNOWLEDGE,
 * DRIVER, feature negotiation, FEATURES_OK, virtqueue setup, DRIVER_OK.
 * Transports only read and write the status byte (virtio-transport.h);
 * vhost-user, which has no status, emulates it.
 */
#ifndef BLKIO_VIRTIO_H
#define BLKIO_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include "../sys-io.h"
#include "virtio-transport.h"

struct virtio_dev {
    const struct virtio_transport_ops *ops;
    void *t;
    uint64_t features;          /* negotiated */
    unsigned nvqs;              /* virtqueues this start sets up */
    unsigned nset;              /* set up since the start */
    unsigned nlive;             /* set up and not stopped */
    bool dirty;                 /* queues or DRIVER_OK since FEATURES_OK:
                                   reset before the next start */
    bool driver_ok;
};

/*
 * At connect: reset, ACKNOWLEDGE, DRIVER, then accept the offered
 * features among `wanted` (plus the transport's own) and set FEATURES_OK.
 * Fails with -ENOTSUP when VIRTIO_F_VERSION_1 is not offered.
 */
int virtio_dev_negotiate(struct virtio_dev *d, uint64_t wanted);

/* At start: a device used since the negotiation is reset and negotiated
 * again (same features); then `nvqs` virtqueues are expected. */
int virtio_dev_begin_start(struct virtio_dev *d, unsigned nvqs);

/* Tell the device about a virtqueue; after the last one of the start,
 * set DRIVER_OK. */
int virtio_dev_setup_queue(struct virtio_dev *d,
                           const struct virtio_vq_info *info);

/* Stop a virtqueue; the device is reset once no queue is left.  Never
 * touches the thread's error message: it runs on cleanup paths whose
 * caller reports an earlier failure (or none). */
void virtio_dev_stop_queue(struct virtio_dev *d, unsigned index);

/* Reset without reporting (cleanup paths). */
void virtio_dev_reset_quiet(struct virtio_dev *d);

/*
 * Teardown steps report nothing, but the transport functions they call
 * may set the thread's error message: keep the one the caller may still
 * read (a failed blkio_start()'s, or an earlier call's) across them.
 */
struct virtio_quiet {
    char msg[1024];
};
void virtio_quiet_begin(struct virtio_quiet *q);
void virtio_quiet_end(const struct virtio_quiet *q);

/*
 * Kick eventfds by virtqueue index, for the vhost transports (vhost-user,
 * vhost-vdpa), whose devices wait on an eventfd per queue.  Created on
 * first use and kept until virtio_kickfds_close(): a re-started device
 * gets the same fds.
 */
struct virtio_kickfds {
    int *fds;
    unsigned n;
};
/* The fd of queue `index` (made if needed), or a negative errno. */
int virtio_kickfds_get(struct virtio_kickfds *k, unsigned index);
/* Signal queue `index`: the I/O path's notification. */
static inline void virtio_kickfds_kick(struct virtio_kickfds *k,
                                       unsigned index)
{
    long r = blkio_sys_eventfd_add1(k->fds[index]);

    (void)r;    /* EAGAIN: the counter is saturated, still pending */
}
void virtio_kickfds_close(struct virtio_kickfds *k);

#endif /* BLKIO_VIRTIO_H */
