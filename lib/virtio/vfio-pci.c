/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-blk-vfio-pci driver: the virtio-pci modern transport (virtio 1.x,
 * section 4.1) on top of the VFIO plumbing in vfio.c.  The device logic is
 * the generic virtio-blk code and the handshake is virtio.c's; this file
 * finds the device's virtio structures in its BARs, moves the status and
 * feature bits, programs the virtqueues, routes one MSI-X vector per
 * regular queue to that queue's completion eventfd and maps memory into
 * the IOMMU.
 *
 * Addresses: every mapping gets an IOVA from vfio.c's allocator inside the
 * IOMMU's usable ranges (IOVA is not the virtual address), so the generic
 * code translates the addresses it hands the device (.remaps).
 *
 * Untrusted device: capability offsets and lengths are checked against the
 * BAR sizes VFIO reports, queue sizes and notify offsets are checked before
 * use, and a device that does not take a status bit is refused.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <linux/virtio_config.h>
#include <linux/virtio_pci.h>

#include "internal.h"
#include "vfio.h"
#include "virtio-blk.h"

#define VP_VENDOR_VIRTIO        0x1af4
#define VP_DEVICE_BLK_MODERN    0x1042
#define VP_DEVICE_BLK_TRANS     0x1001
#define VP_CFG_SPACE            256     /* standard config space */
#define VP_MAX_CAPS             48      /* (256 - 64) / 4: no longer list */
#define VP_COMMON_LEN           56u     /* through queue_device_hi */
#define VP_CONFIG_RETRIES       16

/* One virtio structure inside a BAR, as a capability points at it. */
struct vp_area {
    int bar;                    /* -1: absent */
    uint64_t off;               /* in the BAR */
    uint64_t len;
};

/* Per virtqueue, fixed once the queue is set up. */
struct vp_vq {
    uint64_t notify_off;        /* in the notify area */
    bool live;                  /* set up and not stopped */
};

struct vfio_pci {
    struct blkio *b;
    struct vfio_dev vfio;

    struct vp_area common, notify, devcfg;
    uint32_t notify_mult;
    uint16_t dev_num_queues;    /* common cfg num_queues */

    bool started_once;          /* start() ran: a retry must clean up */

    struct blkio_mem_region internal;
    bool internal_mapped;

    struct vp_vq *vqs;
    unsigned nvqs;
    int *irq_fds;               /* by vector; -1 = none */
    unsigned nvec;
};

/* ---- the virtio structures in the BARs ---- */

/* One register of `width` bytes at `off` in area `a`.  Offsets were
 * checked against the area when it was found, and callers stay inside. */
static int vp_read(struct vfio_pci *vp, const struct vp_area *a, uint64_t off,
                   unsigned width, uint64_t *val)
{
    return vfio_bar_read(&vp->vfio, (unsigned)a->bar, a->off + off, width,
                         val);
}

static int vp_write(struct vfio_pci *vp, const struct vp_area *a,
                    uint64_t off, unsigned width, uint64_t val)
{
    return vfio_bar_write(&vp->vfio, (unsigned)a->bar, a->off + off, width,
                          val);
}

static int vp_common_rd(struct vfio_pci *vp, unsigned off, unsigned width,
                        uint64_t *val)
{
    return vp_read(vp, &vp->common, off, width, val);
}

static int vp_common_wr(struct vfio_pci *vp, unsigned off, unsigned width,
                        uint64_t val)
{
    return vp_write(vp, &vp->common, off, width, val);
}

/* 64-bit fields of the common config are written as two halves. */
static int vp_common_wr64(struct vfio_pci *vp, unsigned off, uint64_t val)
{
    int ret = vp_common_wr(vp, off, 4, val & 0xffffffffu);
    return ret < 0 ? ret : vp_common_wr(vp, off + 4, 4, val >> 32);
}

/* ---- device status ---- */

