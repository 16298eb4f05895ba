/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Generic virtio-blk driver, I/O half: request encoding and the per-queue
 * request machinery on split virtqueues (virtqueue.h).
 *
 * A user request ("ureq") may need several device requests ("parts"): the
 * device limits segments per request (seg_max), bytes per segment
 * (size_max) and sectors per discard/write-zeroes, and FUA is a write
 * followed by a flush.  Parts are carved off a ureq as ring slots free up;
 * the ureq completes once, with its first error, when its last part does.
 *
 * Request slots are preallocated per queue; ureqs come from a per-queue
 * pool that grows in chunks (amortized, never per request in steady
 * state).
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "../sys-io.h"
#include "virtio-blk-int.h"

static const char vblk_msg_ioerr[] = "virtio-blk device reported an I/O error";
static const char vblk_msg_unsupp[] =
    "virtio-blk device does not support this request";
static const char vblk_msg_nostatus[] =
    "virtio-blk device completed a request without a valid status";
static const char vblk_msg_badlen[] =
    "virtio-blk device reported an invalid used length";
static const char vblk_msg_ring[] =
    "virtio-blk device broke the virtqueue protocol";
const char vblk_msg_dead[] =
    "virtio-blk device connection lost (backend gone)";
static const char vblk_msg_no_discard[] =
    "virtio-blk device does not support discard (no VIRTIO_BLK_F_DISCARD)";
static const char vblk_msg_no_wz[] =
    "virtio-blk device does not support write zeroes (no "
    "VIRTIO_BLK_F_WRITE_ZEROES) and BLKIO_REQ_NO_FALLBACK is set";
static const char vblk_msg_no_zones[] =
    "virtio-blk devices do not support zoned storage requests";
static const char vblk_msg_unmapped[] =
    "buffer is not inside a memory region mapped with "
    "blkio_map_mem_region() (needs-mem-regions is true)";
static const char vblk_msg_frag[] =
    "iovec too fragmented for the device's segment limits: fewer than one "
    "logical block fits in seg_max segments";

/* ---- user requests ---- */

static struct vblk_ureq *vblk_ureq_get(struct vblk_queue *vq)
{
    struct vblk_ureq *u = vq->ureq_free;

    if (BLKIO_UNLIKELY(!u)) {
        /* Grow the pool by a chunk: amortized, rare after warm-up. */
        struct vblk_ureq_chunk *c = malloc(sizeof(*c));
        if (!c)
            return NULL;
        c->next = vq->chunks;
        vq->chunks = c;
        for (int i = VBLK_UREQ_CHUNK - 1; i >= 0; i--) {
            c->ureqs[i].next = vq->ureq_free;
            vq->ureq_free = &c->ureqs[i];
        }
        u = vq->ureq_free;
    }
    vq->ureq_free = u->next;
    return u;
}

static void vblk_ureq_put(struct vblk_queue *vq, struct vblk_ureq *u)
{
    u->next = vq->ureq_free;
    vq->ureq_free = u;
}

static void vblk_pend_push(struct vblk_queue *vq, struct vblk_ureq *u)
{
    u->next = NULL;
    u->queued = true;
    if (vq->pend_tail)
        vq->pend_tail->next = u;
    else
        vq->pend_head = u;
    vq->pend_tail = u;
}

static struct vblk_ureq *vblk_pend_pop(struct vblk_queue *vq)
{
    struct vblk_ureq *u = vq->pend_head;

    vq->pend_head = u->next;
    if (!vq->pend_head)
        vq->pend_tail = NULL;
    u->queued = false;
    return u;
}

/* The last part of a ureq is done (or it never needed the device). */
static void vblk_ureq_finish(struct vblk_queue *vq, struct vblk_ureq *u)
{
    if (u->fua && u->ret == 0) {
        /* FUA emulation: the data is written, now make it durable. */
        u->fua = false;
        u->op = BLKIO_OP_FLUSH;
        u->offset = 0;
        u->end = 1;
        vblk_pend_push(vq, u);
        return;
    }
    if (u->synthetic)
        vq->signal_fd = true;
    blkioq_complete(vq->q, u->user_data, u->ret, u->msg);
    vblk_ureq_put(vq, u);
}

static void vblk_ureq_fail(struct vblk_ureq *u, int ret, const char *msg)
{
    if (u->ret == 0) {
        u->ret = ret;
        u->msg = msg;
    }
}

/* Complete a request we will not send, with our own message, and wake
 * event-driven callers: no device signal will come for it. */
