/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Generic virtio-blk driver: feature negotiation, config space to
 * properties, request encoding and the per-queue request machinery, on top
 * of any transport (virtio-transport.h) and split virtqueues (virtqueue.h).
 *
 * A user request ("ureq") may need several device requests ("parts"): the
 * device limits segments per request (seg_max), bytes per segment
 * (size_max) and sectors per discard/write-zeroes, and FUA is a write
 * followed by a flush.  Parts are carved off a ureq as ring slots free up;
 * the ureq completes once, with its first error, when its last part does.
 *
 * Memory: rings, request headers, status bytes and indirect tables live in
 * one memfd region the transport shares with the device.  Request slots
 * are preallocated per queue; ureqs come from a per-queue pool that grows
 * in chunks (amortized, never per request in steady state).
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "internal.h"
#include "virtio.h"
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
    struct vblk_ureq *ureq;
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

    /* Scratch for building one part. */
    struct virtq_buf *bufs;
    int *seg_idx;
    size_t *seg_off;

    struct vblk_ureq *pend_head, *pend_tail;
    struct vblk_ureq *ureq_free;
    struct vblk_ureq_chunk *chunks;

    int call_fd;
    bool own_call_fd;
    bool notify_off;            /* application disabled the completion fd */
    bool broken;                /* device broke the ring: fail everything */
    bool signal_fd;             /* synthetic completions need a wakeup */
    const char *broken_msg;
    int broken_ret;
};

static const char vblk_msg_ioerr[] = "virtio-blk device reported an I/O error";
static const char vblk_msg_unsupp[] =
    "virtio-blk device does not support this request";
static const char vblk_msg_nostatus[] =
    "virtio-blk device completed a request without a valid status";
static const char vblk_msg_badlen[] =
    "virtio-blk device reported an invalid used length";
static const char vblk_msg_ring[] =
    "virtio-blk device broke the virtqueue protocol";
static const char vblk_msg_dead[] =
    "virtio-blk device connection lost (backend gone)";
static const char vblk_msg_no_discard[] =
    "virtio-blk device does not support discard (no VIRTIO_BLK_F_DISCARD)";
static const char vblk_msg_no_wz[] =
    "virtio-blk device does not support write zeroes (no "
    "VIRTIO_BLK_F_WRITE_ZEROES) and BLKIO_REQ_NO_FALLBACK is set";
static const char vblk_msg_no_zones[] =
    "virtio-blk devices do not support zoned storage requests";
static const char vblk_msg_frag[] =
    "iovec too fragmented for the device's segment limits: fewer than one "
    "logical block fits in seg_max segments";

static inline bool vblk_has(const struct virtio_blk *vb, unsigned bit)
{
    return vb->features & (1ull << bit);
}

/* ---- properties and connect ---- */

int virtio_blk_set_queue_size(struct blkio *b, const struct blkio_property *p,
                              const void *value)
{
    int v = *(const int *)value;
    int max = b->max_queue_size ? b->max_queue_size : VBLK_MAX_QUEUE_SIZE;

    if (v < 1 || v > max || (v & (v - 1)))
        return blkio_set_error(-EINVAL, "%s must be a power of two between "
                               "1 and max-queue-size %d, got %d", p->name,
                               max, v);
    return 0;
}

int virtio_blk_create(struct blkio *b, const struct virtio_transport_ops *ops,
                      void *t)
{
    struct virtio_blk *vb = calloc(1, sizeof(*vb));

    if (!vb)
        return blkio_set_error(-ENOMEM, "out of memory creating virtio-blk "
                               "state");
    vb->b = b;
    vb->ops = ops;
    vb->t = t;
    vb->dev.ops = ops;
    vb->dev.t = t;
    vb->shm_fd = -1;
    b->priv = vb;
    b->queue_size = VBLK_DEFAULT_QUEUE_SIZE;
    b->max_queue_size = VBLK_MAX_QUEUE_SIZE;
    return 0;
}

void *virtio_blk_transport(struct blkio *b)
{
    struct virtio_blk *vb = b->priv;
    return vb ? vb->t : NULL;
}