static int vp_get_status(void *t, uint8_t *status)
{
    uint64_t v = 0;
    int ret = vp_common_rd(t, VIRTIO_PCI_COMMON_STATUS, 1, &v);

    *status = ret < 0 ? 0 : (uint8_t)v;
    return ret;
}

static int vp_set_status(void *t, uint8_t status)
{
    return vp_common_wr(t, VIRTIO_PCI_COMMON_STATUS, 1, status);
}

/* Record the first capability of each type that makes sense; later ones
 * are alternatives the spec lets us ignore. */
static int vp_take_cap(struct vfio_pci *vp, const uint8_t *cfg, unsigned pos)
{
    uint8_t cap_len, type, bar;
    uint32_t off, len;
    struct vp_area *a;

    if (pos + sizeof(struct virtio_pci_cap) > VP_CFG_SPACE)
        return 0;       /* malformed: ignore it, not the device */
    cap_len = cfg[pos + VIRTIO_PCI_CAP_LEN];
    type = cfg[pos + VIRTIO_PCI_CAP_CFG_TYPE];
    bar = cfg[pos + VIRTIO_PCI_CAP_BAR];
    if (cap_len < sizeof(struct virtio_pci_cap) ||
        pos + cap_len > VP_CFG_SPACE)
        return 0;
    memcpy(&off, cfg + pos + VIRTIO_PCI_CAP_OFFSET, 4);
    memcpy(&len, cfg + pos + VIRTIO_PCI_CAP_LENGTH, 4);
    off = le32toh(off);
    len = le32toh(len);

    switch (type) {
    case VIRTIO_PCI_CAP_COMMON_CFG: a = &vp->common; break;
    case VIRTIO_PCI_CAP_NOTIFY_CFG: a = &vp->notify; break;
    case VIRTIO_PCI_CAP_DEVICE_CFG: a = &vp->devcfg; break;
    default: return 0;
    }
    if (a->bar >= 0 || bar >= VFIO_NBARS)
        return 0;
    if (len == 0 || (uint64_t)off + len > vp->vfio.bars[bar].size)
        return blkio_set_error(-EIO, "vfio-pci: virtio capability type %u "
                               "points at BAR%u 0x%x+0x%x, beyond its %llu "
                               "bytes", type, bar, off, len,
                               (unsigned long long)vp->vfio.bars[bar].size);
    /* Registers are read and written whole: a misaligned one would fault
     * on a mapped BAR (SIGBUS on arm64).  The spec requires 4-byte
     * alignment for the config structures, 2 for the notify area. */
    if (off % (type == VIRTIO_PCI_CAP_NOTIFY_CFG ? 2 : 4))
        return blkio_set_error(-EIO, "vfio-pci: virtio capability type %u "
                               "at BAR%u offset 0x%x is misaligned", type,
                               bar, off);
    if (type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
        uint32_t mult;

        if (cap_len < sizeof(struct virtio_pci_notify_cap))
            return blkio_set_error(-EIO, "vfio-pci: virtio notify capability "
                                   "is %u bytes, too short", cap_len);
        memcpy(&mult, cfg + pos + sizeof(struct virtio_pci_cap), 4);
        vp->notify_mult = le32toh(mult);
        /* 0 or an even power of two: every queue's 16-bit doorbell stays
         * 2-byte aligned. */
        if (vp->notify_mult % 2)
            return blkio_set_error(-EIO, "vfio-pci: virtio notify offset "
                                   "multiplier %u is odd", vp->notify_mult);
    }
    a->bar = bar;
    a->off = off;
    a->len = len;
    return 0;
}

