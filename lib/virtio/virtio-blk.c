/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Generic virtio-blk driver, set-up half: feature negotiation (through
 * virtio.c), config space to properties, the shared memory the rings live
 * in, memory regions and queue setup, on top of any transport
 * (virtio-transport.h).  Requests and completions: virtio-blk-io.c.
 *
 * Memory: rings, request headers, status bytes and indirect tables live in
 * one memfd region the transport shares with the device.
 */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "virtio-blk-int.h"

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

int virtio_blk_set_fd_unsupported(struct blkio *b,
                                  const struct blkio_property *p,
                                  const void *value)
{
    (void)value;
    return blkio_set_error(-ENOENT, "%s cannot take an open file descriptor "
                           "in '%s': set 'path' instead", b->drv->name,
                           p->name);
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
    vblk_hangup_watch_init(&vb->hup);
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

/* Capacity, block size and topology; config space comes from the device:
 * validate before use. */
static int vblk_cfg_geometry(struct virtio_blk *vb, const uint8_t *cfg)
{
    struct blkio *b = vb->b;
    uint64_t sectors;

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

        uint64_t phys = exp <= 16 ? (uint64_t)vb->blk_size << exp : 0;

        /* Up to 64 KiB blocks times 2^16: kept only where an int holds it
         * (a larger value is ignored, as an exponent above 16 is). */
        if (phys && phys <= INT_MAX)
            b->optimal_io_alignment = (int)phys;
        if (opt <= INT_MAX)
            b->optimal_io_size = (int)opt;
    }
    return 0;
}

/* Segment, discard and write-zeroes limits. */
static int vblk_cfg_limits(struct virtio_blk *vb, const uint8_t *cfg)
{
    struct blkio *b = vb->b;

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
    return 0;
}

/* Queues: the device's num_queues, capped by what the transport drives. */
static int vblk_cfg_queues(struct virtio_blk *vb, const uint8_t *cfg)
{
    struct blkio *b = vb->b;
    int tmax;

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
    return 0;
}

int virtio_blk_connect(struct blkio *b)
{
    struct virtio_blk *vb = b->priv;
    uint64_t wanted = VBLK_WANTED_FEATURES;
    uint8_t cfg[VBLK_CONFIG_LEN];
    int ret;

    /* A connection lost by an earlier, failed blkio_connect() is not
     * this one's. */
    __atomic_store_n(&vb->dead, 0, __ATOMIC_RELEASE);
    vb->remap = vb->ops->remaps && vb->ops->remaps(vb->t);
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
    ret = vblk_cfg_geometry(vb, cfg);
    if (ret == 0)
        ret = vblk_cfg_limits(vb, cfg);
    if (ret == 0)
        ret = vblk_cfg_queues(vb, cfg);
    if (ret < 0)
        return ret;

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
    uint64_t dev_addr;
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
    /* The connection went in an earlier, failed blkio_start(): what is
     * sent now would reach no backend, or one out of step with us. */
    if (vblk_is_dead(vb))
        return blkio_set_error(-ENOTCONN, "%s: connect again (a new "
                               "instance)", vblk_msg_dead);
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
    ret = vb->ops->start(vb->t, &r, vb->nvqs, (unsigned)b->num_queues,
                         &dev_addr);
    if (ret < 0)
        goto err_map;
    vb->shm_delta = dev_addr - (uint64_t)(uintptr_t)vb->shm;
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
    vblk_hangup_watch_fini(&vb->hup);
    if (vb->ops && vb->t)
        vb->ops->destroy(vb->t);
    if (vb->shm)
        munmap(vb->shm, vb->shm_len);
    if (vb->shm_fd >= 0)
        close(vb->shm_fd);
    region_table_free(&vb->addrs);
    free(vb);
    b->priv = NULL;
}