static int vblk_refuse(struct vblk_queue *vq, const struct blkio_request *req,
                       int ret, const char *msg)
{
    blkioq_fail(vq->q, req->user_data, ret, msg);
    return 0;
}

/*
 * Write the header, one data and the status descriptor of a one-segment
 * read or write into slot s's indirect table, and its head into the ring;
 * returns the head or -ENOSPC.  Only queues with indirect tables place
 * requests directly (vq->direct_max is 0 without).
 */
static int vblk_place_rw1(struct vblk_queue *vq, uint16_t s, bool read,
                          uint64_t sector, uint64_t addr, uint32_t len)
{
    const struct virtio_blk *vb = vq->vb;
    struct vblk_slot_shm *sh = &vq->sshm[s];
    uint16_t dflags = read ? VRING_DESC_F_WRITE : 0;
    struct vring_desc *t;

    sh->hdr.type = htole32(read ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT);
    sh->hdr.ioprio = 0;
    sh->hdr.sector = htole64(sector);
    sh->status = VBLK_STATUS_UNTOUCHED;
    t = &vq->ind[(size_t)s * vb->ind_n];
    virtq_desc_set(&t[0], vblk_shm_addr(vb, &sh->hdr), sizeof(sh->hdr),
                   VRING_DESC_F_NEXT, 1);
    virtq_desc_set(&t[1], addr, len, VRING_DESC_F_NEXT | dflags, 2);
    virtq_desc_set(&t[2], vblk_shm_addr(vb, &sh->status), 1,
                   VRING_DESC_F_WRITE, 0);
    return virtq_add_indirect_head(&vq->vq, vblk_shm_addr(vb, t), 3);
}

/*
 * The common request straight into the ring: a read or write of one
 * buffer that is one device request (the caller checked: one segment
 * within the limits, no FUA flush to follow, nothing pending before it, a
 * free slot).  No ureq: the slot keeps the caller's user_data and its
 * completion is the request's.  Returns false, with nothing changed, to
 * take the general path (which also produces any error).
 */
static bool vblk_queue_direct(struct vblk_queue *vq,
                              const struct blkio_request *req)
{
    const struct virtio_blk *vb = vq->vb;
    uint64_t addr = (uint64_t)(uintptr_t)req->iov[0].iov_base;
    bool read = req->op == BLKIO_OP_READ;
    struct vblk_slot *slot;
    uint16_t s = vq->free_slots[vq->nfree_slots - 1];
    int head;

    if (vb->remap && !region_table_lookup(&vb->addrs, &vq->q->region_reading,
                                          req->iov[0].iov_base, req->len,
                                          &addr))
        return false;
    head = vblk_place_rw1(vq, s, read, req->start / VBLK_SECTOR, addr,
                          (uint32_t)req->len);
    if (BLKIO_UNLIKELY(head < 0))
        return false;
    vq->nfree_slots--;
    slot = &vq->slots[s];
    slot->ureq = NULL;
    slot->user_data = req->user_data;
    slot->in_bytes = read ? (uint32_t)req->len + 1 : 1;
    slot->head = (uint16_t)head;
    slot->busy = true;
    vq->slot_of_head[head] = s;
    virtq_push(&vq->vq, (uint16_t)head);
    return true;
}

/* Any request as a ureq on the pending list, carved into device requests
 * by blkioq_do_io() (vblk_submit_pending); requests the device cannot
 * take are completed here with their error.  Out of line: the direct path
 * stays short. */