static int vp_find_caps(struct vfio_pci *vp)
{
    uint8_t cfg[VP_CFG_SPACE];
    uint16_t vendor, devid, status, cmd;
    unsigned pos, n = 0;
    int ret;

    ret = vfio_cfg_read(&vp->vfio, 0, cfg, sizeof(cfg));
    if (ret < 0)
        return ret;
    memcpy(&vendor, cfg + PCI_VENDOR_ID, 2);
    memcpy(&devid, cfg + PCI_DEVICE_ID, 2);
    memcpy(&status, cfg + PCI_STATUS, 2);
    vendor = le16toh(vendor);
    devid = le16toh(devid);
    status = le16toh(status);
    if (vendor != VP_VENDOR_VIRTIO ||
        (devid != VP_DEVICE_BLK_MODERN && devid != VP_DEVICE_BLK_TRANS))
        return blkio_set_error(-ENODEV, "vfio-pci: PCI device %04x:%04x is "
                               "not a virtio-blk device (%04x:%04x or "
                               "%04x:%04x)", vendor, devid, VP_VENDOR_VIRTIO,
                               VP_DEVICE_BLK_MODERN, VP_VENDOR_VIRTIO,
                               VP_DEVICE_BLK_TRANS);

    vp->common.bar = vp->notify.bar = vp->devcfg.bar = -1;
    if (status & PCI_STATUS_CAP_LIST) {
        /* The list is device-provided: bounded hops, aligned pointers
         * inside the standard header's capability area. */
        for (pos = cfg[PCI_CAPABILITY_LIST] & ~3u;
             pos >= 0x40 && pos + 2 <= VP_CFG_SPACE && n < VP_MAX_CAPS;
             pos = cfg[pos + PCI_CAP_LIST_NEXT] & ~3u, n++) {
            if (cfg[pos + PCI_CAP_LIST_ID] != PCI_CAP_ID_VNDR)
                continue;
            ret = vp_take_cap(vp, cfg, pos);
            if (ret < 0)
                return ret;
        }
    }
    if (vp->common.bar < 0 || vp->notify.bar < 0 || vp->devcfg.bar < 0)
        return blkio_set_error(-ENOTSUP, "vfio-pci: device lacks the virtio "
                               "1.x PCI capabilities (common %s, notify %s, "
                               "device %s); legacy devices are not "
                               "supported",
                               vp->common.bar >= 0 ? "yes" : "no",
                               vp->notify.bar >= 0 ? "yes" : "no",
                               vp->devcfg.bar >= 0 ? "yes" : "no");
    if (vp->common.len < VP_COMMON_LEN) {
        ret = blkio_set_error(-EIO, "vfio-pci: virtio common config is %llu "
                              "bytes, needs %u",
                              (unsigned long long)vp->common.len,
                              VP_COMMON_LEN);
        vp->common.bar = -1;    /* vp_close must not write its status */
        return ret;
    }
    if (vp->notify.len < 2)
        return blkio_set_error(-EIO, "vfio-pci: virtio notify area is %llu "
                               "bytes", (unsigned long long)vp->notify.len);

    /* Memory decoding and bus mastering: the device must DMA. */
    memcpy(&cmd, cfg + PCI_COMMAND, 2);
    cmd = htole16(le16toh(cmd) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    return vfio_cfg_write(&vp->vfio, PCI_COMMAND, &cmd, sizeof(cmd));
}

/* Map the BARs holding the virtio structures where VFIO allows it; the
 * rest stays pread/pwrite. */
static void vp_map_bars(struct vfio_pci *vp)
{
    const struct vp_area *areas[] = { &vp->common, &vp->notify, &vp->devcfg };

    for (unsigned i = 0; i < 3; i++)
        vfio_bar_mmap(&vp->vfio, (unsigned)areas[i]->bar);
}

/* Point vectors [start, start+count) at vp->irq_fds (-1 = none). */
static int vp_set_irqs(struct vfio_pci *vp, unsigned start, unsigned count)
{
    return vfio_irqs_set(&vp->vfio, start, count, &vp->irq_fds[start]);
}

/* ---- transport ops ---- */

static int vp_get_features(void *t, uint64_t *features)
{
    struct vfio_pci *vp = t;
    uint64_t lo = 0, hi = 0;
    int ret;

    ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_DFSELECT, 4, 0);
    if (ret == 0)
        ret = vp_common_rd(vp, VIRTIO_PCI_COMMON_DF, 4, &lo);
    if (ret == 0)
        ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
    if (ret == 0)
        ret = vp_common_rd(vp, VIRTIO_PCI_COMMON_DF, 4, &hi);
    if (ret < 0)
        return ret;
    *features = hi << 32 | lo;
    if (!(*features & (1ull << VIRTIO_F_ACCESS_PLATFORM)))
        /* Without it the device takes our IOVAs for physical addresses
         * and bypasses the IOMMU we map memory in (virtio 1.2, 6.1). */
        return blkio_set_error(-ENOTSUP, "vfio-pci: virtio device does not "
                               "offer VIRTIO_F_ACCESS_PLATFORM (features "
                               "0x%llx), so its DMA would bypass the IOMMU; "
                               "with QEMU use iommu_platform=on",
                               (unsigned long long)*features);
    return 0;
}