void virtio_blk_mark_dead(struct blkio *b)
{
    struct virtio_blk *vb = b->priv;
    __atomic_store_n(&vb->dead, 1, __ATOMIC_RELEASE);
}

static bool vblk_is_dead(const struct virtio_blk *vb)
{
    return __atomic_load_n(&vb->dead, __ATOMIC_ACQUIRE);
}

static uint32_t vblk_cfg32(const uint8_t *cfg, size_t off)
{
    uint32_t v;
    memcpy(&v, cfg + off, sizeof(v));
    return le32toh(v);
}

static uint16_t vblk_cfg16(const uint8_t *cfg, size_t off)
{
    uint16_t v;
    memcpy(&v, cfg + off, sizeof(v));
    return le16toh(v);
}

#define VBLK_CFG(field) offsetof(struct virtio_blk_config, field)

int virtio_blk_connect(struct blkio *b)
{
    struct virtio_blk *vb = b->priv;
    uint64_t wanted = VBLK_WANTED_FEATURES, sectors;
    uint8_t cfg[VBLK_CONFIG_LEN];
    int tmax, ret;

    /* A connection lost by an earlier, failed blkio_connect() is not
     * this one's. */
    __atomic_store_n(&vb->dead, 0, __ATOMIC_RELEASE);
#ifdef BLKIO_TEST_SWITCHES
    {
        /* Test builds only: decline features to exercise fallback paths
         * (no indirect descriptors, no event index, no write zeroes)
         * against devices that offer everything. */
        const char *mask = getenv("LIBBLKIO_VIRTIO_DECLINE_FEATURES");

        if (mask && *mask)
            wanted &= ~strtoull(mask, NULL, 0);
    }
#endif
    ret = virtio_dev_negotiate(&vb->dev, wanted);
    if (ret < 0)
        return ret;
    vb->features = vb->dev.features;

    memset(cfg, 0, sizeof(cfg));
    ret = vb->ops->read_config(vb->t, cfg, sizeof(cfg));
    if (ret < 0)
        return ret;

    /* Config space comes from the device: validate before use. */
    memcpy(&sectors, cfg + VBLK_CFG(capacity), sizeof(sectors));
    sectors = le64toh(sectors);
    if (sectors > UINT64_MAX / VBLK_SECTOR)
        return blkio_set_error(-EIO, "virtio-blk device reported an invalid "
                               "capacity of %llu sectors",
                               (unsigned long long)sectors);
    b->capacity = sectors * VBLK_SECTOR;

    vb->blk_size = VBLK_SECTOR;
    if (vblk_has(vb, VIRTIO_BLK_F_BLK_SIZE)) {
        uint32_t bs = vblk_cfg32(cfg, VBLK_CFG(blk_size));

        if (bs < VBLK_SECTOR || bs > VBLK_ZERO_LEN || (bs & (bs - 1)))
            return blkio_set_error(-EIO, "virtio-blk device reported an "
                                   "invalid blk_size %u", bs);
        vb->blk_size = bs;
    }
    b->request_alignment = (int)vb->blk_size;
    b->optimal_io_alignment = (int)vb->blk_size;
    b->optimal_io_size = 0;
    if (vblk_has(vb, VIRTIO_BLK_F_TOPOLOGY)) {
        uint8_t exp = cfg[VBLK_CFG(physical_block_exp)];
        uint64_t opt = (uint64_t)vblk_cfg32(cfg, VBLK_CFG(opt_io_size)) *
                       vb->blk_size;

        if (exp <= 16)
            b->optimal_io_alignment = (int)(vb->blk_size << exp);
        if (opt <= INT_MAX)
            b->optimal_io_size = (int)opt;
    }

    vb->seg_max = 1;
    if (vblk_has(vb, VIRTIO_BLK_F_SEG_MAX)) {
        uint32_t s = vblk_cfg32(cfg, VBLK_CFG(seg_max));
        vb->seg_max = s == 0 ? 1 : s > VBLK_MAX_SEGS ? VBLK_MAX_SEGS : s;
    }
    vb->size_max = 0;
    if (vblk_has(vb, VIRTIO_BLK_F_SIZE_MAX)) {
        uint32_t s = vblk_cfg32(cfg, VBLK_CFG(size_max));

        /* Anything below a block would make progress impossible. */
        if (s != 0 && s < vb->blk_size)
            return blkio_set_error(-EIO, "virtio-blk device reported "
                                   "size_max %u below blk_size %u", s,
                                   vb->blk_size);
        vb->size_max = s > INT_MAX ? 0 : s;
    }
    b->max_segments = (int)vb->seg_max;
    /* libblkio reports 0 (no limit) here even when size_max is offered:
     * we split segments longer than size_max ourselves. */
    b->max_segment_len = 0;
    b->max_transfer = 0;

    b->discard_alignment = 0;
    b->max_discard_len = 0;
    if (vblk_has(vb, VIRTIO_BLK_F_DISCARD)) {
        uint32_t a = vblk_cfg32(cfg, VBLK_CFG(discard_sector_alignment));
        uint32_t m = vblk_cfg32(cfg, VBLK_CFG(max_discard_sectors));

        if (a == 0 || (uint64_t)a * VBLK_SECTOR > INT_MAX)
            a = vb->blk_size / VBLK_SECTOR;
        b->discard_alignment = (int)(a * VBLK_SECTOR);
        vb->max_discard_sectors = m ? m : UINT32_MAX;
        b->max_discard_len = (uint64_t)vb->max_discard_sectors * VBLK_SECTOR;
    }
    b->max_write_zeroes_len = 0;
    if (vblk_has(vb, VIRTIO_BLK_F_WRITE_ZEROES)) {
        uint32_t m = vblk_cfg32(cfg, VBLK_CFG(max_write_zeroes_sectors));

        vb->max_wz_sectors = m ? m : UINT32_MAX;
        b->max_write_zeroes_len = (uint64_t)vb->max_wz_sectors * VBLK_SECTOR;
    }

    b->max_queues = 1;
    if (vblk_has(vb, VIRTIO_BLK_F_MQ)) {
        uint16_t n = vblk_cfg16(cfg, VBLK_CFG(num_queues));

        if (n == 0)
            return blkio_set_error(-EIO, "virtio-blk device reported "
                                   "num_queues 0");
        b->max_queues = n;
    }
    tmax = vb->ops->max_queues(vb->t);
    if (tmax > 0 && b->max_queues > tmax)
        b->max_queues = tmax;

    vb->dev_ro = vblk_has(vb, VIRTIO_BLK_F_RO);
    b->flush_needed = vblk_has(vb, VIRTIO_BLK_F_FLUSH);
    b->supports_fua_natively = false;
    b->supports_poll_queues = true;
    b->can_add_queues = false;
    b->can_grow = false;
    b->buf_alignment = 1;
    b->optimal_buf_alignment = 1;
    b->mem_region_alignment = 1;
    b->max_mem_regions = vb->ops->max_mem_regions(vb->t);
    b->max_queue_size = VBLK_MAX_QUEUE_SIZE;
    return 0;
}