static __attribute__((noinline)) int
vblk_queue_ureq(struct vblk_queue *vq, const struct blkio_request *req)
{
    struct virtio_blk *vb = vq->vb;
    struct vblk_ureq *u;

    if (BLKIO_UNLIKELY(vblk_is_dead(vb)))
        return vblk_refuse(vq, req, -ENOTCONN, vblk_msg_dead);
    if (BLKIO_UNLIKELY(vq->broken))
        return vblk_refuse(vq, req, vq->broken_ret, vq->broken_msg);

    switch (req->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
        /* Nothing to move (len 0, or no iovec elements): done, as on
         * io_uring; the device is never asked for 0 sectors. */
        if (req->len == 0) {
            blkioq_fail(vq->q, req->user_data, 0, NULL);
            return 0;
        }
        break;
    case BLKIO_OP_FLUSH:
        break;
    case BLKIO_OP_DISCARD:
        if (!vblk_has(vb, VIRTIO_BLK_F_DISCARD))
            return vblk_refuse(vq, req, -ENOTSUP, vblk_msg_no_discard);
        break;
    case BLKIO_OP_WRITE_ZEROES:
        if (!vblk_has(vb, VIRTIO_BLK_F_WRITE_ZEROES) &&
            (req->flags & BLKIO_REQ_NO_FALLBACK))
            return vblk_refuse(vq, req, -ENOTSUP, vblk_msg_no_wz);
        break;
    default:
        return vblk_refuse(vq, req, -ENOTSUP, vblk_msg_no_zones);
    }

    u = vblk_ureq_get(vq);
    if (BLKIO_UNLIKELY(!u))
        return -ENOMEM;
    u->op = req->op;
    u->flags = req->flags;
    u->offset = req->start;
    u->end = req->start + req->len;
    u->iov = req->iov;
    u->iovcnt = req->iovcnt;
    if (req->iov == &req->single) {
        /* blkioq_read()/write(): the iovec lives in the caller's frame. */
        u->single = req->single;
        u->iov = &u->single;
    }
    u->iov_idx = 0;
    u->iov_off = 0;
    u->parts = 0;
    u->fua = (req->flags & BLKIO_REQ_FUA) &&
             vblk_has(vb, VIRTIO_BLK_F_FLUSH);
    u->synthetic = false;
    u->ret = 0;
    u->msg = NULL;
    u->user_data = req->user_data;
    if (req->op == BLKIO_OP_FLUSH) {
        u->offset = 0;
        u->end = 1;
    }
    vblk_pend_push(vq, u);
    return 0;
}

int virtio_blk_queue_request(struct blkioq *q, const struct blkio_request *req)
{
    struct vblk_queue *vq = q->priv;

    /* One buffer that fits one device request (len 0 does not: it wraps
     * past direct_max), while nothing waits before it, on a live ring. */
    if (BLKIO_LIKELY((req->op == BLKIO_OP_READ ||
                      req->op == BLKIO_OP_WRITE) &&
                     req->iovcnt == 1 && req->len - 1 < vq->direct_max &&
                     req->iov[0].iov_len == req->len &&
                     !(req->flags & vq->fua_mask) && !vq->pend_head &&
                     vq->nfree_slots > 0 && !vblk_is_dead(vq->vb)) &&
        vblk_queue_direct(vq, req))
        return 0;
    return vblk_queue_ureq(vq, req);
}

/* ---- building device requests ---- */


/*
 * Take excess bytes off the end of the n data segments in vq->bufs[1..]
 * (dropping segments it empties), moving *got and the iov position
 * (*idx, *off) back with them.  Returns the segments left.
 */
static unsigned vblk_trim_to_block(struct vblk_queue *vq, unsigned n,
                                   uint64_t excess, uint64_t *got, int *idx,
                                   size_t *off)
{
    while (excess && n > 0) {
        struct virtq_buf *last = &vq->bufs[n];

        if (last->len > excess) {
            last->len -= (uint32_t)excess;
            *got -= excess;
            *off = vq->seg_off[n - 1] + last->len;
            *idx = vq->seg_idx[n - 1];
            excess = 0;
        } else {
            excess -= last->len;
            *got -= last->len;
            *off = vq->seg_off[n - 1];
            *idx = vq->seg_idx[n - 1];
            n--;
        }
    }
    return n;
}

/*
 * Collect the next part of a read/write into vq->bufs[1..]: returns the
 * number of data segments and its byte count in *bytes, with the new iov
 * position in *idx and *off.  0 means no whole block fits.
 */