static int vp_set_features(void *t, uint64_t features)
{
    struct vfio_pci *vp = t;
    int ret;

    ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_GFSELECT, 4, 0);
    if (ret == 0)
        ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_GF, 4,
                           features & 0xffffffffu);
    if (ret == 0)
        ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_GFSELECT, 4, 1);
    if (ret == 0)
        ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_GF, 4, features >> 32);
    return ret;
}

static int vp_read_config(void *t, void *buf, uint32_t len)
{
    struct vfio_pci *vp = t;
    uint32_t n = len < vp->devcfg.len ? len : (uint32_t)vp->devcfg.len;
    uint8_t *p = buf;

    memset(buf, 0, len);
    /* Retry until the generation stays the same across the whole read,
     * so multi-word fields (capacity) are consistent. */
    for (int tries = 0; tries < VP_CONFIG_RETRIES; tries++) {
        uint64_t gen0, gen1, v;
        uint32_t i = 0;
        int ret;

        ret = vp_common_rd(vp, VIRTIO_PCI_COMMON_CFGGENERATION, 1, &gen0);
        if (ret < 0)
            return ret;
        while (i < n) {
            unsigned w = n - i >= 4 && !(i % 4) ? 4
                       : n - i >= 2 && !(i % 2) ? 2 : 1;

            ret = vp_read(vp, &vp->devcfg, i, w, &v);
            if (ret < 0)
                return ret;
            for (unsigned k = 0; k < w; k++)
                p[i + k] = (uint8_t)(v >> (8 * k));
            i += w;
        }
        ret = vp_common_rd(vp, VIRTIO_PCI_COMMON_CFGGENERATION, 1, &gen1);
        if (ret < 0)
            return ret;
        if (gen0 == gen1)
            return 0;
    }
    return blkio_set_error(-EIO, "vfio-pci: virtio config generation kept "
                           "changing over %d reads", VP_CONFIG_RETRIES);
}

static int vp_max_queues(void *t)
{
    struct vfio_pci *vp = t;
    return vp->dev_num_queues;
}

static uint64_t vp_max_mem_regions(void *t)
{
    struct vfio_pci *vp = t;

    /* Each region is one DMA mapping, the rings included (0: unknown). */
    return vp->vfio.dma_avail;
}

