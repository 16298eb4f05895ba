/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtqueue.h - split virtqueues (virtio 1.x, section 2.7) in memory the
 * library allocates and shares with the device.
 *
 * The driver side only: we write descriptors and the available ring, the
 * device writes the used ring.  Everything read back from shared memory is
 * treated as untrusted: indices are checked against what we made
 * available, and descriptor chains are freed from a private shadow copy,
 * never by following `next` fields the device could have scribbled on.
 */
#ifndef BLKIO_VIRTQUEUE_H
#define BLKIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/virtio_ring.h>

/* One buffer of a request, in the device's address space. */
struct virtq_buf {
    uint64_t addr;
    uint32_t len;
    bool device_writes;
};

struct virtq {
    uint16_t num;               /* queue size, power of two */
    bool event_idx;             /* VIRTIO_RING_F_EVENT_IDX negotiated */

    struct vring_desc *desc;    /* shared */
    struct vring_avail *avail;  /* shared, device reads */
    struct vring_used *used;    /* shared, device writes */

    uint16_t avail_idx;         /* next avail slot (published or not) */
    uint16_t kicked_idx;        /* avail idx at the last publish */
    uint16_t last_used;         /* next used entry to consume */
    uint16_t inflight;          /* heads made available, not yet used */

    /* Private descriptor bookkeeping: free list and chain shadows. */
    uint16_t free_head;
    uint16_t nfree;
    uint16_t *next;             /* free list link / chain link by desc */
    uint16_t *chain_len;        /* descriptors in the chain at each head */
    uint8_t *head_busy;         /* 1 while a chain at this head is in use */
};

/* Bytes of shared memory a queue of `num` entries needs (16-byte aligned). */
size_t virtq_ring_size(unsigned num);

/* Lay a queue out in zeroed shared memory `mem` (virtq_ring_size bytes,
 * 16-byte aligned) and allocate the private shadows. */
int virtq_init(struct virtq *vq, void *mem, unsigned num, bool event_idx);
void virtq_cleanup(struct virtq *vq);

/*
 * Put a chain of n buffers into the descriptor table; returns the head
 * index, or -ENOSPC when fewer than n descriptors are free.  Not yet
 * visible to the device: see virtq_push() and virtq_publish().
 */
int virtq_add_chain(struct virtq *vq, const struct virtq_buf *bufs,
                    unsigned n);

/* Same, as one descriptor pointing at an indirect table the caller owns
 * (n entries, filled here from bufs, table_addr as the device sees it). */
int virtq_add_indirect(struct virtq *vq, struct vring_desc *table,
                       uint64_t table_addr, const struct virtq_buf *bufs,
                       unsigned n);

/* Append a head to the available ring (still not visible). */
void virtq_push(struct virtq *vq, uint16_t head);

/* Make everything pushed visible; returns true if the device wants a
 * notification (event index or VRING_USED_F_NO_NOTIFY). */
bool virtq_publish(struct virtq *vq);

/*
 * Take the next used element.  Returns 1 and fills *head and *len, 0 when
 * there is none, or -EIO when the device broke the ring protocol (used
 * index ahead of what is in flight, head out of range or not in use).
 * The chain is released back to the free list on success.
 */
int virtq_get_used(struct virtq *vq, uint16_t *head, uint32_t *len);

/* Device completions waiting, without consuming (0 on protocol error). */
bool virtq_has_used(const struct virtq *vq);

/* Ask for (or stop asking for) used-buffer notifications.  After enabling,
 * callers must check virtq_has_used() again to close the race. */
void virtq_set_notify(struct virtq *vq, bool enable);

#endif /* BLKIO_VIRTQUEUE_H */