int virtio_blk_map_mem_region(struct blkio *b,
                              const struct blkio_mem_region *region)
{
    struct virtio_blk *vb = b->priv;
    uint64_t dev_addr;
    int ret;

    if (vblk_is_dead(vb))
        return blkio_set_error(-ENOTCONN, "%s", vblk_msg_dead);
    ret = vb->ops->map_region(vb->t, region, &dev_addr);
    if (ret == 0 && vb->remap) {
        ret = region_table_add(&vb->addrs, region->addr, region->len,
                               dev_addr);
        if (ret < 0)
            vb->ops->unmap_region(vb->t, region);
        blkio_region_table_reclaim(b, &vb->addrs);
    }
    return ret;
}

void virtio_blk_unmap_mem_region(struct blkio *b,
                                 const struct blkio_mem_region *region)
{
    struct virtio_blk *vb = b->priv;
    struct virtio_quiet quiet;

    if (vb->remap) {
        region_table_remove(&vb->addrs, region->addr, region->len);
        blkio_region_table_reclaim(b, &vb->addrs);
    }
    if (vblk_is_dead(vb))
        return;
    virtio_quiet_begin(&quiet);
    vb->ops->unmap_region(vb->t, region);
    virtio_quiet_end(&quiet);
}

/* At destroy: the device-address table goes with the driver, so only the
 * transport needs telling, in one go where it can. */
void virtio_blk_unmap_all_mem_regions(struct blkio *b,
                                      const struct blkio_mem_region *regions,
                                      size_t n)
{
    struct virtio_blk *vb = b->priv;
    struct virtio_quiet quiet;

    if (vblk_is_dead(vb))
        return;
    virtio_quiet_begin(&quiet);
    if (!vb->ops->unmap_regions ||
        vb->ops->unmap_regions(vb->t, regions, n) < 0)
        for (size_t i = n; i > 0; i--)
            vb->ops->unmap_region(vb->t, &regions[i - 1]);
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
    if (vq->wait_fd >= 0)
        close(vq->wait_fd);
    free(vq);
}

/* The queue's ring, slots and indirect tables in its block of shared
 * memory, and the private bookkeeping arrays. */
static int vblk_queue_layout(struct vblk_queue *vq, unsigned num)
{
    struct virtio_blk *vb = vq->vb;
    uint8_t *mem = (uint8_t *)vb->shm + VBLK_ZERO_LEN +
                   vq->vindex * vb->queue_block;
    unsigned nbufs;
    int ret;

    /* The memfd is fresh, so the block is zero; not touching it keeps
     * the pages of large indirect tables unallocated until used. */
    ret = virtq_init(&vq->vq, mem, num, vblk_has(vb, VIRTIO_RING_F_EVENT_IDX));
    if (ret < 0)
        return ret;
    vq->sshm = (struct vblk_slot_shm *)(mem + virtq_ring_size(num));
    if (vb->ind_n) {
        vq->ind = (struct vring_desc *)(vq->sshm + num);
        vq->max_part_segs = vb->seg_max;
        if (vb->ops->full_indirect)
            vq->vq.ind_declared = (uint16_t)(vb->ind_n < num ? vb->ind_n : num);
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
        !vq->seg_idx || !vq->seg_off)
        return blkio_set_error(-ENOMEM, "out of memory creating queue");
    for (unsigned i = 0; i < num; i++)
        vq->free_slots[i] = (uint16_t)(num - 1 - i);
    vq->nfree_slots = num;
    /* Direct placement fills the slot's indirect table; without indirect
     * descriptors every request takes the general path. */
    if (vq->ind && vq->max_part_segs > 0) {
        vq->direct_max = VBLK_MAX_PART_BYTES;
        if (vb->size_max && vb->size_max < vq->direct_max)
            vq->direct_max = vb->size_max;
    }
    vq->fua_mask = vblk_has(vb, VIRTIO_BLK_F_FLUSH) ? BLKIO_REQ_FUA : 0;
    return 0;
}

/*
 * The set a blocking blkioq_do_io() sleeps on: the call eventfd, edge-
 * triggered, so that a wake-up needs no read() to re-arm it (each device
 * signal is a new edge; the count it leaves only makes the completion fd
 * readable, which the manual allows), and the connection's hang-up.  Made
 * once, so that a wait is one epoll_pwait() and no per-call poll set-up.
 */