static int vp_start(void *t, const struct blkio_mem_region *internal,
                    unsigned nvqs, unsigned nvec, uint64_t *internal_addr)
{
    struct vfio_pci *vp = t;
    int ret;

    if (vp->started_once) {
        /* A failed blkio_start() left interrupts and memory set up. */
        vfio_irqs_off(&vp->vfio);
        if (vp->internal_mapped) {
            vfio_dma_unmap(&vp->vfio, vp->internal.addr, vp->internal.len);
            vp->internal_mapped = false;
        }
    }
    vp->started_once = true;

    if (nvqs > vp->dev_num_queues)
        return blkio_set_error(-EINVAL, "vfio-pci: %u queues requested, the "
                               "device has %u", nvqs, vp->dev_num_queues);
    if (nvec > vp->vfio.msix_count)
        return blkio_set_error(-EINVAL, "vfio-pci: num-queues %u needs one "
                               "MSI-X vector each, the device has %u (use "
                               "poll queues for the rest)", nvec,
                               vp->vfio.msix_count);

    free(vp->vqs);
    free(vp->irq_fds);
    vp->vqs = calloc(nvqs, sizeof(*vp->vqs));
    vp->irq_fds = malloc((nvec ? nvec : 1) * sizeof(*vp->irq_fds));
    if (!vp->vqs || !vp->irq_fds)
        return blkio_set_error(-ENOMEM, "vfio-pci: out of memory");
    vp->nvqs = nvqs;
    vp->nvec = nvec;
    for (unsigned i = 0; i < nvec; i++)
        vp->irq_fds[i] = -1;

    /* Configuration changes are not interesting: no vector. */
    ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_MSIX, 2, VIRTIO_MSI_NO_VECTOR);
    if (ret < 0)
        return ret;
    if (nvec) {
        /* Enable MSI-X with all vectors now; queues attach their fds. */
        ret = vp_set_irqs(vp, 0, nvec);
        if (ret < 0)
            return ret;
    }

    ret = vfio_dma_map(&vp->vfio, internal->addr, internal->len,
                       internal_addr);
    if (ret < 0)
        return ret;
    vp->internal = *internal;
    vp->internal_mapped = true;
    return 0;
}

static int vp_setup_queue(void *t, const struct virtio_vq_info *info)
{
    struct vfio_pci *vp = t;
    bool has_vector = info->index < vp->nvec && info->call_fd >= 0;
    uint16_t vector = has_vector ? (uint16_t)info->index
                                 : VIRTIO_MSI_NO_VECTOR;
    uint64_t max, v, noff;
    int ret;

    if (info->index >= vp->nvqs)
        return blkio_set_error(-EINVAL, "vfio-pci: virtqueue %u was not "
                               "planned at start", info->index);
    ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_Q_SELECT, 2, info->index);
    if (ret == 0)
        ret = vp_common_rd(vp, VIRTIO_PCI_COMMON_Q_SIZE, 2, &max);
    if (ret < 0)
        return ret;
    if (max == 0)
        return blkio_set_error(-EIO, "vfio-pci: virtqueue %u is not "
                               "available (size 0)", info->index);
    if (info->num > max)
        return blkio_set_error(-EINVAL, "vfio-pci: queue-size %u exceeds "
                               "virtqueue %u's maximum %llu", info->num,
                               info->index, (unsigned long long)max);

    if (has_vector) {
        vp->irq_fds[info->index] = info->call_fd;
        ret = vp_set_irqs(vp, info->index, 1);
        if (ret < 0)
            return ret;
    }

    ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_Q_SIZE, 2, info->num);
    if (ret == 0)
        ret = vp_common_wr64(vp, VIRTIO_PCI_COMMON_Q_DESCLO, info->desc_addr);
    if (ret == 0)
        ret = vp_common_wr64(vp, VIRTIO_PCI_COMMON_Q_AVAILLO,
                             info->avail_addr);
    if (ret == 0)
        ret = vp_common_wr64(vp, VIRTIO_PCI_COMMON_Q_USEDLO, info->used_addr);
    if (ret == 0)
        ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_Q_MSIX, 2, vector);
    if (ret == 0)
        ret = vp_common_rd(vp, VIRTIO_PCI_COMMON_Q_MSIX, 2, &v);
    if (ret == 0)
        ret = vp_common_rd(vp, VIRTIO_PCI_COMMON_Q_NOFF, 2, &noff);
    if (ret < 0)
        return ret;
    if (v != vector)
        return blkio_set_error(-EIO, "vfio-pci: device refused MSI-X vector "
                               "%u for virtqueue %u (reads back 0x%llx)",
                               vector, info->index, (unsigned long long)v);
    noff *= vp->notify_mult;
    if (noff + 2 > vp->notify.len)
        return blkio_set_error(-EIO, "vfio-pci: notify offset 0x%llx of "
                               "virtqueue %u lies outside the %llu-byte "
                               "notify area", (unsigned long long)noff,
                               info->index,
                               (unsigned long long)vp->notify.len);
    vp->vqs[info->index].notify_off = noff;

    ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_Q_ENABLE, 2, 1);
    if (ret < 0)
        return ret;
    vp->vqs[info->index].live = true;
    return 0;
}

