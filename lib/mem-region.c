/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Memory regions: allocation of memfd-backed buffers that any driver can
 * use (vhost-user backends map them through their fd), and the table of
 * regions mapped into the instance, with the manual's rules on alignment,
 * overlap, double mapping and the max-mem-regions limit.  None of this is
 * on the I/O path: requests look regions up in b->region_tab
 * (region-table.h), which this file keeps in step with b->regions.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

static bool mem_region_equal(const struct blkio_mem_region *a,
                             const struct blkio_mem_region *b)
{
    return a->addr == b->addr && a->len == b->len && a->iova == b->iova &&
           a->fd_offset == b->fd_offset && a->fd == b->fd &&
           a->flags == b->flags;
}

static int mem_region_append(struct blkio_mem_region **v, size_t *n,
                             size_t *cap, const struct blkio_mem_region *r)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct blkio_mem_region *nv = realloc(*v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        *v = nv;
        *cap = ncap;
    }
    (*v)[(*n)++] = *r;
    return 0;
}

static void mem_region_remove_at(struct blkio_mem_region *v, size_t *n,
                                 size_t i)
{
    memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof(*v));
    (*n)--;
}

int blkio_alloc_mem_region(struct blkio *b, struct blkio_mem_region *region,
                           size_t len)
{
    uint64_t align;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *addr;
    int fd;

    if (!b || !region)
        return blkio_set_error(-EINVAL,
                               "blkio_alloc_mem_region: NULL argument");
    /* Allocation needs only mem-region-alignment, known at connect. */
    if (b->state == BLKIO_STATE_CREATED)
        return blkio_set_error(-ENODEV, "blkio_alloc_mem_region: can only be "
                               "called after blkio_connect()");
    align = b->mem_region_alignment ? b->mem_region_alignment : 1;
    if (len == 0 || len % align)
        return blkio_set_error(-EINVAL,
                               "blkio_alloc_mem_region: len %zu must be a "
                               "non-zero multiple of mem-region-alignment "
                               "%llu", len, (unsigned long long)align);
    if (align > page && (align & (align - 1)))
        return blkio_set_error(-EINVAL, "blkio_alloc_mem_region: "
                               "mem-region-alignment %llu is not a power "
                               "of two", (unsigned long long)align);

    fd = memfd_create("blkio-mem-region", MFD_CLOEXEC);
    if (fd < 0)
        return blkio_set_error(-errno, "memfd_create: %m");
    if (ftruncate(fd, (off_t)len) < 0) {
        int e = errno;
        close(fd);
        return blkio_set_error(-e, "ftruncate memfd to %zu bytes: %s", len,
                               strerror(e));
    }

    if (align <= page) {
        addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    } else {
        /* Reserve len + align, then place the mapping on the boundary. */
        void *res = mmap(NULL, len + align, PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        addr = res;
        if (res != MAP_FAILED) {
            uintptr_t a = ((uintptr_t)res + align - 1) & ~(uintptr_t)(align - 1);
            addr = mmap((void *)a, len, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_FIXED, fd, 0);
            if (addr == MAP_FAILED) {
                munmap(res, len + align);
            } else {
                if (a > (uintptr_t)res)
                    munmap(res, a - (uintptr_t)res);
                size_t tail = (uintptr_t)res + len + align - (a + len);
                if (tail)
                    munmap((void *)(a + len), tail);
            }
        }
    }
    if (addr == MAP_FAILED) {
        int e = errno;
        close(fd);
        return blkio_set_error(-e, "mmap of %zu byte memory region: %s", len,
                               strerror(e));
    }

    struct blkio_mem_region r = {
        .addr = addr, .len = len, .iova = 0, .fd_offset = 0, .fd = fd,
        .flags = 0,
    };
    if (mem_region_append(&b->allocs, &b->nallocs, &b->allocs_cap, &r) < 0) {
        munmap(addr, len);
        close(fd);
        return blkio_set_error(-ENOMEM, "blkio_alloc_mem_region: out of "
                               "memory");
    }
    *region = r;
    return 0;
}

static void mem_region_release(const struct blkio_mem_region *r)
{
    munmap(r->addr, r->len);
    close(r->fd);
}

void blkio_free_mem_region(struct blkio *b,
                           const struct blkio_mem_region *region)
{
    if (!b || !region)
        return;
    for (size_t i = 0; i < b->nallocs; i++) {
        if (mem_region_equal(&b->allocs[i], region)) {
            mem_region_release(&b->allocs[i]);
            mem_region_remove_at(b->allocs, &b->nallocs, i);
            return;
        }
    }
}

/* The manual's rules for a region to map: alignment, reserved fields, an
 * fd where the driver needs one, no overlap, the max-mem-regions limit. */
static int mem_region_check_map(const struct blkio *b,
                                const struct blkio_mem_region *region)
{
    uint64_t align;
    uintptr_t start, end;

    if (b->state != BLKIO_STATE_STARTED)
        return blkio_set_error(-EBUSY, "blkio_map_mem_region: can only be "
                               "called after blkio_start()");
    align = b->mem_region_alignment ? b->mem_region_alignment : 1;
    if (region->len == 0)
        return blkio_set_error(-EINVAL, "blkio_map_mem_region: len is 0");
    if ((uintptr_t)region->addr % align || region->len % align)
        return blkio_set_error(-EINVAL, "blkio_map_mem_region: addr %p and "
                               "len %zu must be multiples of "
                               "mem-region-alignment %llu", region->addr,
                               region->len, (unsigned long long)align);
    if (region->iova != 0)
        return blkio_set_error(-EINVAL, "blkio_map_mem_region: iova is "
                               "reserved and must be 0");
    if (region->flags != 0)
        return blkio_set_error(-EINVAL, "blkio_map_mem_region: flags are "
                               "reserved and must be 0");
    if (b->needs_mem_region_fd && region->fd < 0)
        return blkio_set_error(-EINVAL, "blkio_map_mem_region: driver '%s' "
                               "needs a file descriptor for every memory "
                               "region (needs-mem-region-fd is true)",
                               b->driver_name);
    start = (uintptr_t)region->addr;
    if (start + region->len < start)
        return blkio_set_error(-EINVAL, "blkio_map_mem_region: region "
                               "wraps around the address space");
    end = start + region->len;

    for (size_t i = 0; i < b->nregions; i++) {
        const struct blkio_mem_region *m = &b->regions[i];
        uintptr_t ms = (uintptr_t)m->addr, me = ms + m->len;

        /* -EINVAL like libblkio (not -EEXIST). */
        if (mem_region_equal(m, region))
            return blkio_set_error(-EINVAL, "blkio_map_mem_region: region "
                                   "%p+%zu is already mapped",
                                   region->addr, region->len);
        if (start < me && ms < end)
            return blkio_set_error(-EINVAL, "blkio_map_mem_region: region "
                                   "%p+%zu overlaps mapped region %p+%zu",
                                   region->addr, region->len, m->addr,
                                   m->len);
    }
    if (b->max_mem_regions && b->nregions >= b->max_mem_regions)
        return blkio_set_error(-ENOSPC, "blkio_map_mem_region: already %zu "
                               "regions mapped (max-mem-regions is %llu)",
                               b->nregions,
                               (unsigned long long)b->max_mem_regions);
    return 0;
}

int blkio_map_mem_region(struct blkio *b,
                         const struct blkio_mem_region *region)
{
    int ret;

    if (!b || !region)
        return blkio_set_error(-EINVAL, "blkio_map_mem_region: NULL argument");
    ret = mem_region_check_map(b, region);
    if (ret < 0)
        return ret;

    /* Make room first so that a driver's success is never undone. */
    if (b->nregions == b->regions_cap) {
        size_t ncap = b->regions_cap ? b->regions_cap * 2 : 8;
        struct blkio_mem_region *nv = realloc(b->regions,
                                              ncap * sizeof(*nv));
        if (!nv)
            return blkio_set_error(-ENOMEM, "blkio_map_mem_region: out of "
                                   "memory");
        b->regions = nv;
        b->regions_cap = ncap;
    }
    /* The I/O path's table first: nothing can use the region before this
     * call returns, and the entry is easier to take back than a driver's
     * mapping. */
    ret = region_table_add(&b->region_tab, region->addr, region->len,
                           (uint64_t)(uintptr_t)region->addr);
    if (ret < 0)
        return ret;
    if (b->drv->map_mem_region) {
        ret = b->drv->map_mem_region(b, region);
        if (ret < 0) {
            region_table_remove(&b->region_tab, region->addr, region->len);
            blkio_region_table_reclaim(b, &b->region_tab);
            return ret;
        }
    }
    b->regions[b->nregions++] = *region;
    blkio_region_table_reclaim(b, &b->region_tab);
    return 0;
}

void blkio_unmap_mem_region(struct blkio *b,
                            const struct blkio_mem_region *region)
{
    if (!b || !region)
        return;
    for (size_t i = 0; i < b->nregions; i++) {
        if (mem_region_equal(&b->regions[i], region)) {
            region_table_remove(&b->region_tab, region->addr, region->len);
            if (b->drv->unmap_mem_region)
                b->drv->unmap_mem_region(b, &b->regions[i]);
            mem_region_remove_at(b->regions, &b->nregions, i);
            blkio_region_table_reclaim(b, &b->region_tab);
            return;
        }
    }
}

/* No queue of b inside a region table lookup, after a barrier on every
 * thread (region-table.h). */
static bool mem_region_readers_quiet(const struct blkio *b)
{
    if (!region_barrier_all_threads())
        return false;
    for (int i = 0; i < b->nqueues; i++)
        if (b->queues[i] && !region_reader_quiet(&b->queues[i]->region_reading))
            return false;
    for (int i = 0; i < b->npoll_queues; i++)
        if (b->poll_queues[i] &&
            !region_reader_quiet(&b->poll_queues[i]->region_reading))
            return false;
    return true;
}

void blkio_region_table_reclaim(struct blkio *b, struct region_table *t)
{
    if (region_table_retired(t) > 0 && mem_region_readers_quiet(b))
        region_table_reclaim(t);
}

/* At destroy: unmap everything, then free what we allocated. */
void blkio_mem_regions_release(struct blkio *b)
{
    if (b->nregions > 0 && b->drv->unmap_all_mem_regions)
        b->drv->unmap_all_mem_regions(b, b->regions, b->nregions);
    else if (b->drv->unmap_mem_region)
        for (size_t i = b->nregions; i > 0; i--)
            b->drv->unmap_mem_region(b, &b->regions[i - 1]);
    b->nregions = 0;
    free(b->regions);
    b->regions = NULL;
    b->regions_cap = 0;
    region_table_free(&b->region_tab);

    for (size_t i = 0; i < b->nallocs; i++)
        mem_region_release(&b->allocs[i]);
    free(b->allocs);
    b->allocs = NULL;
    b->nallocs = b->allocs_cap = 0;
}
