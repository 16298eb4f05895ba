/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-blk-vfio-pci driver: the virtio-pci modern transport (virtio 1.x,
 * section 4.1) driven from user space through VFIO.  The device logic is the
 * generic virtio-blk code; this file finds the device's virtio structures in
 * its BARs, does the status/feature handshake, programs the virtqueues,
 * routes one MSI-X vector per regular queue to that queue's completion
 * eventfd and maps memory into the IOMMU.
 *
 * Addresses: the generic code puts our virtual addresses into descriptors
 * and ring addresses, so every DMA mapping uses IOVA = virtual address.
 * That only works when the IOMMU's usable IOVA ranges (VFIO_IOMMU_GET_INFO)
 * cover the addresses, which is checked for every mapping; x86 user
 * addresses need a 48-bit IOMMU address width.
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
#include "virtio-blk.h"

#define VP_VENDOR_VIRTIO        0x1af4
#define VP_DEVICE_BLK_MODERN    0x1042
#define VP_DEVICE_BLK_TRANS     0x1001
#define VP_NBARS                6
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

struct vp_bar {
    uint64_t size;
    uint64_t region_off;        /* of the BAR in the device fd */
    uint32_t flags;             /* VFIO_REGION_INFO_FLAG_* */
    uint8_t *map;               /* mmap of the whole BAR, or NULL */
};

struct vp_iova_range {
    uint64_t start;
    uint64_t end;               /* inclusive */
};

/* Per virtqueue, fixed once the queue is set up. */
struct vp_vq {
    uint64_t notify_off;        /* in the notify area */
    bool live;                  /* set up and not stopped */
};

struct vfio_pci {
    struct blkio *b;
    int container;
    int group;
    int device;

    uint64_t cfg_off;           /* config region in the device fd */
    uint64_t cfg_size;
    struct vp_bar bars[VP_NBARS];
    struct vp_area common, notify, devcfg;
    uint32_t notify_mult;
    uint16_t dev_num_queues;    /* common cfg num_queues */
    uint32_t msix_count;        /* MSI-X vectors VFIO offers */

    struct vp_iova_range *ranges;   /* NULL: the kernel did not say */
    unsigned nranges;
    uint32_t dma_avail;         /* 0: unknown */

    bool started_once;          /* start() ran: a retry must clean up */

    struct blkio_mem_region internal;
    bool internal_mapped;

    struct vp_vq *vqs;
    unsigned nvqs;
    int *irq_fds;               /* by vector; -1 = none */
    unsigned nvec;
    bool msix_on;
};

/* ---- config space and BAR access ---- */

static int vp_cfg_read(struct vfio_pci *vp, uint32_t off, void *buf,
                       size_t len)
{
    ssize_t r = pread(vp->device, buf, len, (off_t)(vp->cfg_off + off));

    if (r < 0)
        return blkio_set_error(-errno, "vfio-pci: reading PCI config space "
                               "at 0x%x: %m", off);
    if ((size_t)r != len)
        return blkio_set_error(-EIO, "vfio-pci: short read of PCI config "
                               "space at 0x%x (%zd of %zu bytes)", off, r,
                               len);
    return 0;
}

static int vp_cfg_write(struct vfio_pci *vp, uint32_t off, const void *buf,
                        size_t len)
{
    ssize_t r = pwrite(vp->device, buf, len, (off_t)(vp->cfg_off + off));

    if (r < 0)
        return blkio_set_error(-errno, "vfio-pci: writing PCI config space "
                               "at 0x%x: %m", off);
    if ((size_t)r != len)
        return blkio_set_error(-EIO, "vfio-pci: short write of PCI config "
                               "space at 0x%x", off);
    return 0;
}

/*
 * Read or write one little-endian register of `width` bytes at `off` in
 * area `a`.  Offsets were checked against the area when it was found, and
 * callers stay inside; the mmap path does single accesses of the register's
 * width, as the device expects.
 */
