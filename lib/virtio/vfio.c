/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * VFIO plumbing for a PCI device (vfio.h): container, group and device
 * fds, the IOMMU's usable IOVA ranges, DMA mappings with IOVAs allocated
 * inside those ranges, config space, BARs and MSI-X.
 *
 * IOVAs: mappings do not use IOVA = virtual address; each gets an IOVA
 * inside the IOMMU's usable ranges from iova.c's allocator, and the
 * caller translates addresses it hands the device.
 *
 * Everything the kernel reports (capability chains, sizes) is checked
 * before use.
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
#include <unistd.h>
#include <linux/vfio.h>

#include "internal.h"
#include "vfio.h"

#define VFIO_CFG_SPACE 256      /* standard config space */

void vfio_init(struct vfio_dev *d)
{
    memset(d, 0, sizeof(*d));
    d->container = d->group = d->device = -1;
}

/* ---- config space and BARs ---- */

int vfio_cfg_read(struct vfio_dev *d, uint32_t off, void *buf,
                       size_t len)
{
    ssize_t r = pread(d->device, buf, len, (off_t)(d->cfg_off + off));

    if (r < 0)
        return blkio_set_error(-errno, "vfio: reading PCI config space "
                               "at 0x%x: %m", off);
    if ((size_t)r != len)
        return blkio_set_error(-EIO, "vfio: short read of PCI config "
                               "space at 0x%x (%zd of %zu bytes)", off, r,
                               len);
    return 0;
}

int vfio_cfg_write(struct vfio_dev *d, uint32_t off, const void *buf,
                        size_t len)
{
    ssize_t r = pwrite(d->device, buf, len, (off_t)(d->cfg_off + off));

    if (r < 0)
        return blkio_set_error(-errno, "vfio: writing PCI config space "
                               "at 0x%x: %m", off);
    if ((size_t)r != len)
        return blkio_set_error(-EIO, "vfio: short write of PCI config "
                               "space at 0x%x", off);
    return 0;
}

/* ---- IOMMU ---- */

/* Without the kernel's word (before Linux 5.4), assume the smallest
 * common x86 IOMMU address width: 39 bits. */
#define VFIO_DEFAULT_IOVA_END ((1ull << 39) - 1)

/* Take the usable IOVA ranges from their capability (sorted and checked
 * by the allocator: the kernel's data, checked anyway). */
static int vfio_take_ranges(struct vfio_dev *d,
                            const struct vfio_iommu_type1_info_cap_iova_range
                                *c)
{
    struct iova_span *r = calloc(c->nr_iovas, sizeof(*r));

    if (!r)
        return blkio_set_error(-ENOMEM, "vfio: out of memory");
    for (uint32_t i = 0; i < c->nr_iovas; i++) {
        r[i].start = c->iova_ranges[i].start;
        r[i].end = c->iova_ranges[i].end;
    }
    return iova_space_take_ranges(&d->iova, r, c->nr_iovas);
}

/* Walk the capability chain of VFIO_IOMMU_GET_INFO (argsz bytes). */
static int vfio_iommu_caps(struct vfio_dev *d,
                           const struct vfio_iommu_type1_info *info,
                           uint32_t argsz)
{
    unsigned hops = 0;

    for (uint32_t off = info->cap_offset; off && hops < 64; hops++) {
        const struct vfio_info_cap_header *h;

        if (off < sizeof(*info) || off > argsz - sizeof(*h) || off % 4)
            break;
        h = (const void *)((const uint8_t *)info + off);
        if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE &&
            off + sizeof(struct vfio_iommu_type1_info_cap_iova_range) <=
                argsz) {
            const struct vfio_iommu_type1_info_cap_iova_range *c =
                (const void *)h;
            uint64_t room = (argsz - off - sizeof(*c)) /
                            sizeof(struct vfio_iova_range);
            int ret;

            if (c->nr_iovas == 0 || c->nr_iovas > room)
                return blkio_set_error(-EIO, "vfio: IOMMU reported %u "
                                       "IOVA ranges", c->nr_iovas);
            ret = vfio_take_ranges(d, c);
            if (ret < 0)
                return ret;
        } else if (h->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL &&
                   off + sizeof(struct vfio_iommu_type1_info_dma_avail) <=
                       argsz) {
            d->dma_avail =
                ((const struct vfio_iommu_type1_info_dma_avail *)h)->avail;
        }
        off = h->next;
    }
    return 0;
}

