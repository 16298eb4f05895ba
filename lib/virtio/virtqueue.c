/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Split virtqueue, driver side.  Layout in one block of shared memory:
 *
 *   desc[num]        16 bytes each, 16-byte aligned
 *   avail            flags, idx, ring[num], used_event
 *   used             flags, idx, ring[num] (8 bytes each), avail_event
 *
 * All shared fields are little-endian (VIRTIO_F_VERSION_1).
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "virtqueue.h"

/*
 * Barriers, named for what they order.  The device is another CPU (a
 * vhost-user backend, VDUSE) or real hardware doing DMA (vfio-pci, a
 * vDPA card, with VIRTIO_F_ORDER_PLATFORM negotiated where offered), so
 * they order our accesses for both: the platform's DMA ordering.  On x86
 * that is what the SMP fences give (stores are not reordered with stores
 * nor loads with loads, DMA is cache-coherent, and the full fence drains
 * the store buffer; the notification's uncached MMIO write is not
 * reordered with earlier stores), so there is no cost for the CPU-device
 * case.  On arm64
 * the SMP fences only cover the inner-shareable domain; a device needs
 * the outer-shareable ones (what Linux's dma_wmb()/dma_rmb()/mb() use).
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

static size_t virtq_avail_size(unsigned num)
{
    return 4 + 2 * (size_t)num + 2;     /* flags, idx, ring, used_event */
}

static size_t virtq_used_size(unsigned num)
{
    return 4 + 8 * (size_t)num + 2;     /* flags, idx, ring, avail_event */
}

#define VIRTQ_ALIGN(x, a) (((x) + (a) - 1) & ~((size_t)(a) - 1))

size_t virtq_ring_size(unsigned num)
{
    size_t s = 16 * (size_t)num;

    s = VIRTQ_ALIGN(s + virtq_avail_size(num), 4);
    return VIRTQ_ALIGN(s + virtq_used_size(num), 16);
}

int virtq_init(struct virtq *vq, void *mem, unsigned num, bool event_idx)
{
    uint8_t *p = mem;

    memset(vq, 0, sizeof(*vq));
    if (num == 0 || num > 32768 || (num & (num - 1)))
        return blkio_set_error(-EINVAL, "queue size %u is not a power of "
                               "two between 1 and 32768", num);
    vq->num = (uint16_t)num;    /* 32768 fits; indices wrap at 65536 */
    vq->event_idx = event_idx;
    vq->desc = (struct vring_desc *)p;
    vq->avail = (struct vring_avail *)(p + 16 * (size_t)num);
    vq->used = (struct vring_used *)(p + VIRTQ_ALIGN(16 * (size_t)num +
                                                     virtq_avail_size(num),
                                                     4));
    vq->next = calloc(num, sizeof(*vq->next));
    vq->chain_len = calloc(num, sizeof(*vq->chain_len));
    vq->head_busy = calloc(num, 1);
    if (!vq->next || !vq->chain_len || !vq->head_busy) {
        virtq_cleanup(vq);
        return blkio_set_error(-ENOMEM, "out of memory for a %u-entry "
                               "virtqueue", num);
    }
    for (unsigned i = 0; i < num; i++)
        vq->next[i] = (uint16_t)(i + 1);
    vq->free_head = 0;
    vq->nfree = (uint16_t)num;
    return 0;
}

void virtq_cleanup(struct virtq *vq)
{
    free(vq->next);
    free(vq->chain_len);
    free(vq->head_busy);
    vq->next = vq->chain_len = NULL;
    vq->head_busy = NULL;
}

static inline void virtq_fill(struct vring_desc *d, const struct virtq_buf *b,
                       uint16_t flags, uint16_t next)
{
    d->addr = htole64(b->addr);
    d->len = htole32(b->len);
    d->flags = htole16(flags | (b->device_writes ? VRING_DESC_F_WRITE : 0));
    d->next = htole16(next);
}

int virtq_add_chain(struct virtq *vq, const struct virtq_buf *bufs,
                    unsigned n)
{
    uint16_t head = vq->free_head, i = head;

    if (n == 0 || n > vq->nfree)
        return -ENOSPC;
    for (unsigned k = 0; k < n; k++) {
        bool last = k + 1 == n;
        uint16_t nx = vq->next[i];

        virtq_fill(&vq->desc[i], &bufs[k], last ? 0 : VRING_DESC_F_NEXT,
                   last ? 0 : nx);
        if (!last)
            i = nx;
    }
    vq->free_head = vq->next[i];
    vq->nfree -= (uint16_t)n;
    vq->chain_len[head] = (uint16_t)n;
    vq->head_busy[head] = 1;
    return head;
}

