/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-blk-int.h - the state the generic virtio-blk driver shares
 * between its two files: virtio-blk.c (connect, config, start, memory,
 * queue setup) and virtio-blk-io.c (requests and completions).  Not for
 * transports: they see virtio-blk.h only.
 */
#ifndef BLKIO_VIRTIO_BLK_INT_H
#define BLKIO_VIRTIO_BLK_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "internal.h"
#include "hangup-watch.h"
#include "virtio.h"
#include "region-table.h"
#include "virtio-blk.h"
#include "virtqueue.h"

#define VBLK_SECTOR             512u
#define VBLK_MAX_SEGS           1024u   /* cap on what we trust of seg_max */
#define VBLK_ZERO_LEN           (64u * 1024)
#define VBLK_STATUS_UNTOUCHED   0xffu   /* no valid status has this value */
#define VBLK_DEFAULT_QUEUE_SIZE 256
#define VBLK_MAX_QUEUE_SIZE     32768
#define VBLK_UREQ_CHUNK         64
/* Bytes per device request: used lengths and descriptor lengths are 32
 * bits, so keep parts well below 4 GiB (a multiple of any blk_size). */
#define VBLK_MAX_PART_BYTES     (1ull << 30)
#define VBLK_POLL_CHECK_SPINS   4096u   /* busy-poll spins between deadline
                                           and hangup checks */
/* An empty event-driven blkioq_do_io() looks at the connection (a poll()
 * system call) at most this often; calls in between read the clock only. */
#define VBLK_HANGUP_RECHECK_NS  1000000u
/* Tags of the wait set's two members (vblk_queue.wait_fd). */
#define VBLK_WAIT_CALL          1u
#define VBLK_WAIT_HANGUP        2u

/* Features we can use; everything else offered is declined. */
#define VBLK_WANTED_FEATURES                                                 \
    ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_BLK_F_SIZE_MAX) |        \
     (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |      \
     (1ull << VIRTIO_BLK_F_TOPOLOGY) | (1ull << VIRTIO_BLK_F_MQ) |           \
     (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_DISCARD) |         \
     (1ull << VIRTIO_BLK_F_WRITE_ZEROES) | (1ull << VIRTIO_BLK_F_RO) |       \
     (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_RING_F_INDIRECT_DESC))

/* The part of struct virtio_blk_config we read: up to and including
 * write_zeroes_may_unmap and its padding. */
#define VBLK_CONFIG_LEN 60u

struct virtio_blk {
    struct blkio *b;
    const struct virtio_transport_ops *ops;
    void *t;
    struct virtio_dev dev;      /* the status handshake */
    struct region_table addrs;  /* regions, when the transport remaps */
    bool remap;                 /* ops->remaps(), asked at connect */
    uint64_t shm_delta;         /* device address of shm minus shm */

    uint64_t features;          /* negotiated */
    uint32_t blk_size;
    uint32_t seg_max;
    uint32_t size_max;          /* 0: no limit */
    uint32_t max_discard_sectors;
    uint32_t max_wz_sectors;
    bool dev_ro;

    /* Shared memory: zero buffer, then one block per virtqueue. */
    void *shm;
    size_t shm_len;
    int shm_fd;
    size_t queue_block;         /* bytes per virtqueue block */
    unsigned nvqs;
    unsigned ind_n;             /* entries per indirect table (0: none) */

    int dead;                   /* atomic: transport lost the device */
    struct vblk_hangup_watch hup;   /* wakes completion fd waiters when the
                                       connection hangs up */
};

/* Shared with the device, one per request slot. */
struct vblk_slot_shm {
    struct virtio_blk_outhdr hdr;                   /* device reads */
    struct virtio_blk_discard_write_zeroes dwz;     /* device reads */
    uint8_t status;                                 /* device writes */
    uint8_t pad[31];
};

struct vblk_ureq {
    struct vblk_ureq *next;     /* pending list or free list */
    enum blkio_op op;
    uint32_t flags;
    uint64_t offset;            /* next device byte to submit */
    uint64_t end;
    const struct iovec *iov;
    int iovcnt;
    int iov_idx;                /* submission position in iov */
    size_t iov_off;
    struct iovec single;        /* copy for blkioq_read()/write() */
    uint32_t parts;             /* parts in flight */
    bool queued;                /* on the pending list */
    bool fua;                   /* flush after the data is written */
    bool synthetic;             /* completed without a device signal */
    int ret;
    const char *msg;
    void *user_data;
};

struct vblk_ureq_chunk {
    struct vblk_ureq_chunk *next;
    struct vblk_ureq ureqs[VBLK_UREQ_CHUNK];
};

struct vblk_slot {
    struct vblk_ureq *ureq;     /* NULL: placed directly, one part */
    void *user_data;            /* of a request placed directly */
    uint32_t in_bytes;          /* device-writable bytes, status included */
    uint16_t head;
    bool busy;
};

struct vblk_queue {
    struct virtio_blk *vb;
    struct blkioq *q;
    unsigned vindex;
    struct virtq vq;

    struct vblk_slot_shm *sshm;
    struct vring_desc *ind;     /* ind_n entries per slot, or NULL */
    struct vblk_slot *slots;
    uint16_t *free_slots;       /* stack */
    unsigned nfree_slots;
    uint16_t *slot_of_head;
    unsigned max_part_segs;     /* data segments per device request */
    uint64_t direct_max;        /* longest read/write placed directly as
                                   one segment (0: none, or no indirect
                                   tables) */
    uint32_t fua_mask;          /* BLKIO_REQ_FUA when FUA needs a flush */

    /* Scratch for building one part. */
    struct virtq_buf *bufs;
    int *seg_idx;
    size_t *seg_off;

    struct vblk_ureq *pend_head, *pend_tail;
    struct vblk_ureq *ureq_free;
    struct vblk_ureq_chunk *chunks;

    uint64_t hangup_checked_ns; /* CLOCK_MONOTONIC_COARSE of the last
                                   empty-call connection check */
    int call_fd;
    int wait_fd;                /* epoll: call_fd edge-triggered, and the
                                   transport's hangup fd (-1: poll queue) */
    bool own_call_fd;
    bool notify_off;            /* application disabled the completion fd */
    bool broken;                /* device broke the ring: fail everything */
    bool signal_fd;             /* synthetic completions need a wakeup */
    bool bad_addr;              /* a buffer lies outside mapped regions */
    const char *broken_msg;
    int broken_ret;
};

extern const char vblk_msg_dead[];

static inline bool vblk_has(const struct virtio_blk *vb, unsigned bit)
{
    return vb->features & (1ull << bit);
}

/* Where the device sees p inside our own shared memory (shm). */
static inline uint64_t vblk_shm_addr(const struct virtio_blk *vb,
                                     const void *p)
{
    return (uint64_t)(uintptr_t)p + vb->shm_delta;
}

static inline bool vblk_is_dead(const struct virtio_blk *vb)
{
    return __atomic_load_n(&vb->dead, __ATOMIC_ACQUIRE);
}

#endif /* BLKIO_VIRTIO_BLK_INT_H */