/* ---- start: shared memory ---- */

static size_t vblk_page_align(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (n + page - 1) & ~(page - 1);
}

int virtio_blk_start(struct blkio *b)
{
    struct virtio_blk *vb = b->priv;
    unsigned num = (unsigned)b->queue_size;
    struct blkio_mem_region r;
    size_t qb;
    void *addr;
    int ret;

    if (vb->shm) {
        /* An earlier blkio_start() failed after this point: start over. */
        munmap(vb->shm, vb->shm_len);
        close(vb->shm_fd);
        vb->shm = NULL;
        vb->shm_fd = -1;
    }
    if (vb->dev_ro && !b->read_only)
        return blkio_set_error(-EROFS, "device is read-only (virtio-blk "
                               "VIRTIO_BLK_F_RO): set the read-only property "
                               "to true before blkio_connect()");
    if (b->queue_size < 1 || b->queue_size > b->max_queue_size ||
        (num & (num - 1)))
        return blkio_set_error(-EINVAL, "queue-size %d must be a power of "
                               "two between 1 and %d", b->queue_size,
                               b->max_queue_size);
    vb->ind_n = vblk_has(vb, VIRTIO_RING_F_INDIRECT_DESC) ? vb->seg_max + 2
                                                          : 0;
    if (!vb->ind_n && num < 3)
        return blkio_set_error(-EINVAL, "queue-size %d is too small: the "
                               "device has no indirect descriptors and a "
                               "request needs at least 3", b->queue_size);

    vb->nvqs = (unsigned)(b->num_queues + b->num_poll_queues);
    ret = virtio_dev_begin_start(&vb->dev, vb->nvqs);
    if (ret < 0)
        return ret;

    qb = virtq_ring_size(num);
    qb += (size_t)num * sizeof(struct vblk_slot_shm);
    qb += (size_t)num * vb->ind_n * sizeof(struct vring_desc);
    vb->queue_block = vblk_page_align(qb);
    vb->shm_len = VBLK_ZERO_LEN + (size_t)vb->nvqs * vb->queue_block;

    /* memfd so that the device (another process) can map it too. */
    vb->shm_fd = memfd_create("blkio-virtio-rings", MFD_CLOEXEC);
    if (vb->shm_fd < 0)
        return blkio_set_error(-errno, "memfd_create for virtqueues: %m");
    if (ftruncate(vb->shm_fd, (off_t)vb->shm_len) < 0) {
        ret = blkio_set_error(-errno, "ftruncate virtqueue memfd to %zu "
                              "bytes: %m", vb->shm_len);
        goto err_fd;
    }
    addr = mmap(NULL, vb->shm_len, PROT_READ | PROT_WRITE, MAP_SHARED,
                vb->shm_fd, 0);
    if (addr == MAP_FAILED) {
        ret = blkio_set_error(-errno, "mmap of %zu bytes of virtqueue "
                              "memory: %m", vb->shm_len);
        goto err_fd;
    }
    vb->shm = addr;

    r = (struct blkio_mem_region){
        .addr = vb->shm, .len = vb->shm_len, .fd = vb->shm_fd,
    };
    ret = vb->ops->start(vb->t, &r, vb->nvqs, (unsigned)b->num_queues);
    if (ret < 0)
        goto err_map;
    return 0;

err_map:
    munmap(vb->shm, vb->shm_len);
    vb->shm = NULL;
err_fd:
    close(vb->shm_fd);
    vb->shm_fd = -1;
    return ret;
}