/* VFIO_IOMMU_GET_INFO, asked again with room when the chain did not fit. */
static int vfio_iommu_info(struct vfio_dev *d)
{
    struct vfio_iommu_type1_info *info;
    uint32_t argsz = sizeof(*info);
    int ret = 0;

    for (int round = 0; round < 2; round++) {
        info = calloc(1, argsz);
        if (!info)
            return blkio_set_error(-ENOMEM, "vfio: out of memory");
        info->argsz = argsz;
        if (ioctl(d->container, VFIO_IOMMU_GET_INFO, info) < 0) {
            ret = blkio_set_error(-errno, "vfio: VFIO_IOMMU_GET_INFO: %m");
            free(info);
            return ret;
        }
        if (info->argsz <= argsz)
            break;
        if (info->argsz > 1024 * 1024) {
            ret = blkio_set_error(-EIO, "vfio: IOMMU info of %u bytes is "
                                  "implausibly large", info->argsz);
            free(info);
            return ret;
        }
        argsz = info->argsz;
        free(info);
        info = NULL;
    }
    if (info && (info->flags & VFIO_IOMMU_INFO_CAPS))
        ret = vfio_iommu_caps(d, info, argsz);
    free(info);
    if (ret == 0 && !d->iova.ranges)
        ret = iova_space_set_range(&d->iova, 0, VFIO_DEFAULT_IOVA_END);
    return ret;
}

/* ---- DMA mappings ---- */

int vfio_dma_map(struct vfio_dev *d, void *vaddr, size_t len,
                 uint64_t *iova)
{
    struct vfio_iommu_type1_dma_map m = {
        .argsz = sizeof(m),
        .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
        .vaddr = (uint64_t)(uintptr_t)vaddr,
        .size = len,
    };
    uint64_t at = 0;
    int ret = iova_reserve(&d->iova, "vfio", m.vaddr, len, &at);

    if (ret < 0)
        return ret;
    m.iova = at;
    if (ioctl(d->container, VFIO_IOMMU_MAP_DMA, &m) < 0) {
        ret = blkio_set_error(-errno, "vfio: VFIO_IOMMU_MAP_DMA of %p (%zu "
                              "bytes) at IOVA 0x%llx: %m", vaddr, len,
                              (unsigned long long)m.iova);
        iova_release(&d->iova, m.vaddr, len, &at);
        return ret;
    }
    *iova = m.iova;
    return 0;
}

void vfio_dma_unmap(struct vfio_dev *d, void *vaddr, size_t len)
{
    struct vfio_iommu_type1_dma_unmap u = {
        .argsz = sizeof(u), .size = len,
    };
    uint64_t iova;

    if (iova_release(&d->iova, (uint64_t)(uintptr_t)vaddr, len, &iova) == 0) {
        u.iova = iova;
        ioctl(d->container, VFIO_IOMMU_UNMAP_DMA, &u);
    }
}

/* ---- opening ---- */

/* /sys/bus/pci/devices/BDF -> the group number from its iommu_group link
 * and the BDF (the directory's own name). */
static int vfio_sysfs(const char *path, char *bdf, size_t bdf_len,
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
        return blkio_set_error(-errno, "vfio: path '%s': %m", path);
    base = strrchr(real, '/');
    base = base ? base + 1 : real;
    if (strlen(base) >= bdf_len)
        return blkio_set_error(-EINVAL, "vfio: path '%s' does not end in "
                               "a PCI device address", path);
    strcpy(bdf, base);

    if ((size_t)snprintf(link, sizeof(link), "%s/iommu_group", real) >=
        sizeof(link))
        return blkio_set_error(-ENAMETOOLONG, "vfio: path '%s' is too "
                               "long", path);
    n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return blkio_set_error(-errno, "vfio: '%s' has no IOMMU group "
                               "(%s: %m); is it a PCI device behind an "
                               "IOMMU?", path, link);
    target[n] = '\0';
    gname = strrchr(target, '/');
    gname = gname ? gname + 1 : target;
    errno = 0;
    *group = strtoul(gname, &end, 10);
    if (errno || end == gname || *end)
        return blkio_set_error(-EINVAL, "vfio: cannot parse IOMMU group "
                               "'%s' of '%s'", target, path);
    return 0;
}