static void vp_stop_queue(void *t, unsigned index)
{
    struct vfio_pci *vp = t;

    if (index >= vp->nvqs || !vp->vqs[index].live)
        return;
    vp->vqs[index].live = false;
    /* Without VIRTIO_F_RING_RESET a single queue cannot be stopped; its
     * memory stays mapped until the instance goes, so let it be (virtio.c
     * resets the device once no queue is left).  Its interrupt goes. */
    if (index < vp->nvec && vp->irq_fds[index] >= 0) {
        vp->irq_fds[index] = -1;
        vp_set_irqs(vp, index, 1);
    }
}

static void vp_kick(void *t, unsigned index)
{
    struct vfio_pci *vp = t;

    /* Without VIRTIO_F_NOTIFICATION_DATA the notification is the queue
     * index, 16 bits, at the queue's notify address. */
    vp_write(vp, &vp->notify, vp->vqs[index].notify_off, 2, index);
}

static int vp_map_region(void *t, const struct blkio_mem_region *region,
                         uint64_t *addr)
{
    struct vfio_pci *vp = t;
    return vfio_dma_map(&vp->vfio, region->addr, region->len, addr);
}

static void vp_unmap_region(void *t, const struct blkio_mem_region *region)
{
    struct vfio_pci *vp = t;
    vfio_dma_unmap(&vp->vfio, region->addr, region->len);
}

/* IOVAs come from the IOMMU's usable ranges, never our addresses. */
static bool vp_remaps(void *t)
{
    (void)t;
    return true;
}

static int vp_hangup_fd(void *t)
{
    (void)t;
    return -1;  /* a PCI device does not hang up */
}

/* Release everything the connection holds; the state can connect again. */
static void vp_close(struct vfio_pci *vp)
{
    if (vp->vfio.device >= 0 && vp->common.bar >= 0)
        vp_set_status(vp, 0);   /* stop DMA before the mappings go */
    vfio_close(&vp->vfio);
    vp->internal_mapped = false;
    vp->common.bar = vp->notify.bar = vp->devcfg.bar = -1;
    free(vp->vqs);
    vp->vqs = NULL;
    free(vp->irq_fds);
    vp->irq_fds = NULL;
    vp->nvqs = vp->nvec = 0;
    vp->started_once = false;
}

static void vp_destroy(void *t)
{
    struct vfio_pci *vp = t;

    vp_close(vp);
    free(vp);
}

static const struct virtio_transport_ops vp_ops = {
    .name            = "vfio-pci",
    /* Our DMA goes through the IOMMU: accepting ACCESS_PLATFORM is what
     * makes the device translate addresses instead of bypassing it.  A
     * hardware device may need the platform's DMA ordering (virtqueue.c's
     * barriers provide it). */
    .transport_features = (1ull << VIRTIO_F_ACCESS_PLATFORM) |
                          (1ull << VIRTIO_F_ORDER_PLATFORM),
    .remaps          = vp_remaps,
    .get_status      = vp_get_status,
    .set_status      = vp_set_status,
    .get_features    = vp_get_features,
    .set_features    = vp_set_features,
    .read_config     = vp_read_config,
    .max_queues      = vp_max_queues,
    .max_mem_regions = vp_max_mem_regions,
    .start           = vp_start,
    .setup_queue     = vp_setup_queue,
    .stop_queue      = vp_stop_queue,
    .kick            = vp_kick,
    .map_region      = vp_map_region,
    .unmap_region    = vp_unmap_region,
    .hangup_fd       = vp_hangup_fd,
    .destroy         = vp_destroy,
};