static int vblk_wait_set_create(struct vblk_queue *vq)
{
    struct virtio_blk *vb = vq->vb;
    int hup = vb->ops->hangup_fd(vb->t);
    struct epoll_event call = { .events = EPOLLIN | EPOLLET,
                                .data.u32 = VBLK_WAIT_CALL };
    struct epoll_event gone = { .events = EPOLLRDHUP,
                                .data.u32 = VBLK_WAIT_HANGUP };

    vq->wait_fd = epoll_create1(EPOLL_CLOEXEC);
    if (vq->wait_fd < 0)
        return blkio_set_error(-errno, "epoll_create1 for queue %d: %m",
                               vq->q->index);
    if (epoll_ctl(vq->wait_fd, EPOLL_CTL_ADD, vq->call_fd, &call) < 0 ||
        (hup >= 0 && epoll_ctl(vq->wait_fd, EPOLL_CTL_ADD, hup, &gone) < 0))
        return blkio_set_error(-errno, "epoll_ctl for queue %d: %m",
                               vq->q->index);
    return 0;
}

int virtio_blk_queue_init(struct blkioq *q)
{
    struct blkio *b = q->b;
    struct virtio_blk *vb = b->priv;
    unsigned num = (unsigned)b->queue_size;
    unsigned vindex = q->poll ? (unsigned)(b->num_queues + q->index)
                              : (unsigned)q->index;
    struct vblk_queue *vq;
    struct virtio_vq_info info;
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
    vq->wait_fd = -1;

    ret = vblk_queue_layout(vq, num);
    if (ret < 0)
        goto err;

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
        int hup = vb->ops->hangup_fd(vb->t);

        vq->call_fd = q->completion_fd;
        ret = vblk_wait_set_create(vq);
        if (ret < 0)
            goto err;
        if (hup >= 0) {
            ret = vblk_hangup_watch_add(&vb->hup, b, hup, q->completion_fd);
            if (ret < 0)
                goto err;
        }
        /* The completion fd starts disabled, as the manual allows ("the
         * driver might not generate completion events for requests" until
         * the application enables it) and libblkio 1.5 behaves: a program
         * that only waits in blkioq_do_io() is then signalled only for the
         * waits that sleep, not for every completion that lands while it
         * is busy elsewhere. */
        vq->notify_off = true;
        virtq_set_notify(&vq->vq, false);
    }

    info = (struct virtio_vq_info){
        .index = vindex,
        .num = num,
        .desc_addr = vblk_shm_addr(vb, vq->vq.desc),
        .avail_addr = vblk_shm_addr(vb, vq->vq.avail),
        .used_addr = vblk_shm_addr(vb, vq->vq.used),
        .call_fd = vq->call_fd,
    };
    ret = virtio_dev_setup_queue(&vb->dev, &info);
    if (ret < 0)
        goto err;
    q->priv = vq;
    return 0;

err:
    /* The start fails and every queue goes: the watch starts over. */
    vblk_hangup_watch_stop(&vb->hup);
    vblk_queue_free(vq);
    return ret;
}

void virtio_blk_queue_destroy(struct blkioq *q)
{
    struct vblk_queue *vq = q->priv;

    if (!vq)
        return;
    /* The watch must let go of the completion fd before it is closed;
     * at blkio_destroy() every queue goes, and the watch with them. */
    if (q->b->destroying)
        vblk_hangup_watch_stop(&vq->vb->hup);
    else if (!q->poll)
        vblk_hangup_watch_remove(&vq->vb->hup, q->b, q->completion_fd,
                                 !vblk_is_dead(vq->vb));
    if (!vblk_is_dead(vq->vb))
        virtio_dev_stop_queue(&vq->vb->dev, vq->vindex);
    vblk_queue_free(vq);
    q->priv = NULL;
}

