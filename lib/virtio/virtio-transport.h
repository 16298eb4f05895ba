/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-transport.h - what the virtio layer needs from a transport
 * (vhost-user.c, vhost-vdpa.c, vfio-pci.c).
 *
 * The transport owns the connection to the device: status, feature and
 * config access, telling the device where a virtqueue lives, notifying it,
 * and making memory visible to it.  The order of the initialization steps
 * lives in virtio.c; everything about virtio-blk requests and split rings
 * in virtio-blk.c and virtqueue.c.
 *
 * All functions return 0 or a negative errno after blkio_set_error().
 */
#ifndef BLKIO_VIRTIO_TRANSPORT_H
#define BLKIO_VIRTIO_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* Where one virtqueue lives, as the device must see it. */
struct virtio_vq_info {
    unsigned index;             /* virtqueue number */
    unsigned num;               /* queue size, a power of two */
    uint64_t desc_addr;
    uint64_t avail_addr;
    uint64_t used_addr;
    int call_fd;                /* eventfd the device signals, or -1 */
};

struct virtio_transport_ops {
    const char *name;           /* for messages: "vhost-user" */
    /* Feature bits the transport itself accepts when the device offers
     * them (VIRTIO_F_ACCESS_PLATFORM behind an IOMMU, ...). */
    uint64_t transport_features;
    /* Whether the device sees memory at other addresses than ours (IOVAs
     * from an allocator: vfio-pci always, vhost-vdpa where its IOVA range
     * leaves out user addresses), asked once the transport has probed
     * the device at connect.  Then start() and map_region() say where,
     * and the generic code translates buffer addresses.  NULL: the device
     * takes our virtual addresses. */
    bool (*remaps)(void *t);
    /* Declare every indirect table at its full capacity, not at the
     * length of its chain.  For devices that cut a buffer at each of
     * their own mappings and count the pieces against the table's
     * declared length: qemu-storage-daemon's libvduse behind vhost-vdpa
     * drops a request with more pieces than that ("Looped descriptor"),
     * and a buffer in memory of more than one VMA is more than one
     * mapping to VDUSE.  The chain still ends where it ends. */
    bool full_indirect;

    /* The device status byte (virtio 1.x, 2.1).  Writing 0 resets the
     * device; virtio.c then waits until it reads back 0. */
    int (*get_status)(void *t, uint8_t *status);
    int (*set_status)(void *t, uint8_t status);
    /* Device features offered (virtio feature bits only). */
    int (*get_features)(void *t, uint64_t *features);
    /* Write the driver's features (before FEATURES_OK is set). */
    int (*set_features)(void *t, uint64_t features);
    /* Read len bytes of device config space from offset 0. */
    int (*read_config)(void *t, void *buf, uint32_t len);
    /* How many virtqueues the transport can drive (0: no limit). */
    int (*max_queues)(void *t);
    /* How many memory regions the device can map, including the one the
     * library keeps its rings in (0: no limit). */
    uint64_t (*max_mem_regions)(void *t);

    /*
     * Before any queue is set up: make the library's own memory (rings,
     * request headers, zero buffer) visible to the device, and prepare
     * for `nvqs` virtqueues, of which the first `nirqs` signal a call fd.
     */
    int (*start)(void *t, const struct blkio_mem_region *internal,
                 unsigned nvqs, unsigned nirqs, uint64_t *internal_addr);
    /* Tell the device about a queue and enable it (virtio.c sets
     * DRIVER_OK after the last one). */
    int (*setup_queue)(void *t, const struct virtio_vq_info *info);
    /* Stop the device using a queue (before its memory is reused), as
     * far as the transport can; virtio.c resets the device after the last
     * one.  Must not report errors. */
    void (*stop_queue)(void *t, unsigned index);
    /* Notify the device that queue `index` has new available buffers.
     * Called on the I/O path: must be cheap and thread-safe across queues. */
    void (*kick)(void *t, unsigned index);

    /* Make an application memory region visible to the device (at
     * *addr), or not. */
    int (*map_region)(void *t, const struct blkio_mem_region *region,
                      uint64_t *addr);
    void (*unmap_region)(void *t, const struct blkio_mem_region *region);
    /* At destroy: unmap n regions in one go; a negative errno if it
     * cannot, and the caller uses unmap_region() for each.  Optional. */
    int (*unmap_regions)(void *t, const struct blkio_mem_region *regions,
                         size_t n);

    /*
     * A file descriptor that reports POLLHUP/POLLRDHUP/POLLERR when the
     * device is gone (a vhost-user socket), or -1.  Waiting code polls it
     * next to the call eventfd so that a lost backend never hangs callers.
     */
    int (*hangup_fd)(void *t);

    /* Close the connection and free the transport. */
    void (*destroy)(void *t);
};

#endif /* BLKIO_VIRTIO_TRANSPORT_H */