static int vp_read(struct vfio_pci *vp, const struct vp_area *a, uint64_t off,
                   unsigned width, uint64_t *val)
{
    const struct vp_bar *bar = &vp->bars[a->bar];
    uint64_t pos = a->off + off;
    union { uint8_t u8; uint16_t u16; uint32_t u32; } v;
    ssize_t r;

    if (bar->map) {
        const volatile void *p = bar->map + pos;

        switch (width) {
        case 1: *val = *(const volatile uint8_t *)p; break;
        case 2: *val = le16toh(*(const volatile uint16_t *)p); break;
        default: *val = le32toh(*(const volatile uint32_t *)p); break;
        }
        return 0;
    }
    r = pread(vp->device, &v, width, (off_t)(bar->region_off + pos));
    if (r != (ssize_t)width)
        return blkio_set_error(r < 0 ? -errno : -EIO, "vfio-pci: reading "
                               "BAR%d at 0x%llx: %s", a->bar,
                               (unsigned long long)pos,
                               r < 0 ? strerror(errno) : "short read");
    switch (width) {
    case 1: *val = v.u8; break;
    case 2: *val = le16toh(v.u16); break;
    default: *val = le32toh(v.u32); break;
    }
    return 0;
}

static int vp_write(struct vfio_pci *vp, const struct vp_area *a,
                    uint64_t off, unsigned width, uint64_t val)
{
    const struct vp_bar *bar = &vp->bars[a->bar];
    uint64_t pos = a->off + off;
    union { uint8_t u8; uint16_t u16; uint32_t u32; } v;
    ssize_t r;

    if (bar->map) {
        volatile void *p = bar->map + pos;

        switch (width) {
        case 1: *(volatile uint8_t *)p = (uint8_t)val; break;
        case 2: *(volatile uint16_t *)p = htole16((uint16_t)val); break;
        default: *(volatile uint32_t *)p = htole32((uint32_t)val); break;
        }
        return 0;
    }
    switch (width) {
    case 1: v.u8 = (uint8_t)val; break;
    case 2: v.u16 = htole16((uint16_t)val); break;
    default: v.u32 = htole32((uint32_t)val); break;
    }
    r = pwrite(vp->device, &v, width, (off_t)(bar->region_off + pos));
    if (r != (ssize_t)width)
        return blkio_set_error(r < 0 ? -errno : -EIO, "vfio-pci: writing "
                               "BAR%d at 0x%llx: %s", a->bar,
                               (unsigned long long)pos,
                               r < 0 ? strerror(errno) : "short write");
    return 0;
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
    uint64_t v;
    int ret = vp_common_rd(t, VIRTIO_PCI_COMMON_STATUS, 1, &v);

    *status = (uint8_t)v;
    return ret;
}

static int vp_set_status(void *t, uint8_t status)
{
    return vp_common_wr(t, VIRTIO_PCI_COMMON_STATUS, 1, status);
}

/* ---- IOMMU ---- */

static int vp_dma_map(struct vfio_pci *vp, void *addr, size_t len)
{
    uint64_t iova = (uint64_t)(uintptr_t)addr, last = iova + len - 1;
    struct vfio_iommu_type1_dma_map m = {
        .argsz = sizeof(m),
        .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        .vaddr = iova,
        .iova = iova,
        .size = len,
    };

    if (vp->ranges) {
        unsigned i;

        for (i = 0; i < vp->nranges; i++)
            if (iova >= vp->ranges[i].start && last <= vp->ranges[i].end)
                break;
        if (i == vp->nranges)
            return blkio_set_error(-ERANGE, "vfio-pci: memory at 0x%llx "
                                   "(%zu bytes) lies outside the IOMMU's "
                                   "usable IOVA ranges (highest usable "
                                   "address 0x%llx); this driver maps "
                                   "memory at IOVA = virtual address and "
                                   "needs a 48-bit IOMMU address width",
                                   (unsigned long long)iova, len,
                                   (unsigned long long)
                                   vp->ranges[vp->nranges - 1].end);
    }
    if (ioctl(vp->container, VFIO_IOMMU_MAP_DMA, &m) < 0)
        return blkio_set_error(-errno, "vfio-pci: VFIO_IOMMU_MAP_DMA of "
                               "0x%llx (%zu bytes): %m",
                               (unsigned long long)iova, len);
    return 0;
}

static void vp_dma_unmap(struct vfio_pci *vp, void *addr, size_t len)
{
    struct vfio_iommu_type1_dma_unmap u = {
        .argsz = sizeof(u),
        .iova = (uint64_t)(uintptr_t)addr,
        .size = len,
    };

    ioctl(vp->container, VFIO_IOMMU_UNMAP_DMA, &u);
}