void virtio_blk_destroy(struct blkio *b)
{
    struct virtio_blk *vb = b->priv;

    if (!vb)
        return;
    if (vb->ops && vb->t)
        vb->ops->destroy(vb->t);
    if (vb->shm)
        munmap(vb->shm, vb->shm_len);
    if (vb->shm_fd >= 0)
        close(vb->shm_fd);
    free(vb);
    b->priv = NULL;
}

int virtio_blk_map_mem_region(struct blkio *b,
                              const struct blkio_mem_region *region)
{
    struct virtio_blk *vb = b->priv;

    if (vblk_is_dead(vb))
        return blkio_set_error(-ENOTCONN, "%s", vblk_msg_dead);
    return vb->ops->map_region(vb->t, region);
}

void virtio_blk_unmap_mem_region(struct blkio *b,
                                 const struct blkio_mem_region *region)
{
    struct virtio_blk *vb = b->priv;
    struct virtio_quiet quiet;

    if (vblk_is_dead(vb))
        return;
    virtio_quiet_begin(&quiet);
    vb->ops->unmap_region(vb->t, region);
    virtio_quiet_end(&quiet);
}

/* ---- queues ---- */

static void vblk_queue_free(struct vblk_queue *vq)
{
    while (vq->chunks) {
        struct vblk_ureq_chunk *c = vq->chunks;
        vq->chunks = c->next;
        free(c);
    }
    virtq_cleanup(&vq->vq);
    free(vq->slots);
    free(vq->free_slots);
    free(vq->slot_of_head);
    free(vq->bufs);
    free(vq->seg_idx);
    free(vq->seg_off);
    if (vq->own_call_fd && vq->call_fd >= 0)
        close(vq->call_fd);
    free(vq);
}