/* ---- driver ---- */

static int vp_drv_create(struct blkio *b)
{
    struct vfio_pci *vp = calloc(1, sizeof(*vp));
    int ret;

    if (!vp)
        return blkio_set_error(-ENOMEM, "out of memory creating "
                               "virtio-blk-vfio-pci state");
    vp->b = b;
    vfio_init(&vp->vfio);
    vp->common.bar = vp->notify.bar = vp->devcfg.bar = -1;
    ret = virtio_blk_create(b, &vp_ops, vp);
    if (ret < 0)
        free(vp);
    return ret;
}

/* The smallest maximum size over the queues we may use. */
static int vp_queue_size_max(struct vfio_pci *vp, uint64_t *min)
{
    *min = UINT16_MAX;
    for (unsigned i = 0; i < vp->dev_num_queues; i++) {
        uint64_t v;
        int ret = vp_common_wr(vp, VIRTIO_PCI_COMMON_Q_SELECT, 2, i);

        if (ret == 0)
            ret = vp_common_rd(vp, VIRTIO_PCI_COMMON_Q_SIZE, 2, &v);
        if (ret < 0)
            return ret;
        if (v == 0)
            return blkio_set_error(-EIO, "vfio-pci: virtqueue %u reports "
                                   "size 0", i);
        if (v < *min)
            *min = v;
    }
    return 0;
}

static int vp_drv_connect(struct blkio *b)
{
    struct vfio_pci *vp = virtio_blk_transport(b);
    uint64_t v = 0, qmax = 0;
    int ret;

    ret = vfio_open(&vp->vfio, b->path);
    if (ret == 0)
        ret = vp_find_caps(vp);
    if (ret < 0)
        goto err;
    vp_map_bars(vp);

    ret = vp_common_rd(vp, VIRTIO_PCI_COMMON_NUMQ, 2, &v);
    if (ret < 0)
        goto err;
    vp->dev_num_queues = (uint16_t)v;
    if (vp->dev_num_queues == 0) {
        ret = blkio_set_error(-EIO, "vfio-pci: device reports no "
                              "virtqueues");
        goto err;
    }

    ret = virtio_blk_connect(b);
    if (ret == 0)
        ret = vp_queue_size_max(vp, &qmax);
    if (ret < 0)
        goto err;

    b->needs_mem_regions = true;
    b->needs_mem_region_fd = false;
    b->may_pin_mem_regions = true;
    /* VFIO maps whole pages. */
    b->mem_region_alignment = (uint64_t)sysconf(_SC_PAGESIZE);
    /* Queue sizes are powers of two here; take the largest one that every
     * virtqueue can hold. */
    b->max_queue_size = 1;
    while ((uint64_t)b->max_queue_size * 2 <= qmax)
        b->max_queue_size *= 2;
    if (b->queue_size > b->max_queue_size)
        b->queue_size = b->max_queue_size;
    return 0;

err:
    {
        /* Keep the message of what failed, not of the cleanup. */
        char msg[512];

        snprintf(msg, sizeof(msg), "%s", blkio_get_error_msg());
        vp_close(vp);
        return blkio_set_error(ret, "%s", msg);
    }
}

static const struct blkio_property vp_props[] = {
    BLKIO_PROP("path", PROP_STR, ST_ALL, ST_CREATED, path, NULL),
    VIRTIO_BLK_NO_FD_PROP,
    VIRTIO_BLK_QUEUE_PROPS,
};

const struct blkio_driver blkio_driver_virtio_blk_vfio_pci = {
    .name                      = "virtio-blk-vfio-pci",
    .props                     = vp_props,
    .nprops                    = sizeof(vp_props) / sizeof(vp_props[0]),
    .create                    = vp_drv_create,
    .connect                   = vp_drv_connect,
    VIRTIO_BLK_DRIVER_OPS,
};
