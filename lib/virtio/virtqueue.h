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

#include <endian.h>
#include <errno.h>
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
    /* An indirect table is declared at least this many entries long (0:
     * as long as its chain); see virtio_transport_ops.full_indirect. */
    uint16_t ind_declared;
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

/* Make everything pushed visible; returns true if the device wants a
 * notification (event index or VRING_USED_F_NO_NOTIFY). */
bool virtq_publish(struct virtq *vq);

/* Ask for (or stop asking for) used-buffer notifications.  After enabling,
 * callers must check virtq_has_used() again to close the race. */
void virtq_set_notify(struct virtq *vq, bool enable);

/*
 * Barriers, named for what they order.  The device is another CPU (a
 * vhost-user backend, VDUSE) or real hardware doing DMA (vfio-pci, a
 * vDPA card, with VIRTIO_F_ORDER_PLATFORM negotiated where offered), so
 * they order our accesses for both: the platform's DMA ordering.  On x86
 * that is what the SMP fences give (stores are not reordered with stores
 * nor loads with loads, DMA is cache-coherent, and the full fence drains
 * the store buffer; the notification's uncached MMIO write is not
 * reordered with earlier stores), so there is no cost for the CPU-device
 * case.  On arm64 the SMP fences only cover the inner-shareable domain; a
 * device needs the outer-shareable ones (what Linux's
 * dma_wmb()/dma_rmb()/mb() use).
 * One kind for all transports keeps a branch off the I/O path.
 */
#if defined(__aarch64__)
#define VIRTQ_DMA_WMB() __asm__ __volatile__("dmb oshst" ::: "memory")
#define VIRTQ_DMA_RMB() __asm__ __volatile__("dmb oshld" ::: "memory")
#define VIRTQ_DMA_MB()  __asm__ __volatile__("dmb osh" ::: "memory")
#else
#define VIRTQ_DMA_WMB() __atomic_thread_fence(__ATOMIC_RELEASE)
#define VIRTQ_DMA_RMB() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define VIRTQ_DMA_MB()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif

/* Our descriptor and avail ring entry stores before the avail idx store. */
static inline void virtq_barrier_entries_before_idx(void)
{
    VIRTQ_DMA_WMB();
}

/* Our avail idx (or used_event) store before we read the device's
 * avail_event/flags (or used idx): a store followed by a load.  Also
 * orders the idx store before the notification (an MMIO write for PCI). */
static inline void virtq_barrier_store_before_load(void)
{
    VIRTQ_DMA_MB();
}

/* The device's used idx load before we read the used entries it covers. */
static inline void virtq_barrier_idx_before_entries(void)
{
    VIRTQ_DMA_RMB();
}

static inline uint16_t virtq_load16(const __virtio16 *p)
{
    return le16toh(__atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED));
}

static inline void virtq_store16(__virtio16 *p, uint16_t v)
{
    __atomic_store_n((uint16_t *)p, htole16(v), __ATOMIC_RELAXED);
}

/* One descriptor, all fields little-endian. */
static inline void virtq_desc_set(struct vring_desc *d, uint64_t addr,
                                  uint32_t len, uint16_t flags, uint16_t next)
{
    d->addr = htole64(addr);
    d->len = htole32(len);
    d->flags = htole16(flags);
    d->next = htole16(next);
}

/* Take a free descriptor for an indirect table of n entries the caller
 * has filled (table_addr as the device sees it); returns the head index,
 * or -ENOSPC when no descriptor is free. */
static inline int virtq_add_indirect_head(struct virtq *vq,
                                          uint64_t table_addr, unsigned n)
{
    uint16_t head = vq->free_head;

    if (__builtin_expect(vq->nfree == 0, 0))
        return -ENOSPC;
    if (n < vq->ind_declared)
        n = vq->ind_declared;
    virtq_desc_set(&vq->desc[head], table_addr,
                   (uint32_t)(n * sizeof(struct vring_desc)),
                   VRING_DESC_F_INDIRECT, 0);
    vq->free_head = vq->next[head];
    vq->nfree--;
    vq->chain_len[head] = 1;
    vq->head_busy[head] = 1;
    return head;
}

/* Append a head to the available ring (still not visible). */
static inline void virtq_push(struct virtq *vq, uint16_t head)
{
    vq->avail->ring[vq->avail_idx & (vq->num - 1)] = htole16(head);
    vq->avail_idx++;
    vq->inflight++;
}

/* Device completions waiting, without consuming (true also when the
 * device broke the protocol: the next reap finds out). */
static inline bool virtq_has_used(const struct virtq *vq)
{
    return virtq_load16(&vq->used->idx) != vq->last_used;
}

/*
 * Reaping a batch: virtq_used_ready() once, then virtq_take_used() that
 * many times.  How many used elements the device has added, from one load
 * of the used idx: 0 for none, -EIO when it claims more than is in flight.  A
 * positive count makes that many entries readable with virtq_take_used()
 * without loading the idx again.
 */
static inline int virtq_used_ready(const struct virtq *vq)
{
    uint16_t ready = (uint16_t)(virtq_load16(&vq->used->idx) - vq->last_used);

    if (ready == 0)
        return 0;
    /* A device cannot have used more than we made available. */
    if (__builtin_expect(ready > vq->inflight, 0))
        return -EIO;
    virtq_barrier_idx_before_entries();
    return ready;
}

/* Consume the next used element counted by virtq_used_ready(): 1 with
 * *head and *len filled and the chain freed, or -EIO for a head out of
 * range or not in use. */
static inline int virtq_take_used(struct virtq *vq, uint16_t *head,
                                  uint32_t *len)
{
    const struct vring_used_elem *e =
        &vq->used->ring[vq->last_used & (vq->num - 1)];
    uint32_t id = le32toh(__atomic_load_n(&e->id, __ATOMIC_RELAXED));
    uint16_t n, last;

    *len = le32toh(__atomic_load_n(&e->len, __ATOMIC_RELAXED));
    if (__builtin_expect(id >= vq->num || !vq->head_busy[id], 0))
        return -EIO;
    vq->last_used++;
    vq->inflight--;
    /* Free the chain from our own shadow links, not from shared memory. */
    n = vq->chain_len[id];
    last = (uint16_t)id;
    for (uint16_t k = 1; k < n; k++)
        last = vq->next[last];
    vq->next[last] = vq->free_head;
    vq->free_head = (uint16_t)id;
    vq->nfree += n;
    vq->head_busy[id] = 0;
    *head = (uint16_t)id;
    return 1;
}

#endif /* BLKIO_VIRTQUEUE_H */
