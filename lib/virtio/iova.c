/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The IOVA allocator (iova.h): first fit inside the usable ranges.
 * Changes happen when memory is mapped or unmapped, never per request.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "iova.h"

static int iova_cmp_span(const void *a, const void *b)
{
    const struct iova_span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

int iova_space_take_ranges(struct iova_space *s, struct iova_span *r,
                           unsigned n)
{
    qsort(r, n, sizeof(*r), iova_cmp_span);
    for (unsigned i = 0; i < n; i++) {
        if (r[i].start > r[i].end || (i > 0 && r[i].start <= r[i - 1].end)) {
            free(r);
            return blkio_set_error(-EIO, "IOMMU reported invalid IOVA "
                                   "ranges");
        }
    }
    free(s->ranges);
    s->ranges = r;
    s->nranges = n;
    return 0;
}

int iova_space_set_range(struct iova_space *s, uint64_t first, uint64_t last)
{
    struct iova_span *r;

    if (first > last)
        return blkio_set_error(-EINVAL, "empty IOVA range 0x%llx-0x%llx",
                               (unsigned long long)first,
                               (unsigned long long)last);
    r = malloc(sizeof(*r));
    if (!r)
        return blkio_set_error(-ENOMEM, "out of memory for the IOVA ranges");
    *r = (struct iova_span){ first, last };
    return iova_space_take_ranges(s, r, 1);
}

void iova_space_free(struct iova_space *s)
{
    free(s->ranges);
    free(s->maps);
    *s = (struct iova_space){ 0 };
}

static uint64_t iova_page_up(uint64_t x, uint64_t page)
{
    return (x + page - 1) & ~(page - 1);
}

/*
 * The lowest page-aligned IOVA of len bytes inside a usable range that no
 * live mapping overlaps (IOVA 0 stays unused: a zero address the device
 * sees is more likely a bug than a buffer).  *pos is where the mapping
 * goes in the sorted list.
 */
static int iova_find(const struct iova_space *s, uint64_t len,
                     uint64_t *iova, unsigned *pos)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

    for (unsigned r = 0; r < s->nranges; r++) {
        const struct iova_span *span = &s->ranges[r];
        uint64_t cand = iova_page_up(span->start ? span->start : page, page);
        unsigned i;

        if (cand == 0 || cand < span->start)
            continue;       /* aligning up wrapped */
        for (i = 0; i < s->nmaps; i++) {
            const struct iova_map *m = &s->maps[i];

            if (m->iova + m->len <= cand)
                continue;
            if (m->iova > cand && len <= m->iova - cand)
                break;      /* fits before m */
            cand = iova_page_up(m->iova + m->len, page);
            if (cand == 0)
                break;
        }
        if (cand != 0 && cand <= span->end && len - 1 <= span->end - cand) {
            *iova = cand;
            *pos = i;
            return 0;
        }
    }
    return -ENOSPC;
}

static int iova_insert(struct iova_space *s, unsigned pos,
                       const struct iova_map *m)
{
    if (s->nmaps == s->maps_cap) {
        unsigned cap = s->maps_cap ? s->maps_cap * 2 : 16;
        struct iova_map *n = realloc(s->maps, cap * sizeof(*n));

        if (!n)
            return blkio_set_error(-ENOMEM, "out of memory for the IOVA "
                                   "mappings");
        s->maps = n;
        s->maps_cap = cap;
    }
    memmove(&s->maps[pos + 1], &s->maps[pos],
            (s->nmaps - pos) * sizeof(*s->maps));
    s->maps[pos] = *m;
    s->nmaps++;
    return 0;
}

int iova_reserve(struct iova_space *s, const char *who, uint64_t vaddr,
                 uint64_t len, uint64_t *iova)
{
    unsigned pos = 0;

    if (len == 0)
        return blkio_set_error(-EINVAL, "%s: cannot map 0 bytes", who);
    if (iova_find(s, len, iova, &pos) < 0)
        return blkio_set_error(-ENOSPC, "%s: no room for %llu bytes in the "
                               "IOMMU's usable IOVA ranges (highest usable "
                               "address 0x%llx)", who,
                               (unsigned long long)len,
                               s->nranges ? (unsigned long long)
                                   s->ranges[s->nranges - 1].end : 0ull);
    return iova_insert(s, pos, &(struct iova_map){
        .vaddr = vaddr, .len = len, .iova = *iova,
    });
}

int iova_release(struct iova_space *s, uint64_t vaddr, uint64_t len,
                 uint64_t *iova)
{
    for (unsigned i = 0; i < s->nmaps; i++) {
        struct iova_map *m = &s->maps[i];

        if (m->vaddr == vaddr && m->len == len) {
            *iova = m->iova;
            memmove(m, m + 1, (s->nmaps - i - 1) * sizeof(*m));
            s->nmaps--;
            return 0;
        }
    }
    return -ENOENT;
}
