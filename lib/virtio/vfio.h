/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * vfio.h - a PCI device driven from user space through VFIO
 * (linux/vfio.h, type1v2 IOMMU): the container and group, the IOMMU's
 * usable IOVA ranges and an IOVA allocator inside them, DMA mappings, PCI
 * config space, BAR access and MSI-X interrupts.  Nothing here knows
 * virtio; vfio-pci.c is the virtio-pci transport on top.
 */
#ifndef BLKIO_VFIO_H
#define BLKIO_VFIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iova.h"

#define VFIO_NBARS 6

struct vfio_bar {
    uint64_t size;
    uint64_t region_off;        /* of the BAR in the device fd */
    uint32_t flags;             /* VFIO_REGION_INFO_FLAG_* */
    uint8_t *map;               /* mmap of the whole BAR, or NULL */
};

struct vfio_dev {
    int container;
    int group;
    int device;

    uint64_t cfg_off;           /* config region in the device fd */
    uint64_t cfg_size;
    struct vfio_bar bars[VFIO_NBARS];
    uint32_t msix_count;        /* MSI-X vectors VFIO offers */
    bool msix_on;

    /* Usable IOVA ranges (39 bits when the kernel does not say) and the
     * live mappings; the mapping limit (0: unknown). */
    struct iova_space iova;
    uint32_t dma_avail;
};

/* Before vfio_open(): no fds, nothing mapped. */
void vfio_init(struct vfio_dev *d);
/*
 * Open the device whose sysfs directory is `path`
 * (/sys/bus/pci/devices/BDF): container, group, IOMMU info, device fd,
 * config and BAR regions, MSI-X count.  On failure the caller calls
 * vfio_close().
 */
int vfio_open(struct vfio_dev *d, const char *path);
/* Unmap every DMA mapping, switch interrupts off, close everything. */
void vfio_close(struct vfio_dev *d);

int vfio_cfg_read(struct vfio_dev *d, uint32_t off, void *buf, size_t len);
int vfio_cfg_write(struct vfio_dev *d, uint32_t off, const void *buf,
                   size_t len);

/* One little-endian register of `width` (1, 2, 4) bytes at `pos` in BAR
 * `bar`; the caller keeps pos inside the BAR. */
int vfio_bar_read(struct vfio_dev *d, unsigned bar, uint64_t pos,
                  unsigned width, uint64_t *val);
int vfio_bar_write(struct vfio_dev *d, unsigned bar, uint64_t pos,
                   unsigned width, uint64_t val);
/* mmap a BAR where VFIO allows it; otherwise it stays pread/pwrite. */
void vfio_bar_mmap(struct vfio_dev *d, unsigned bar);

/* Map len bytes at vaddr (page-aligned) for device DMA at an IOVA the
 * allocator picks inside the usable ranges; *iova gets it. */
int vfio_dma_map(struct vfio_dev *d, void *vaddr, size_t len,
                 uint64_t *iova);
/* Undo vfio_dma_map() of exactly that memory; quiet. */
void vfio_dma_unmap(struct vfio_dev *d, void *vaddr, size_t len);

/* Point MSI-X vectors [start, start+count) at eventfds (-1 = none); the
 * first call enables MSI-X. */
int vfio_irqs_set(struct vfio_dev *d, unsigned start, unsigned count,
                  const int *fds);
void vfio_irqs_off(struct vfio_dev *d);

#endif /* BLKIO_VFIO_H */