static unsigned vblk_collect_rw(struct vblk_queue *vq, struct vblk_ureq *u,
                                uint64_t *bytes, int *idx, size_t *off)
{
    const struct virtio_blk *vb = vq->vb;
    uint64_t want = u->end - u->offset, got = 0, addr;
    bool dev_writes = u->op == BLKIO_OP_READ;
    unsigned n = 0;
    int i = u->iov_idx;
    size_t o = u->iov_off;

    /* One buffer that fits one segment whole, at device addresses equal
     * to ours (nearly every request): no walk. */
    if (u->iovcnt == 1 && i == 0 && o == 0 && !vb->remap &&
        want == u->iov[0].iov_len && want <= VBLK_MAX_PART_BYTES &&
        (!vb->size_max || want <= vb->size_max) && vq->max_part_segs > 0) {
        vq->bufs[1] = (struct virtq_buf){
            .addr = (uint64_t)(uintptr_t)u->iov[0].iov_base,
            .len = (uint32_t)want,
            .device_writes = dev_writes,
        };
        vq->seg_idx[0] = 0;
        vq->seg_off[0] = 0;
        *bytes = want;
        *idx = 0;
        *off = (size_t)want;
        return want ? 1 : 0;
    }
    if (want > VBLK_MAX_PART_BYTES)
        want = VBLK_MAX_PART_BYTES;
    while (n < vq->max_part_segs && got < want && i < u->iovcnt) {
        size_t left = u->iov[i].iov_len - o;
        uint64_t take = left;

        if (left == 0) {
            i++;
            o = 0;
            continue;
        }
        if (take > want - got)
            take = want - got;
        if (vb->size_max && take > vb->size_max)
            take = vb->size_max;
        addr = (uint64_t)(uintptr_t)((const uint8_t *)u->iov[i].iov_base + o);
        if (vb->remap &&
            !region_table_lookup(&vb->addrs, &vq->q->region_reading,
                                 (const void *)(uintptr_t)addr, take,
                                 &addr)) {
            vq->bad_addr = true;
            return 0;
        }
        vq->bufs[1 + n] = (struct virtq_buf){
            .addr = addr,
            .len = (uint32_t)take,
            .device_writes = dev_writes,
        };
        vq->seg_idx[n] = i;
        vq->seg_off[n] = o;
        n++;
        o += take;
        got += take;
    }

    /* A part that stops early must end on a block boundary. */
    if (got < u->end - u->offset)
        n = vblk_trim_to_block(vq, n, got % vb->blk_size, &got, &i, &o);
    *bytes = got;
    *idx = i;
    *off = o;
    return got ? n : 0;
}

/* Zero-buffer segments for write-zeroes without device support. */
static unsigned vblk_collect_zeroes(struct vblk_queue *vq,
                                    struct vblk_ureq *u, uint64_t *bytes)
{
    const struct virtio_blk *vb = vq->vb;
    uint64_t want = u->end - u->offset, got = 0;
    uint32_t seg = VBLK_ZERO_LEN;

    if (want > VBLK_MAX_PART_BYTES)
        want = VBLK_MAX_PART_BYTES;
    unsigned n = 0;

    if (vb->size_max && seg > vb->size_max)
        seg = vb->size_max - vb->size_max % vb->blk_size;
    while (n < vq->max_part_segs && got < want) {
        uint64_t take = want - got < seg ? want - got : seg;

        vq->bufs[1 + n] = (struct virtq_buf){
            .addr = vblk_shm_addr(vb, vb->shm), .len = (uint32_t)take,
        };
        n++;
        got += take;
    }
    *bytes = got;
    return n;
}

/* The range descriptor of a discard or write-zeroes part in sh; returns
 * the request type and its byte count in *bytes. */
static uint32_t vblk_build_dwz(struct vblk_queue *vq, struct vblk_ureq *u,
                               struct vblk_slot_shm *sh, uint64_t *bytes)
{
    const struct virtio_blk *vb = vq->vb;
    bool wz = u->op == BLKIO_OP_WRITE_ZEROES;
    uint64_t max = (uint64_t)(wz ? vb->max_wz_sectors
                                 : vb->max_discard_sectors) * VBLK_SECTOR;
    uint32_t flags = 0;

    max -= max % vb->blk_size;
    if (max == 0)
        max = vb->blk_size;
    *bytes = u->end - u->offset < max ? u->end - u->offset : max;
    if (wz && !(u->flags & BLKIO_REQ_NO_UNMAP))
        flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    sh->dwz.sector = htole64(u->offset / VBLK_SECTOR);
    sh->dwz.num_sectors = htole32((uint32_t)(*bytes / VBLK_SECTOR));
    sh->dwz.flags = htole32(flags);
    vq->bufs[1] = (struct virtq_buf){
        .addr = vblk_shm_addr(vb, &sh->dwz), .len = sizeof(sh->dwz),
    };
    return wz ? VIRTIO_BLK_T_WRITE_ZEROES : VIRTIO_BLK_T_DISCARD;
}

/* Header and status buffers around the nseg data buffers of slot s, and
 * the chain into the ring; returns its head or -ENOSPC. */
