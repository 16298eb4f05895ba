/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-addr.h - where the device sees our memory, for transports whose
 * device addresses are not our virtual addresses (vfio-pci: IOVAs from an
 * allocator).  A sorted table of mapped regions, looked up per buffer on
 * the I/O path without a lock: a change publishes a new table and the old
 * one is kept until virtio_addr_free(), since a queue on another thread
 * may still be reading it (tables are small: one entry per region).
 */
#ifndef BLKIO_VIRTIO_ADDR_H
#define BLKIO_VIRTIO_ADDR_H

#include <stdbool.h>
#include <stdint.h>

struct virtio_addr_ent {
    uint64_t va;
    uint64_t len;
    uint64_t dev;               /* device address of va */
};

struct virtio_addr_tab {
    struct virtio_addr_tab *retired;    /* older tables, to free */
    unsigned n;
    struct virtio_addr_ent e[];         /* sorted by va, disjoint */
};

struct virtio_addr_map {
    struct virtio_addr_tab *cur;        /* atomic; NULL: empty */
};

int virtio_addr_add(struct virtio_addr_map *m, const void *va, uint64_t len,
                    uint64_t dev);
void virtio_addr_remove(struct virtio_addr_map *m, const void *va,
                        uint64_t len);
void virtio_addr_free(struct virtio_addr_map *m);

/* The device address of [p, p+len), which must lie inside one region. */
static inline bool virtio_addr_lookup(const struct virtio_addr_map *m,
                                      const void *p, uint64_t len,
                                      uint64_t *dev)
{
    const struct virtio_addr_tab *t = __atomic_load_n(&m->cur,
                                                      __ATOMIC_ACQUIRE);
    uint64_t a = (uint64_t)(uintptr_t)p, off;
    unsigned lo = 0, hi = t ? t->n : 0;

    while (lo < hi) {           /* first entry with va > a */
        unsigned mid = (lo + hi) / 2;

        if (t->e[mid].va <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return false;
    off = a - t->e[lo - 1].va;
    if (off >= t->e[lo - 1].len || len > t->e[lo - 1].len - off)
        return false;
    *dev = t->e[lo - 1].dev + off;
    return true;
}

#endif /* BLKIO_VIRTIO_ADDR_H */