int virtio_blk_queue_init(struct blkioq *q)
{
    struct blkio *b = q->b;
    struct virtio_blk *vb = b->priv;
    unsigned num = (unsigned)b->queue_size;
    unsigned vindex = q->poll ? (unsigned)(b->num_queues + q->index)
                              : (unsigned)q->index;
    unsigned nbufs;
    struct vblk_queue *vq;
    struct virtio_vq_info info;
    uint8_t *mem;
    int ret;

    if (vindex >= vb->nvqs)
        return blkio_set_error(-EINVAL, "virtqueue %u does not exist (%u "
                               "set up at start)", vindex, vb->nvqs);
    vq = calloc(1, sizeof(*vq));
    if (!vq)
        return blkio_set_error(-ENOMEM, "out of memory creating queue");
    vq->vb = vb;
    vq->q = q;
    vq->vindex = vindex;
    vq->call_fd = -1;

    mem = (uint8_t *)vb->shm + VBLK_ZERO_LEN + vindex * vb->queue_block;
    /* The memfd is fresh, so the block is zero; not touching it keeps
     * the pages of large indirect tables unallocated until used. */
    ret = virtq_init(&vq->vq, mem, num, vblk_has(vb, VIRTIO_RING_F_EVENT_IDX));
    if (ret < 0)
        goto err;
    vq->sshm = (struct vblk_slot_shm *)(mem + virtq_ring_size(num));
    if (vb->ind_n) {
        vq->ind = (struct vring_desc *)(vq->sshm + num);
        vq->max_part_segs = vb->seg_max;
    } else {
        vq->max_part_segs = vb->seg_max < num - 2 ? vb->seg_max : num - 2;
    }
    nbufs = vq->max_part_segs + 2;

    vq->slots = calloc(num, sizeof(*vq->slots));
    vq->free_slots = calloc(num, sizeof(*vq->free_slots));
    vq->slot_of_head = calloc(num, sizeof(*vq->slot_of_head));
    vq->bufs = calloc(nbufs, sizeof(*vq->bufs));
    vq->seg_idx = calloc(nbufs, sizeof(*vq->seg_idx));
    vq->seg_off = calloc(nbufs, sizeof(*vq->seg_off));
    if (!vq->slots || !vq->free_slots || !vq->slot_of_head || !vq->bufs ||
        !vq->seg_idx || !vq->seg_off) {
        ret = blkio_set_error(-ENOMEM, "out of memory creating queue");
        goto err;
    }
    for (unsigned i = 0; i < num; i++)
        vq->free_slots[i] = (uint16_t)(num - 1 - i);
    vq->nfree_slots = num;

    if (q->poll) {
        /* The device still needs somewhere to signal; nobody waits on it
         * and notifications stay suppressed. */
        vq->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (vq->call_fd < 0) {
            ret = blkio_set_error(-errno, "eventfd for poll queue %d: %m",
                                  q->index);
            goto err;
        }
        vq->own_call_fd = true;
        virtq_set_notify(&vq->vq, false);
    } else {
        vq->call_fd = q->completion_fd;
        virtq_set_notify(&vq->vq, true);
    }

    info = (struct virtio_vq_info){
        .index = vindex,
        .num = num,
        .desc_addr = (uint64_t)(uintptr_t)vq->vq.desc,
        .avail_addr = (uint64_t)(uintptr_t)vq->vq.avail,
        .used_addr = (uint64_t)(uintptr_t)vq->vq.used,
        .call_fd = vq->call_fd,
    };
    ret = virtio_dev_setup_queue(&vb->dev, &info);
    if (ret < 0)
        goto err;
    q->priv = vq;
    return 0;

err:
    vblk_queue_free(vq);
    return ret;
}

void virtio_blk_queue_destroy(struct blkioq *q)
{
    struct vblk_queue *vq = q->priv;

    if (!vq)
        return;
    if (!vblk_is_dead(vq->vb))
        virtio_dev_stop_queue(&vq->vb->dev, vq->vindex);
    vblk_queue_free(vq);
    q->priv = NULL;
}

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