static int vfio_open_fds(struct vfio_dev *d, const char *path)
{
    struct vfio_group_status gs = { .argsz = sizeof(gs) };
    char bdf[64], gpath[64];
    unsigned long group;
    int ret;

    ret = vfio_sysfs(path, bdf, sizeof(bdf), &group);
    if (ret < 0)
        return ret;

    d->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
    if (d->container < 0)
        return blkio_set_error(-errno, "vfio: open /dev/vfio/vfio: %m "
                               "(is the vfio module loaded?)");
    if (ioctl(d->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
        return blkio_set_error(-ENOTSUP, "vfio: unknown VFIO API "
                               "version");
    if (ioctl(d->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
        return blkio_set_error(-ENOTSUP, "vfio: the VFIO container "
                               "does not support the type1v2 IOMMU");

    snprintf(gpath, sizeof(gpath), "/dev/vfio/%lu", group);
    d->group = open(gpath, O_RDWR | O_CLOEXEC);
    if (d->group < 0)
        return blkio_set_error(-errno, "vfio: open %s (IOMMU group of "
                               "%s): %m%s", gpath, bdf,
                               errno == ENOENT ? " (is the device bound to "
                               "vfio-pci?)" : "");
    if (ioctl(d->group, VFIO_GROUP_GET_STATUS, &gs) < 0)
        return blkio_set_error(-errno, "vfio: VFIO_GROUP_GET_STATUS on "
                               "%s: %m", gpath);
    if (!(gs.flags & VFIO_GROUP_FLAGS_VIABLE))
        return blkio_set_error(-EBUSY, "vfio: IOMMU group %lu is not "
                               "viable: bind every device in it to vfio-pci",
                               group);
    if (ioctl(d->group, VFIO_GROUP_SET_CONTAINER, &d->container) < 0)
        return blkio_set_error(-errno, "vfio: VFIO_GROUP_SET_CONTAINER: "
                               "%m");
    if (ioctl(d->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
        return blkio_set_error(-errno, "vfio: VFIO_SET_IOMMU type1v2: "
                               "%m");
    ret = vfio_iommu_info(d);
    if (ret < 0)
        return ret;

    d->device = ioctl(d->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
    if (d->device < 0)
        return blkio_set_error(-errno, "vfio: VFIO_GROUP_GET_DEVICE_FD "
                               "%s: %m", bdf);
    return 0;
}

static int vfio_regions(struct vfio_dev *d)
{
    struct vfio_device_info di = { .argsz = sizeof(di) };
    struct vfio_irq_info ii = { .argsz = sizeof(ii),
                                .index = VFIO_PCI_MSIX_IRQ_INDEX };
    struct vfio_region_info ri;

    if (ioctl(d->device, VFIO_DEVICE_GET_INFO, &di) < 0)
        return blkio_set_error(-errno, "vfio: VFIO_DEVICE_GET_INFO: %m");
    if (!(di.flags & VFIO_DEVICE_FLAGS_PCI) ||
        di.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX ||
        di.num_irqs <= VFIO_PCI_MSIX_IRQ_INDEX)
        return blkio_set_error(-ENODEV, "vfio: not a VFIO PCI device "
                               "(flags 0x%x, %u regions, %u irqs)", di.flags,
                               di.num_regions, di.num_irqs);

    ri = (struct vfio_region_info){ .argsz = sizeof(ri),
                                    .index = VFIO_PCI_CONFIG_REGION_INDEX };
    if (ioctl(d->device, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0)
        return blkio_set_error(-errno, "vfio: config region info: %m");
    if (ri.size < VFIO_CFG_SPACE)
        return blkio_set_error(-EIO, "vfio: config space is only %llu "
                               "bytes", (unsigned long long)ri.size);
    d->cfg_off = ri.offset;
    d->cfg_size = ri.size;

    for (unsigned i = 0; i < VFIO_NBARS; i++) {
        ri = (struct vfio_region_info){ .argsz = sizeof(ri), .index = i };
        if (ioctl(d->device, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0)
            return blkio_set_error(-errno, "vfio: BAR%u region info: %m",
                                   i);
        d->bars[i].size = ri.size;
        d->bars[i].region_off = ri.offset;
        d->bars[i].flags = ri.flags;
    }

    if (ioctl(d->device, VFIO_DEVICE_GET_IRQ_INFO, &ii) < 0)
        return blkio_set_error(-errno, "vfio: MSI-X irq info: %m");
    d->msix_count = (ii.flags & VFIO_IRQ_INFO_EVENTFD) ? ii.count : 0;
    if (d->msix_count == 0)
        return blkio_set_error(-ENOTSUP, "vfio: device has no MSI-X "
                               "interrupts; completion fds need them");
    return 0;
}

/* ---- MSI-X ---- */

int vfio_irqs_set(struct vfio_dev *d, unsigned start, unsigned count,
                  const int *fds)
{
    size_t sz = sizeof(struct vfio_irq_set) + count * sizeof(int32_t);
    struct vfio_irq_set *s = calloc(1, sz);
    int ret = 0;

    if (!s)
        return blkio_set_error(-ENOMEM, "vfio: out of memory");
    s->argsz = (uint32_t)sz;
    s->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    s->index = VFIO_PCI_MSIX_IRQ_INDEX;
    s->start = start;
    s->count = count;
    for (unsigned i = 0; i < count; i++)
        ((int32_t *)s->data)[i] = fds[i];
    if (ioctl(d->device, VFIO_DEVICE_SET_IRQS, s) < 0)
        ret = blkio_set_error(-errno, "vfio: VFIO_DEVICE_SET_IRQS for "
                              "MSI-X vectors %u..%u: %m", start,
                              start + count - 1);
    else
        d->msix_on = true;
    free(s);
    return ret;
}

void vfio_irqs_off(struct vfio_dev *d)
{
    struct vfio_irq_set s = {
        .argsz = sizeof(s),
        .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
        .index = VFIO_PCI_MSIX_IRQ_INDEX,
    };

    if (d->msix_on)
        ioctl(d->device, VFIO_DEVICE_SET_IRQS, &s);
    d->msix_on = false;
}

/* ---- BARs ---- */

/* Where VFIO allows it (no sparse areas to respect, page-sized). */
void vfio_bar_mmap(struct vfio_dev *d, unsigned bar_index)
{
    struct vfio_bar *bar = &d->bars[bar_index];
    long page = sysconf(_SC_PAGESIZE);
    void *p;

    if (bar->map || !(bar->flags & VFIO_REGION_INFO_FLAG_MMAP) ||
        (bar->flags & VFIO_REGION_INFO_FLAG_CAPS) ||
        bar->size % (uint64_t)page || bar->size > SIZE_MAX)
        return;
    p = mmap(NULL, (size_t)bar->size, PROT_READ | PROT_WRITE, MAP_SHARED,
             d->device, (off_t)bar->region_off);
    if (p != MAP_FAILED)
        bar->map = p;
}

/* The mmap path does single accesses of the register's width, as the
 * device expects. */
int vfio_bar_read(struct vfio_dev *d, unsigned bar_index, uint64_t pos,
                  unsigned width, uint64_t *val)
{
    const struct vfio_bar *bar = &d->bars[bar_index];
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
    r = pread(d->device, &v, width, (off_t)(bar->region_off + pos));
    if (r != (ssize_t)width)
        return blkio_set_error(r < 0 ? -errno : -EIO, "vfio: reading BAR%u "
                               "at 0x%llx: %s", bar_index,
                               (unsigned long long)pos,
                               r < 0 ? strerror(errno) : "short read");
    switch (width) {
    case 1: *val = v.u8; break;
    case 2: *val = le16toh(v.u16); break;
    default: *val = le32toh(v.u32); break;
    }
    return 0;
}

int vfio_bar_write(struct vfio_dev *d, unsigned bar_index, uint64_t pos,
                   unsigned width, uint64_t val)
{
    const struct vfio_bar *bar = &d->bars[bar_index];
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
    r = pwrite(d->device, &v, width, (off_t)(bar->region_off + pos));
    if (r != (ssize_t)width)
        return blkio_set_error(r < 0 ? -errno : -EIO, "vfio: writing BAR%u "
                               "at 0x%llx: %s", bar_index,
                               (unsigned long long)pos,
                               r < 0 ? strerror(errno) : "short write");
    return 0;
}

/* ---- closing ---- */

void vfio_close(struct vfio_dev *d)
{
    if (d->device >= 0)
        vfio_irqs_off(d);
    for (unsigned i = 0; i < VFIO_NBARS; i++) {
        if (d->bars[i].map)
            munmap(d->bars[i].map, (size_t)d->bars[i].size);
        d->bars[i].map = NULL;
    }
    /* Closing the container drops the mappings with it. */
    if (d->device >= 0)
        close(d->device);
    if (d->group >= 0)
        close(d->group);
    if (d->container >= 0)
        close(d->container);
    d->device = d->group = d->container = -1;
    iova_space_free(&d->iova);
}

int vfio_open(struct vfio_dev *d, const char *path)
{
    int ret = vfio_open_fds(d, path);

    return ret < 0 ? ret : vfio_regions(d);
}