/* Usable IOVA ranges and the mapping limit from the capability chain. */
static int vp_iommu_info(struct vfio_pci *vp)
{
    struct vfio_iommu_type1_info *info;
    uint32_t argsz = sizeof(*info), off;
    unsigned hops = 0;
    int ret = 0;

    info = calloc(1, argsz);
    if (!info)
        return blkio_set_error(-ENOMEM, "vfio-pci: out of memory");
    info->argsz = argsz;
    if (ioctl(vp->container, VFIO_IOMMU_GET_INFO, info) < 0) {
        ret = blkio_set_error(-errno, "vfio-pci: VFIO_IOMMU_GET_INFO: %m");
        goto out;
    }
    if (info->argsz > argsz) {
        /* The capability chain did not fit: ask again with room. */
        uint32_t need = info->argsz;
        void *n;

        if (need > 1024 * 1024) {
            ret = blkio_set_error(-EIO, "vfio-pci: IOMMU info of %u bytes "
                                  "is implausibly large", need);
            goto out;
        }
        n = realloc(info, need);
        if (!n) {
            ret = blkio_set_error(-ENOMEM, "vfio-pci: out of memory");
            goto out;
        }
        info = n;
        memset(info, 0, need);
        info->argsz = argsz = need;
        if (ioctl(vp->container, VFIO_IOMMU_GET_INFO, info) < 0) {
            ret = blkio_set_error(-errno, "vfio-pci: VFIO_IOMMU_GET_INFO: "
                                  "%m");
            goto out;
        }
    }
    if (!(info->flags & VFIO_IOMMU_INFO_CAPS))
        goto out;

    for (off = info->cap_offset; off && hops < 64; hops++) {
        struct vfio_info_cap_header *h;

        if (off < sizeof(*info) || off > argsz - sizeof(*h) || off % 4)
            break;
        h = (struct vfio_info_cap_header *)((uint8_t *)info + off);
        if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE &&
            off + sizeof(struct vfio_iommu_type1_info_cap_iova_range) <=
                argsz) {
            struct vfio_iommu_type1_info_cap_iova_range *c = (void *)h;
            uint64_t room = (argsz - off - sizeof(*c)) /
                            sizeof(struct vfio_iova_range);

            if (c->nr_iovas == 0 || c->nr_iovas > room) {
                ret = blkio_set_error(-EIO, "vfio-pci: IOMMU reported %u "
                                      "IOVA ranges", c->nr_iovas);
                goto out;
            }
            free(vp->ranges);
            vp->ranges = calloc(c->nr_iovas, sizeof(*vp->ranges));
            if (!vp->ranges) {
                ret = blkio_set_error(-ENOMEM, "vfio-pci: out of memory");
                goto out;
            }
            for (uint32_t i = 0; i < c->nr_iovas; i++) {
                vp->ranges[i].start = c->iova_ranges[i].start;
                vp->ranges[i].end = c->iova_ranges[i].end;
            }
            vp->nranges = c->nr_iovas;
        } else if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL &&
                   off + sizeof(struct vfio_iommu_type1_info_dma_avail) <=
                       argsz) {
            vp->dma_avail =
                ((struct vfio_iommu_type1_info_dma_avail *)h)->avail;
        }
        off = h->next;
    }
out:
    free(info);
    return ret;
}

/* ---- finding the device ---- */

/* /sys/bus/pci/devices/BDF -> the group number from its iommu_group link
 * and the BDF (the directory's own name). */
static int vp_sysfs(const char *path, char *bdf, size_t bdf_len,
                    unsigned long *group)
{
    char link[PATH_MAX], target[PATH_MAX], real[PATH_MAX];
    const char *base, *gname;
    char *end;
    ssize_t n;

    if (!path || !*path)
        return blkio_set_error(-EINVAL, "the path property must be set to "
                               "the device's sysfs directory (e.g. "
                               "/sys/bus/pci/devices/0000:00:10.0) before "
                               "blkio_connect()");
    if (!realpath(path, real))
        return blkio_set_error(-errno, "vfio-pci: path '%s': %m", path);
    base = strrchr(real, '/');
    base = base ? base + 1 : real;
    if (strlen(base) >= bdf_len)
        return blkio_set_error(-EINVAL, "vfio-pci: path '%s' does not end in "
                               "a PCI device address", path);
    strcpy(bdf, base);

    if ((size_t)snprintf(link, sizeof(link), "%s/iommu_group", real) >=
        sizeof(link))
        return blkio_set_error(-ENAMETOOLONG, "vfio-pci: path '%s' is too "
                               "long", path);
    n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return blkio_set_error(-errno, "vfio-pci: '%s' has no IOMMU group "
                               "(%s: %m); is it a PCI device behind an "
                               "IOMMU?", path, link);
    target[n] = '\0';
    gname = strrchr(target, '/');
    gname = gname ? gname + 1 : target;
    errno = 0;
    *group = strtoul(gname, &end, 10);
    if (errno || end == gname || *end)
        return blkio_set_error(-EINVAL, "vfio-pci: cannot parse IOMMU group "
                               "'%s' of '%s'", target, path);
    return 0;
}