int virtio_blk_queue_request(struct blkioq *q, const struct blkio_request *req)
{
    struct vblk_queue *vq = q->priv;
    struct virtio_blk *vb = vq->vb;
    struct vblk_ureq *u;

    if (BLKIO_UNLIKELY(vblk_is_dead(vb)))
        return vblk_refuse(vq, req, -ENOTCONN, vblk_msg_dead);
    if (BLKIO_UNLIKELY(vq->broken))
        return vblk_refuse(vq, req, vq->broken_ret, vq->broken_msg);

    switch (req->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
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

/* ---- building device requests ---- */

static uint64_t vblk_addr(const void *p)
{
    /* Transports map memory so that the device sees our addresses. */
    return (uint64_t)(uintptr_t)p;
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
    uint64_t want = u->end - u->offset, got = 0, excess;
    bool dev_writes = u->op == BLKIO_OP_READ;
    unsigned n = 0;
    int i = u->iov_idx;
    size_t o = u->iov_off;

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
        vq->bufs[1 + n] = (struct virtq_buf){
            .addr = vblk_addr((const uint8_t *)u->iov[i].iov_base + o),
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
    excess = got < u->end - u->offset ? got % vb->blk_size : 0;
    while (excess && n > 0) {
        struct virtq_buf *last = &vq->bufs[n];

        if (last->len > excess) {
            last->len -= (uint32_t)excess;
            got -= excess;
            o = vq->seg_off[n - 1] + last->len;
            i = vq->seg_idx[n - 1];
            excess = 0;
        } else {
            excess -= last->len;
            got -= last->len;
            o = vq->seg_off[n - 1];
            i = vq->seg_idx[n - 1];
            n--;
        }
    }
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
            .addr = vblk_addr(vb->shm), .len = (uint32_t)take,
        };
        n++;
        got += take;
    }
    *bytes = got;
    return n;
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
    unsigned nseg = 0, nbufs;
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
            vblk_ureq_fail(u, -EINVAL, vblk_msg_frag);
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
    case BLKIO_OP_DISCARD: {
        bool wz = u->op == BLKIO_OP_WRITE_ZEROES;
        uint64_t max = (uint64_t)(wz ? vb->max_wz_sectors
                                     : vb->max_discard_sectors) * VBLK_SECTOR;
        uint32_t flags = 0;

        max -= max % vb->blk_size;
        if (max == 0)
            max = vb->blk_size;
        bytes = u->end - u->offset < max ? u->end - u->offset : max;
        if (wz && !(u->flags & BLKIO_REQ_NO_UNMAP))
            flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
        sh->dwz.sector = htole64(u->offset / VBLK_SECTOR);
        sh->dwz.num_sectors = htole32((uint32_t)(bytes / VBLK_SECTOR));
        sh->dwz.flags = htole32(flags);
        vq->bufs[1] = (struct virtq_buf){
            .addr = vblk_addr(&sh->dwz), .len = sizeof(sh->dwz),
        };
        nseg = 1;
        type = wz ? VIRTIO_BLK_T_WRITE_ZEROES : VIRTIO_BLK_T_DISCARD;
        break;
    }
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

    sh->hdr.type = htole32(type);
    sh->hdr.ioprio = 0;
    sh->hdr.sector = htole64(u->op == BLKIO_OP_FLUSH ? 0
                                                     : u->offset / VBLK_SECTOR);
    sh->status = VBLK_STATUS_UNTOUCHED;
    vq->bufs[0] = (struct virtq_buf){
        .addr = vblk_addr(&sh->hdr), .len = sizeof(sh->hdr),
    };
    vq->bufs[1 + nseg] = (struct virtq_buf){
        .addr = vblk_addr(&sh->status), .len = 1, .device_writes = true,
    };
    nbufs = nseg + 2;

    if (vq->ind)
        head = virtq_add_indirect(&vq->vq, &vq->ind[(size_t)s * vb->ind_n],
                                  vblk_addr(&vq->ind[(size_t)s * vb->ind_n]),
                                  vq->bufs, nbufs);
    else
        head = virtq_add_chain(&vq->vq, vq->bufs, nbufs);
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

/* Move pending ureqs into the ring as far as it goes. */
static void vblk_submit_pending(struct vblk_queue *vq)
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

static void vblk_kick(struct vblk_queue *vq)
{
    if (virtq_publish(&vq->vq))
        vq->vb->ops->kick(vq->vb->t, vq->vindex);
}

/* ---- completions ---- */

static void vblk_part_done(struct vblk_queue *vq, uint16_t s, int ret,
                           const char *msg)
{
    struct vblk_slot *slot = &vq->slots[s];
    struct vblk_ureq *u = slot->ureq;

    slot->busy = false;
    slot->ureq = NULL;
    vq->free_slots[vq->nfree_slots++] = s;
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

/* Consume used entries.  Returns how many were reaped. */
static unsigned vblk_reap(struct vblk_queue *vq)
{
    unsigned n = 0;

    for (;;) {
        struct vblk_slot *slot;
        uint16_t head, s;
        uint32_t len;
        uint8_t status;
        int ret, r = virtq_get_used(&vq->vq, &head, &len);

        if (r == 0)
            break;
        if (r < 0) {
            vblk_fail_all(vq, -EIO, vblk_msg_ring);
            break;
        }
        s = vq->slot_of_head[head];
        slot = &vq->slots[s];
        if (!slot->busy || slot->head != head) {
            vblk_fail_all(vq, -EIO, vblk_msg_ring);
            break;
        }
        status = __atomic_load_n(&vq->sshm[s].status, __ATOMIC_RELAXED);
        if (len > slot->in_bytes) {
            ret = -EIO;
            vblk_part_done(vq, s, -EIO, vblk_msg_badlen);
        } else {
            const char *msg = NULL;

            switch (status) {
            case VIRTIO_BLK_S_OK:
                ret = 0;
                break;
            case VIRTIO_BLK_S_UNSUPP:
                ret = -ENOTSUP;
                msg = vblk_msg_unsupp;
                break;
            case VIRTIO_BLK_S_IOERR:
                ret = -EIO;
                msg = vblk_msg_ioerr;
                break;
            default:    /* untouched (0xff) or garbage */
                ret = -EIO;
                msg = vblk_msg_nostatus;
                break;
            }
            vblk_part_done(vq, s, ret, msg);
        }
        n++;
    }
    return n;
}

/* Read the call eventfd so that the next signal wakes us again. */
static void vblk_drain_fd(int fd)
{
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
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

static inline void vblk_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static bool vblk_has_inflight(const struct vblk_queue *vq)
{
    return vq->nfree_slots < vq->vq.num || vq->pend_head;
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
            struct pollfd pfd[2] = {
                { .fd = vq->call_fd, .events = POLLIN },
                { .fd = vb->ops->hangup_fd(vb->t), .events = POLLRDHUP },
            };
            struct timespec left, *tp = NULL;
            int r;

            if (deadline) {
                blkio_deadline_remaining(deadline, &left);
                tp = &left;
            }
            r = ppoll(pfd, pfd[1].fd >= 0 ? 2 : 1, tp, sig);
            if (r < 0) {
                if (errno == EINTR)
                    return -EINTR;
                return blkio_set_error(-errno, "ppoll on virtqueue call fd: "
                                       "%m");
            }
            if (r == 0)
                return -ETIME;
            if (pfd[0].revents & POLLIN)
                vblk_drain_fd(vq->call_fd);
            if (pfd[1].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL))
                virtio_blk_mark_dead(vb->b);
        }
    }
}

int virtio_blk_process(struct blkioq *q, int min,
                       const struct timespec *deadline, const sigset_t *sig)
{
    struct vblk_queue *vq = q->priv;
    unsigned before = blkioq_ring_count(q);
    int ret;

    /* An event-driven caller (min 0) woken without news may be looking at
     * a dead backend: check the connection rather than leave it waiting. */
    if (min == 0 && !q->poll && vblk_has_inflight(vq) &&
        !virtq_has_used(&vq->vq) && !vq->pend_head)
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
            if (virtq_has_used(&vq->vq))
                vq->signal_fd = true;
        } else if (!vq->vq.event_idx)
            virtq_set_notify(&vq->vq, false);
        if (vq->signal_fd || (vq->broken && blkioq_ring_count(q) > before))
            blkioq_notify(q);
    }
    vq->signal_fd = false;
    return ret;
}

void virtio_blk_set_completion_fd_enabled(struct blkioq *q, bool enable)
{
    struct vblk_queue *vq = q->priv;

    if (!vq || q->poll)
        return;
    vq->notify_off = !enable;
    virtq_set_notify(&vq->vq, enable);
}