static int vblk_place_part(struct vblk_queue *vq, uint16_t s, uint32_t type,
                           uint64_t sector, unsigned nseg)
{
    const struct virtio_blk *vb = vq->vb;
    struct vblk_slot_shm *sh = &vq->sshm[s];
    unsigned nbufs = nseg + 2;

    sh->hdr.type = htole32(type);
    sh->hdr.ioprio = 0;
    sh->hdr.sector = htole64(sector);
    sh->status = VBLK_STATUS_UNTOUCHED;
    vq->bufs[0] = (struct virtq_buf){
        .addr = vblk_shm_addr(vb, &sh->hdr), .len = sizeof(sh->hdr),
    };
    vq->bufs[1 + nseg] = (struct virtq_buf){
        .addr = vblk_shm_addr(vb, &sh->status), .len = 1,
        .device_writes = true,
    };
    if (vq->ind) {
        struct vring_desc *table = &vq->ind[(size_t)s * vb->ind_n];

        return virtq_add_indirect(&vq->vq, table, vblk_shm_addr(vb, table),
                                  vq->bufs, nbufs);
    }
    return virtq_add_chain(&vq->vq, vq->bufs, nbufs);
}

/*
 * Carve the next part of u into a free slot.  Returns 1 when a part went
 * into the ring, 0 when the ring is full (try again later), -1 when u
 * failed without a part (its error is set).
 */
static int vblk_submit_part(struct vblk_queue *vq, struct vblk_ureq *u)
{
    struct virtio_blk *vb = vq->vb;
    struct vblk_slot_shm *sh;
    struct vblk_slot *slot;
    uint64_t bytes = 0;
    uint32_t type, in_bytes = 1;
    unsigned nseg = 0;
    int idx = u->iov_idx;
    size_t off = u->iov_off;
    uint16_t s;
    int head;

    if (vq->nfree_slots == 0)
        return 0;
    s = vq->free_slots[vq->nfree_slots - 1];
    sh = &vq->sshm[s];

    switch (u->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
        nseg = vblk_collect_rw(vq, u, &bytes, &idx, &off);
        if (nseg == 0) {
            if (vq->bad_addr)
                vblk_ureq_fail(u, -EFAULT, vblk_msg_unmapped);
            else
                vblk_ureq_fail(u, -EINVAL, vblk_msg_frag);
            vq->bad_addr = false;
            return -1;
        }
        type = u->op == BLKIO_OP_READ ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT;
        if (u->op == BLKIO_OP_READ)
            in_bytes += (uint32_t)bytes;
        break;
    case BLKIO_OP_WRITE_ZEROES:
        if (!vblk_has(vb, VIRTIO_BLK_F_WRITE_ZEROES)) {
            nseg = vblk_collect_zeroes(vq, u, &bytes);
            type = VIRTIO_BLK_T_OUT;
            break;
        }
        /* fall through */
    case BLKIO_OP_DISCARD:
        type = vblk_build_dwz(vq, u, sh, &bytes);
        nseg = 1;
        break;
    case BLKIO_OP_FLUSH:
        if (!vblk_has(vb, VIRTIO_BLK_F_FLUSH)) {
            /* Write-through device: nothing to flush. */
            u->offset = u->end;
            u->synthetic = true;
            return -1;
        }
        type = VIRTIO_BLK_T_FLUSH;
        bytes = 1;  /* the whole flush is one part */
        break;
    default:
        vblk_ureq_fail(u, -ENOTSUP, vblk_msg_unsupp);
        return -1;
    }

    head = vblk_place_part(vq, s, type, u->op == BLKIO_OP_FLUSH ? 0 :
                                        u->offset / VBLK_SECTOR, nseg);
    if (head < 0)
        return 0;   /* descriptors run out: wait for completions */

    vq->nfree_slots--;
    slot = &vq->slots[s];
    slot->ureq = u;
    slot->in_bytes = in_bytes;
    slot->head = (uint16_t)head;
    slot->busy = true;
    vq->slot_of_head[head] = s;
    virtq_push(&vq->vq, (uint16_t)head);

    u->parts++;
    u->offset += bytes;
    u->iov_idx = idx;
    u->iov_off = off;
    return 1;
}

/* Move pending ureqs into the ring as far as it goes (out of line:
 * vblk_submit_pending() below makes the usual empty case a load). */
static __attribute__((noinline)) void vblk_submit_ureqs(struct vblk_queue *vq)
{
    while (vq->pend_head) {
        struct vblk_ureq *u = vq->pend_head;
        int r = u->ret < 0 ? -1 : vblk_submit_part(vq, u);

        if (r == 0)
            break;
        if (r < 0 || u->offset >= u->end) {
            vblk_pend_pop(vq);
            if (u->parts == 0) {
                /* Failed or finished without the device: no call fd
                 * signal will announce this completion. */
                u->synthetic = true;
                vblk_ureq_finish(vq, u);
            }
        }
    }
}