int virtq_add_indirect(struct virtq *vq, struct vring_desc *table,
                       uint64_t table_addr, const struct virtq_buf *bufs,
                       unsigned n)
{
    struct virtq_buf ind = {
        .addr = table_addr,
        .len = (uint32_t)(n * sizeof(struct vring_desc)),
    };
    uint16_t head;

    if (BLKIO_UNLIKELY(vq->nfree == 0 || n == 0))
        return -ENOSPC;
    /* Every entry but the last links to the next; no per-entry test. */
    for (unsigned k = 0; k + 1 < n; k++)
        virtq_fill(&table[k], &bufs[k], VRING_DESC_F_NEXT, (uint16_t)(k + 1));
    virtq_fill(&table[n - 1], &bufs[n - 1], 0, 0);
    head = vq->free_head;
    virtq_fill(&vq->desc[head], &ind, VRING_DESC_F_INDIRECT, 0);
    vq->free_head = vq->next[head];
    vq->nfree--;
    vq->chain_len[head] = 1;
    vq->head_busy[head] = 1;
    return head;
}

void virtq_push(struct virtq *vq, uint16_t head)
{
    vq->avail->ring[vq->avail_idx & (vq->num - 1)] = htole16(head);
    vq->avail_idx++;
    vq->inflight++;
}

bool virtq_publish(struct virtq *vq)
{
    uint16_t old = vq->kicked_idx, new = vq->avail_idx;

    if (old == new)
        return false;
    /* The device must see the descriptors and ring entries before it
     * can see the index that covers them. */
    virtq_barrier_entries_before_idx();
    virtq_store16(&vq->avail->idx, new);
    vq->kicked_idx = new;
    /* Ensure the device can see the new idx before we read whether it
     * wants to be told about it; otherwise it may go to sleep unseen. */
    virtq_barrier_store_before_load();
    if (vq->event_idx) {
        uint16_t event = virtq_load16((const __virtio16 *)
                                      &vq->used->ring[vq->num]);
        return vring_need_event(event, new, old);
    }
    return !(virtq_load16(&vq->used->flags) & VRING_USED_F_NO_NOTIFY);
}

bool virtq_has_used(const struct virtq *vq)
{
    uint16_t idx = virtq_load16(&vq->used->idx);
    uint16_t ready = (uint16_t)(idx - vq->last_used);

    return ready != 0;
}

int virtq_get_used(struct virtq *vq, uint16_t *head, uint32_t *len)
{
    uint16_t idx = virtq_load16(&vq->used->idx);
    uint16_t ready = (uint16_t)(idx - vq->last_used);
    const struct vring_used_elem *e;
    uint32_t id;

    if (ready == 0)
        return 0;
    /* A device cannot have used more than we made available. */
    if (ready > vq->inflight)
        return -EIO;
    virtq_barrier_idx_before_entries();
    e = &vq->used->ring[vq->last_used & (vq->num - 1)];
    id = le32toh(__atomic_load_n(&e->id, __ATOMIC_RELAXED));
    *len = le32toh(__atomic_load_n(&e->len, __ATOMIC_RELAXED));
    if (id >= vq->num || !vq->head_busy[id])
        return -EIO;
    vq->last_used++;
    vq->inflight--;

    /* Free the chain from our own shadow links, not from shared memory. */
    {
        uint16_t n = vq->chain_len[id], last = (uint16_t)id;

        for (uint16_t k = 1; k < n; k++)
            last = vq->next[last];
        vq->next[last] = vq->free_head;
        vq->free_head = (uint16_t)id;
        vq->nfree += n;
        vq->head_busy[id] = 0;
    }
    *head = (uint16_t)id;
    return 1;
}

void virtq_set_notify(struct virtq *vq, bool enable)
{
    if (vq->event_idx) {
        /* used_event sits after the avail ring entries.  Disabling is
         * leaving it stale: the device only signals when crossing it. */
        if (enable)
            virtq_store16(&vq->avail->ring[vq->num], vq->last_used);
    } else {
        virtq_store16(&vq->avail->flags,
                      enable ? 0 : VRING_AVAIL_F_NO_INTERRUPT);
    }
    /* The store must be visible before the caller re-checks the used
     * idx, or a completion landing in between would go unsignalled. */
    virtq_barrier_store_before_load();
}
