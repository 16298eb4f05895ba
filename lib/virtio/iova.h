/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * iova.h - IOVAs for devices behind an IOMMU that translates only part of
 * the 64-bit space (an x86 VT-d with a 39-bit address width: below
 * 512 GiB, minus reserved holes such as the MSI window), while user
 * virtual addresses go up to 2^47 or 2^56.  Such a device cannot be given
 * virtual addresses: each mapping gets the lowest free, page-aligned IOVA
 * range inside the usable ranges (first fit), and the driver translates
 * the addresses it hands the device.  Used by vfio.c and vhost-vdpa.c.
 * Bookkeeping only: the caller programs the IOMMU.
 */
#ifndef BLKIO_IOVA_H
#define BLKIO_IOVA_H

#include <stdint.h>

struct iova_span {
    uint64_t start;
    uint64_t end;               /* inclusive */
};

/* One mapping: len bytes at vaddr, seen by the device at iova. */
struct iova_map {
    uint64_t vaddr;
    uint64_t len;
    uint64_t iova;
};

struct iova_space {
    /* Usable ranges: sorted, disjoint, each non-empty. */
    struct iova_span *ranges;
    unsigned nranges;
    /* Live mappings, sorted by iova: the allocator's used space. */
    struct iova_map *maps;
    unsigned nmaps, maps_cap;
};

/* Make [first, last] the only usable range (-EINVAL if first > last). */
int iova_space_set_range(struct iova_space *s, uint64_t first,
                         uint64_t last);
/* Take `ranges` (malloc'd, n entries; freed here on error): sorted here,
 * -EIO if one is empty or two overlap. */
int iova_space_take_ranges(struct iova_space *s, struct iova_span *ranges,
                           unsigned n);
/* Forget the ranges and every mapping. */
void iova_space_free(struct iova_space *s);

/* Pick and record an IOVA for len bytes at vaddr (-ENOSPC: fits nowhere;
 * -EINVAL: len 0).  `who` names the device in the message. */
int iova_reserve(struct iova_space *s, const char *who, uint64_t vaddr,
                 uint64_t len, uint64_t *iova);
/* Forget the mapping of exactly that memory; *iova gets its IOVA
 * (-ENOENT if unknown). */
int iova_release(struct iova_space *s, uint64_t vaddr, uint64_t len,
                 uint64_t *iova);

#endif /* BLKIO_IOVA_H */