static inline void vblk_submit_pending(struct vblk_queue *vq)
{
    if (vq->pend_head)
        vblk_submit_ureqs(vq);
}

/* Publish what was pushed and notify the device if it asks for it;
 * nothing to do (no call) when nothing was pushed since the last time. */
static inline void vblk_kick(struct vblk_queue *vq)
{
    if (vq->vq.avail_idx != vq->vq.kicked_idx && virtq_publish(&vq->vq))
        vq->vb->ops->kick(vq->vb->t, vq->vindex);
}

/* ---- completions ---- */

static void vblk_part_done(struct vblk_queue *vq, uint16_t s, int ret,
                           const char *msg)
{
    struct vblk_slot *slot = &vq->slots[s];
    struct vblk_ureq *u = slot->ureq;

    slot->busy = false;
    vq->free_slots[vq->nfree_slots++] = s;
    if (!u) {
        /* Placed directly (vblk_queue_direct): the whole request. */
        blkioq_complete(vq->q, slot->user_data, ret, msg);
        return;
    }
    slot->ureq = NULL;
    if (ret < 0)
        vblk_ureq_fail(u, ret, msg);
    if (--u->parts == 0 && !u->queued)
        vblk_ureq_finish(vq, u);
}

/* Fail everything this queue owns: the device can no longer be trusted
 * (or reached).  The ring is never used again. */
static void vblk_fail_all(struct vblk_queue *vq, int ret, const char *msg)
{
    unsigned num = vq->vq.num;

    if (!vq->broken) {
        vq->broken = true;
        vq->broken_ret = ret;
        vq->broken_msg = msg;
    }
    for (unsigned s = 0; s < num; s++)
        if (vq->slots[s].busy)
            vblk_part_done(vq, (uint16_t)s, ret, msg);
    while (vq->pend_head) {
        struct vblk_ureq *u = vblk_pend_pop(vq);

        vblk_ureq_fail(u, ret, msg);
        u->fua = false;
        if (u->parts == 0) {
            u->synthetic = true;
            vblk_ureq_finish(vq, u);
        }
    }
    /* No free slots: nothing is ever placed in this ring again. */
    vq->nfree_slots = 0;
}

/* The completion of a part from its used length and the status byte the
 * device wrote; *msg is set for an error. */
static int vblk_part_status(struct vblk_queue *vq, uint16_t s, uint32_t len,
                            const char **msg)
{
    uint8_t status = __atomic_load_n(&vq->sshm[s].status, __ATOMIC_RELAXED);

    if (BLKIO_UNLIKELY(len > vq->slots[s].in_bytes)) {
        *msg = vblk_msg_badlen;
        return -EIO;
    }
    switch (status) {
    case VIRTIO_BLK_S_OK:
        *msg = NULL;
        return 0;
    case VIRTIO_BLK_S_UNSUPP:
        *msg = vblk_msg_unsupp;
        return -ENOTSUP;
    case VIRTIO_BLK_S_IOERR:
        *msg = vblk_msg_ioerr;
        return -EIO;
    default:    /* untouched (0xff) or garbage */
        *msg = vblk_msg_nostatus;
        return -EIO;
    }
}

/* Consume the used entries present at one load of the used idx (later
 * ones wait for the next pass).  Returns how many were reaped. */
static unsigned vblk_reap(struct vblk_queue *vq)
{
    int ready = virtq_used_ready(&vq->vq);
    unsigned n;

    if (BLKIO_UNLIKELY(ready < 0)) {
        vblk_fail_all(vq, -EIO, vblk_msg_ring);
        return 0;
    }
    for (n = 0; n < (unsigned)ready; n++) {
        const char *msg;
        uint16_t head, s;
        uint32_t len;
        int ret;

        if (BLKIO_UNLIKELY(virtq_take_used(&vq->vq, &head, &len) < 0))
            break;
        s = vq->slot_of_head[head];
        if (BLKIO_UNLIKELY(!vq->slots[s].busy || vq->slots[s].head != head))
            break;
        ret = vblk_part_status(vq, s, len, &msg);
        vblk_part_done(vq, s, ret, msg);
    }
    if (BLKIO_UNLIKELY(n < (unsigned)ready))
        vblk_fail_all(vq, -EIO, vblk_msg_ring);
    return n;
}

