/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-blk.h - the generic virtio-blk driver logic shared by all virtio
 * transports.  A transport's driver table points its callbacks at these
 * functions; b->priv is the struct virtio_blk made by virtio_blk_create().
 */
#ifndef BLKIO_VIRTIO_BLK_H
#define BLKIO_VIRTIO_BLK_H

#include "internal.h"
#include "virtio-transport.h"

struct virtio_blk;

/* Property hook for queue-size (power of two, <= max-queue-size). */
int virtio_blk_set_queue_size(struct blkio *b, const struct blkio_property *p,
                              const void *value);

/* Setter for "fd" on transports that cannot take an open descriptor
 * (vhost-user, vfio-pci): refused with -ENOENT, as in libblkio. */
int virtio_blk_set_fd_unsupported(struct blkio *b,
                                  const struct blkio_property *p,
                                  const void *value);


/* Attach the generic state to b->priv; t is the transport's state, which
 * virtio_blk_destroy() frees with ops->destroy. */
int virtio_blk_create(struct blkio *b, const struct virtio_transport_ops *ops,
                      void *t);
void *virtio_blk_transport(struct blkio *b);

/* Once the transport is connected: negotiate features, read the config,
 * fill in the device properties. */
int virtio_blk_connect(struct blkio *b);

int virtio_blk_start(struct blkio *b);
void virtio_blk_destroy(struct blkio *b);
int virtio_blk_map_mem_region(struct blkio *b,
                              const struct blkio_mem_region *region);
void virtio_blk_unmap_mem_region(struct blkio *b,
                                 const struct blkio_mem_region *region);
void virtio_blk_unmap_all_mem_regions(struct blkio *b,
                                      const struct blkio_mem_region *regions,
                                      size_t n);
int virtio_blk_queue_init(struct blkioq *q);
void virtio_blk_queue_destroy(struct blkioq *q);
int virtio_blk_queue_request(struct blkioq *q, const struct blkio_request *req);
int virtio_blk_process(struct blkioq *q, int min,
                       const struct timespec *deadline, const sigset_t *sig);
bool virtio_blk_set_completion_fd_enabled(struct blkioq *q, bool enable);

/* The driver-table entries every virtio-blk transport shares; a transport
 * adds its name, properties, create and connect:
 *   const struct blkio_driver d = { .name = ..., VIRTIO_BLK_DRIVER_OPS }; */
#define VIRTIO_BLK_DRIVER_OPS                                               \
    .start                     = virtio_blk_start,                          \
    .destroy                   = virtio_blk_destroy,                        \
    .map_mem_region            = virtio_blk_map_mem_region,                 \
    .unmap_mem_region          = virtio_blk_unmap_mem_region,               \
    .unmap_all_mem_regions     = virtio_blk_unmap_all_mem_regions,          \
    .queue_init                = virtio_blk_queue_init,                     \
    .queue_destroy             = virtio_blk_queue_destroy,                  \
    .queue_request             = virtio_blk_queue_request,                  \
    .process                   = virtio_blk_process,                        \
    .set_completion_fd_enabled = virtio_blk_set_completion_fd_enabled

/* The queue-size properties every virtio-blk transport has, for its
 * property table. */
#define VIRTIO_BLK_QUEUE_PROPS                                              \
    BLKIO_PROP("queue-size", PROP_INT, ST_ALL, ST_CONNECTED,                \
               queue_size, virtio_blk_set_queue_size),                     \
    BLKIO_PROP("max-queue-size", PROP_INT, ST_AFTER_CONNECT, 0,             \
               max_queue_size, NULL)

/* "fd" on a transport that is reached by path only: reads -1, as in
 * libblkio, where every virtio-blk driver has the property. */
#define VIRTIO_BLK_NO_FD_PROP                                               \
    BLKIO_PROP("fd", PROP_INT, ST_ALL, ST_CREATED, fd,                      \
               virtio_blk_set_fd_unsupported)

/* Transports call this when they notice the device is gone; every queue
 * then fails its requests instead of waiting. */
void virtio_blk_mark_dead(struct blkio *b);

#endif /* BLKIO_VIRTIO_BLK_H */