static int vp_open_vfio(struct vfio_pci *vp, const char *path)
{
    struct vfio_group_status gs = { .argsz = sizeof(gs) };
    char bdf[64], gpath[64];
    unsigned long group;
    int ret;

    ret = vp_sysfs(path, bdf, sizeof(bdf), &group);
    if (ret < 0)
        return ret;

    vp->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
    if (vp->container < 0)
        return blkio_set_error(-errno, "vfio-pci: open /dev/vfio/vfio: %m "
                               "(is the vfio module loaded?)");
    if (ioctl(vp->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
        return blkio_set_error(-ENOTSUP, "vfio-pci: unknown VFIO API "
                               "version");
    if (ioctl(vp->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
        return blkio_set_error(-ENOTSUP, "vfio-pci: the VFIO container "
                               "does not support the type1v2 IOMMU");

    snprintf(gpath, sizeof(gpath), "/dev/vfio/%lu", group);
    vp->group = open(gpath, O_RDWR | O_CLOEXEC);
    if (vp->group < 0)
        return blkio_set_error(-errno, "vfio-pci: open %s (IOMMU group of "
                               "%s): %m%s", gpath, bdf,
                               errno == ENOENT ? " (is the device bound to "
                               "vfio-pci?)" : "");
    if (ioctl(vp->group, VFIO_GROUP_GET_STATUS, &gs) < 0)
        return blkio_set_error(-errno, "vfio-pci: VFIO_GROUP_GET_STATUS on "
                               "%s: %m", gpath);
    if (!(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
        return blkio_set_error(-EBUSY, "vfio-pci: IOMMU group %lu is not "
                               "viable: bind every device in it to vfio-pci",
                               group);
    if (ioctl(vp->group, VFIO_GROUP_SET_CONTAINER, &vp->container) < 0)
        return blkio_set_error(-errno, "vfio-pci: VFIO_GROUP_SET_CONTAINER: "
                               "%m");
    if (ioctl(vp->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
        return blkio_set_error(-errno, "vfio-pci: VFIO_SET_IOMMU type1v2: "
                               "%m");
    ret = vp_iommu_info(vp);
    if (ret < 0)
        return ret;

    vp->device = ioctl(vp->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
    if (vp->device < 0)
        return blkio_set_error(-errno, "vfio-pci: VFIO_GROUP_GET_DEVICE_FD "
                               "%s: %m", bdf);
    return 0;
}

static int vp_regions(struct vfio_pci *vp)
{
    struct vfio_device_info di = { .argsz = sizeof(di) };
    struct vfio_irq_info ii = { .argsz = sizeof(ii),
                                .index = VFIO_PCI_MSIX_IRQ_INDEX };
    struct vfio_region_info ri;

    if (ioctl(vp->device, VFIO_DEVICE_GET_INFO, &di) < 0)
        return blkio_set_error(-errno, "vfio-pci: VFIO_DEVICE_GET_INFO: %m");
    if (!(di.flags & VFIO_DEVICE_FLAGS_PCI) ||
        di.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX ||
        di.num_irqs <= VFIO_PCI_MSIX_IRQ_INDEX)
        return blkio_set_error(-ENODEV, "vfio-pci: not a VFIO PCI device "
                               "(flags 0x%x, %u regions, %u irqs)", di.flags,
                               di.num_regions, di.num_irqs);

    ri = (struct vfio_region_info){ .argsz = sizeof(ri),
                                    .index = VFIO_PCI_CONFIG_REGION_INDEX };
    if (ioctl(vp->device, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0)
        return blkio_set_error(-errno, "vfio-pci: config region info: %m");
    if (ri.size < VP_CFG_SPACE)
        return blkio_set_error(-EIO, "vfio-pci: config space is only %llu "
                               "bytes", (unsigned long long)ri.size);
    vp->cfg_off = ri.offset;
    vp->cfg_size = ri.size;

    for (unsigned i = 0; i < VP_NBARS; i++) {
        ri = (struct vfio_region_info){ .argsz = sizeof(ri), .index = i };
        if (ioctl(vp->device, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0)
            return blkio_set_error(-errno, "vfio-pci: BAR%u region info: %m",
                                   i);
        vp->bars[i].size = ri.size;
        vp->bars[i].region_off = ri.offset;
        vp->bars[i].flags = ri.flags;
    }

    if (ioctl(vp->device, VFIO_DEVICE_GET_IRQ_INFO, &ii) < 0)
        return blkio_set_error(-errno, "vfio-pci: MSI-X irq info: %m");
    vp->msix_count = (ii.flags & VFIO_IRQ_INFO_EVENTFD) ? ii.count : 0;
    if (vp->msix_count == 0)
        return blkio_set_error(-ENOTSUP, "vfio-pci: device has no MSI-X "
                               "interrupts; completion fds need them");
    return 0;
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
    if (a->bar >= 0 || bar >= VP_NBARS)
        return 0;
    if (len == 0 || (uint64_t)off + len > vp->bars[bar].size)
        return blkio_set_error(-EIO, "vfio-pci: virtio capability type %u "
                               "points at BAR%u 0x%x+0x%x, beyond its %llu "
                               "bytes", type, bar, off, len,
                               (unsigned long long)vp->bars[bar].size);
    if (type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
        uint32_t mult;

        if (cap_len < sizeof(struct virtio_pci_notify_cap))
            return blkio_set_error(-EIO, "vfio-pci: virtio notify capability "
                                   "is %u bytes, too short", cap_len);
        memcpy(&mult, cfg + pos + sizeof(struct virtio_pci_cap), 4);
        vp->notify_mult = le32toh(mult);
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

    ret = vp_cfg_read(vp, 0, cfg, sizeof(cfg));
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
    if (vp->common.len < VP_COMMON_LEN)
        return blkio_set_error(-EIO, "vfio-pci: virtio common config is %llu "
                               "bytes, needs %u",
                               (unsigned long long)vp->common.len,
                               VP_COMMON_LEN);
    if (vp->notify.len < 2)
        return blkio_set_error(-EIO, "vfio-pci: virtio notify area is %llu "
                               "bytes", (unsigned long long)vp->notify.len);

    /* Memory decoding and bus mastering: the device must DMA. */
    memcpy(&cmd, cfg + PCI_COMMAND, 2);
    cmd = htole16(le16toh(cmd) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    return vp_cfg_write(vp, PCI_COMMAND, &cmd, sizeof(cmd));
}

/* Map the BARs holding the virtio structures where VFIO allows it (no
 * sparse areas to respect, page-sized); the rest stays pread/pwrite. */
static void vp_map_bars(struct vfio_pci *vp)
{
    const struct vp_area *areas[] = { &vp->common, &vp->notify, &vp->devcfg };
    long page = sysconf(_SC_PAGESIZE);

    for (unsigned i = 0; i < 3; i++) {
        struct vp_bar *bar = &vp->bars[areas[i]->bar];
        void *p;

        if (bar->map || !(bar->flags & VFIO_REGION_INFO_FLAG_MMAP) ||
            (bar->flags & VFIO_REGION_INFO_FLAG_CAPS) ||
            bar->size % (uint64_t)page || bar->size > SIZE_MAX)
            continue;
        p = mmap(NULL, (size_t)bar->size, PROT_READ | PROT_WRITE, MAP_SHARED,
                 vp->device, (off_t)bar->region_off);
        if (p != MAP_FAILED)
            bar->map = p;
    }
}

/* ---- MSI-X ---- */

/* Point vectors [start, start+count) at vp->irq_fds (-1 = none).  The
 * first call enables MSI-X with every vector we will use. */
static int vp_set_irqs(struct vfio_pci *vp, unsigned start, unsigned count)
{
    size_t sz = sizeof(struct vfio_irq_set) + count * sizeof(int32_t);
    struct vfio_irq_set *s = calloc(1, sz);
    int ret = 0;

    if (!s)
        return blkio_set_error(-ENOMEM, "vfio-pci: out of memory");
    s->argsz = (uint32_t)sz;
    s->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    s->index = VFIO_PCI_MSIX_IRQ_INDEX;
    s->start = start;
    s->count = count;
    for (unsigned i = 0; i < count; i++)
        ((int32_t *)s->data)[i] = vp->irq_fds[start + i];
    if (ioctl(vp->device, VFIO_DEVICE_SET_IRQS, s) < 0)
        ret = blkio_set_error(-errno, "vfio-pci: VFIO_DEVICE_SET_IRQS for "
                              "MSI-X vectors %u..%u: %m", start,
                              start + count - 1);
    else
        vp->msix_on = true;
    free(s);
    return ret;
}

static void vp_irqs_off(struct vfio_pci *vp)
{
    struct vfio_irq_set s = {
        .argsz = sizeof(s),
        .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
        .index = VFIO_PCI_MSIX_IRQ_INDEX,
    };

    if (vp->msix_on)
        ioctl(vp->device, VFIO_DEVICE_SET_IRQS, &s);
    vp->msix_on = false;
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
    return vp->dma_avail;
}

static int vp_start(void *t, const struct blkio_mem_region *internal,
                    unsigned nvqs, unsigned nvec)
{
    struct vfio_pci *vp = t;
    int ret;

    if (vp->started_once) {
        /* A failed blkio_start() left interrupts and memory set up. */
        vp_irqs_off(vp);
        if (vp->internal_mapped) {
            vp_dma_unmap(vp, vp->internal.addr, vp->internal.len);
            vp->internal_mapped = false;
        }
    }
    vp->started_once = true;

    if (nvqs > vp->dev_num_queues)
        return blkio_set_error(-EINVAL, "vfio-pci: %u queues requested, the "
                               "device has %u", nvqs, vp->dev_num_queues);
    if (nvec > vp->msix_count)
        return blkio_set_error(-EINVAL, "vfio-pci: num-queues %u needs one "
                               "MSI-X vector each, the device has %u (use "
                               "poll queues for the rest)", nvec,
                               vp->msix_count);

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

    ret = vp_dma_map(vp, internal->addr, internal->len);
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

static int vp_map_region(void *t, const struct blkio_mem_region *region)
{
    struct vfio_pci *vp = t;
    return vp_dma_map(vp, region->addr, region->len);
}

static void vp_unmap_region(void *t, const struct blkio_mem_region *region)
{
    struct vfio_pci *vp = t;
    vp_dma_unmap(vp, region->addr, region->len);
}

static int vp_hangup_fd(void *t)
{
    (void)t;
    return -1;  /* a PCI device does not hang up */
}

/* Release everything the connection holds; the state can connect again. */
static void vp_close(struct vfio_pci *vp)
{
    if (vp->device >= 0) {
        if (vp->common.bar >= 0)
            vp_set_status(vp, 0);   /* stop DMA before unmapping */
        vp_irqs_off(vp);
    }
    if (vp->internal_mapped && vp->container >= 0)
        vp_dma_unmap(vp, vp->internal.addr, vp->internal.len);
    vp->internal_mapped = false;
    for (unsigned i = 0; i < VP_NBARS; i++) {
        if (vp->bars[i].map)
            munmap(vp->bars[i].map, (size_t)vp->bars[i].size);
        vp->bars[i].map = NULL;
    }
    if (vp->device >= 0)
        close(vp->device);
    if (vp->group >= 0)
        close(vp->group);
    if (vp->container >= 0)
        close(vp->container);
    vp->device = vp->group = vp->container = -1;
    vp->common.bar = vp->notify.bar = vp->devcfg.bar = -1;
    free(vp->ranges);
    vp->ranges = NULL;
    vp->nranges = 0;
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
    vp->container = vp->group = vp->device = -1;
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

    ret = vp_open_vfio(vp, b->path);
    if (ret == 0)
        ret = vp_regions(vp);
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
    BLKIO_PROP("queue-size", PROP_INT, ST_AFTER_CONNECT, ST_CONNECTED,
               queue_size, virtio_blk_set_queue_size),
    BLKIO_PROP("max-queue-size", PROP_INT, ST_AFTER_CONNECT, 0,
               max_queue_size, NULL),
};

const struct blkio_driver blkio_driver_virtio_blk_vfio_pci = {
    .name                      = "virtio-blk-vfio-pci",
    .props                     = vp_props,
    .nprops                    = sizeof(vp_props) / sizeof(vp_props[0]),
    .create                    = vp_drv_create,
    .connect                   = vp_drv_connect,
    VIRTIO_BLK_DRIVER_OPS,
};