static bool vblk_deadline_passed(const struct timespec *deadline)
{
    struct timespec now;

    if (!deadline)
        return false;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > deadline->tv_sec ||
           (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec);
}

/* Is the transport's hangup fd signalling?  One poll() with no wait. */
static bool vblk_check_hangup(struct virtio_blk *vb)
{
    int fd = vb->ops->hangup_fd(vb->t);
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };

    if (fd < 0)
        return false;
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR |
                                            POLLNVAL))) {
        virtio_blk_mark_dead(vb->b);
        return true;
    }
    return false;
}

/*
 * Whether an empty call should look at the connection: not when the last
 * look was under VBLK_HANGUP_RECHECK_NS ago.  An event-driven program
 * makes several empty calls per wake-up (libblkio's example: one before
 * and one after re-enabling the completion fd); one poll() covers them,
 * and a caller that waits with a timeout still sees the hang-up at its
 * next empty call after the wait.  The coarse clock is read from memory
 * the kernel updates every tick (no system call, no time-stamp counter),
 * so the check runs at most once per tick or per millisecond, whichever
 * is longer.
 */
static bool vblk_hangup_due(struct vblk_queue *vq)
{
    struct timespec now;
    uint64_t ns;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    if (ns - vq->hangup_checked_ns < VBLK_HANGUP_RECHECK_NS)
        return false;
    vq->hangup_checked_ns = ns;
    return true;
}

static inline void vblk_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* With one request in flight, a wake-up is for it: start fetching its
 * status byte (the device wrote it on another CPU) now, so that the load
 * overlaps the one of the used ring index instead of following it.  Its
 * slot is the last one taken, just above the free stack's top, when the
 * queue holds one request at a time (depth 1); after a deeper burst the
 * hint may name a free slot instead, which costs nothing. */
static inline void vblk_prefetch_lone_status(const struct vblk_queue *vq)
{
    const uint8_t *p;

    if (vq->nfree_slots + 1 != vq->vq.num)
        return;
    p = &vq->sshm[vq->free_slots[vq->nfree_slots]].status;
#if defined(__x86_64__) || defined(__i386__)
    /* Not __builtin_prefetch(): GCC 12 drops it from the wait loop. */
    __asm__ volatile("prefetcht0 %0" : : "m"(*p));
#else
    __builtin_prefetch(p);
#endif
}

static bool vblk_has_inflight(const struct vblk_queue *vq)
{
    return vq->nfree_slots < vq->vq.num || vq->pend_head;
}

/* Without a deadline epoll_pwait(); with one epoll_pwait2(), whose
 * timeout has nanoseconds, or epoll_pwait() with the timeout rounded up to
 * whole milliseconds where the kernel (or valgrind) lacks it. */
static int vblk_epoll_wait(int fd, struct epoll_event ev[2],
                           const struct timespec *tp, const sigset_t *sig)
{
    static atomic_bool no_pwait2;
    long long ms;
    int r;

    if (!tp)
        return (int)blkio_sys_epoll_pwait(fd, ev, 2, -1, sig);
    if (!atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        r = (int)blkio_sys_epoll_pwait2(fd, ev, 2, tp, sig);
        if (r >= 0 || errno != ENOSYS)
            return r;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
    ms = (long long)tp->tv_sec * 1000 + (tp->tv_nsec + 999999) / 1000000;
    if (ms > INT_MAX)
        ms = INT_MAX;
    return (int)blkio_sys_epoll_pwait(fd, ev, 2, (int)ms, sig);
}

/*
 * Sleep until the device signals the call fd (edge-triggered: nothing to
 * read afterwards), the connection hangs up, the deadline passes (-ETIME)
 * or, with sig, a signal arrives (-EINTR; without sig a signal returns 0,
 * to look again).  The caller has re-armed notifications and found the
 * used ring empty, so a signal after that look is a new edge.
 */
static int vblk_wait(struct vblk_queue *vq, const struct timespec *deadline,
                     const sigset_t *sig)
{
    struct epoll_event ev[2];
    struct timespec left, *tp = NULL;
    int r;

    if (deadline) {
        blkio_deadline_remaining(deadline, &left);
        tp = &left;
    }
    r = vblk_epoll_wait(vq->wait_fd, ev, tp, sig);
    if (r < 0) {
        /* Only blkioq_do_io_interruptible() (which always passes a set)
         * ends on a signal; blkioq_do_io() looks again and goes on. */
        if (errno == EINTR)
            return sig ? -EINTR : 0;
        return blkio_set_error(-errno, "epoll wait on virtqueue call fd: %m");
    }
    if (r == 0)
        return -ETIME;
    for (int i = 0; i < r; i++)
        if (ev[i].data.u32 == VBLK_WAIT_HANGUP &&
            (ev[i].events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)))
            virtio_blk_mark_dead(vq->vb->b);
    return 0;
}

