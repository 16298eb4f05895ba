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
    virtq_desc_set(d, b->addr, b->len,
                   (uint16_t)(flags | (b->device_writes ? VRING_DESC_F_WRITE
                                                        : 0)), next);
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
    if (BLKIO_UNLIKELY(vq->nfree == 0 || n == 0))
        return -ENOSPC;
    /* Every entry but the last links to the next; no per-entry test. */
    for (unsigned k = 0; k + 1 < n; k++)
        virtq_fill(&table[k], &bufs[k], VRING_DESC_F_NEXT, (uint16_t)(k + 1));
    virtq_fill(&table[n - 1], &bufs[n - 1], 0, 0);
    return virtq_add_indirect_head(vq, table_addr, n);
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