static int vblk_process_locked(struct vblk_queue *vq, int min,
                               const struct timespec *deadline,
                               const sigset_t *sig)
{
    struct virtio_blk *vb = vq->vb;
    struct blkioq *q = vq->q;
    unsigned spins = 0;

    for (;;) {
        if (BLKIO_UNLIKELY(vblk_is_dead(vb)))
            vblk_fail_all(vq, -ENOTCONN, vblk_msg_dead);
        if (BLKIO_UNLIKELY(vq->broken))
            return 0;   /* everything has been completed with an error */

        vblk_submit_pending(vq);
        vblk_kick(vq);
        if (vblk_reap(vq)) {
            /* Freed slots may let more pending parts in. */
            vblk_submit_pending(vq);
            vblk_kick(vq);
        }
        if (blkioq_ring_count(q) >= (uint32_t)min)
            return 0;
        if (vq->broken)
            return 0;   /* everything has been completed with an error */

        if (q->poll) {
            /* Busy-poll the used ring without syscalls; look at the clock
             * and the connection only now and then. */
            if (++spins % VBLK_POLL_CHECK_SPINS == 0) {
                if (vblk_deadline_passed(deadline))
                    return -ETIME;
                vblk_check_hangup(vb);
            }
            vblk_cpu_relax();
            continue;
        }

        /* Regular queue: sleep on the call eventfd (and the connection).
         * Notifications must be on while we wait, whatever the app said. */
        virtq_set_notify(&vq->vq, true);
        if (virtq_has_used(&vq->vq))
            continue;
        {
            int r = vblk_wait(vq, deadline, sig);
            if (r < 0)
                return r;
        }
        vblk_prefetch_lone_status(vq);
    }
}

int virtio_blk_process(struct blkioq *q, int min,
                       const struct timespec *deadline, const sigset_t *sig)
{
    struct vblk_queue *vq = q->priv;
    unsigned before = blkioq_ring_count(q);
    int ret;

    /* An event-driven caller (min 0) woken without news may be looking at
     * a dead backend: check the connection rather than leave it waiting.
     * In a forked child, watch the connection for such callers again. */
    if (min == 0)
        vblk_hangup_watch_check_fork(&vq->vb->hup, q->b);
    if (min == 0 && !q->poll && vblk_has_inflight(vq) &&
        !virtq_has_used(&vq->vq) && !vq->pend_head &&
        vq->vq.avail_idx == vq->vq.kicked_idx && vblk_hangup_due(vq))
        vblk_check_hangup(vq->vb);

    ret = vblk_process_locked(vq, min, deadline, sig);

    if (!q->poll) {
        /* Re-arm (or keep suppressing) completion fd notifications.
         * Completions the device added after our last reap and before the
         * re-arm will not be signalled (with event index it only signals
         * when crossing used_event): signal the fd ourselves, or an
         * event-driven caller waits forever. */
        if (!vq->notify_off) {
            virtq_set_notify(&vq->vq, true);
            /* Not on a broken queue: its used ring is never reaped again,
             * and the fd would be signalled at every call for ever. */
            if (!vq->broken && virtq_has_used(&vq->vq))
                vq->signal_fd = true;
        } else if (!vq->vq.event_idx)
            virtq_set_notify(&vq->vq, false);
        if (vq->signal_fd || (vq->broken && blkioq_ring_count(q) > before))
            blkioq_notify(q);
    }
    vq->signal_fd = false;
    return ret;
}

bool virtio_blk_set_completion_fd_enabled(struct blkioq *q, bool enable)
{
    struct vblk_queue *vq = q->priv;

    if (!vq || q->poll)
        return false;
    if (enable)
        vblk_hangup_watch_check_fork(&vq->vb->hup, q->b);
    vq->notify_off = !enable;
    virtq_set_notify(&vq->vq, enable);
    /* The device signals only completions it adds from now on: report
     * those it added while notifications were off. */
    return enable && !vq->broken && virtq_has_used(&vq->vq);
}
