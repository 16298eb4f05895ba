/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * region-table.h - the mapped memory regions as the I/O path sees them: a
 * sorted table of [va, va + len) with the device address of va, looked up
 * per buffer without a lock while another thread may map or unmap other
 * regions (the manual only forbids changing a region that requests are
 * using).  A change publishes a new table; the old one is retired.
 *
 * Reclamation: each queue has a reader flag, set around every lookup
 * (region_read_begin/end: two plain stores, no fence).  After a change
 * the writer makes every thread of the process pass a full barrier
 * (membarrier(2)) and then looks at the flags: when no queue is inside
 * a lookup, no reader can hold a retired table (a lookup that starts
 * later loads the new one), so all of them are freed.  Otherwise they
 * wait for the next change, or for region_table_free().
 */
#ifndef BLKIO_REGION_TABLE_H
#define BLKIO_REGION_TABLE_H

#include <stdbool.h>
#include <stdint.h>

struct region_ent {
    uint64_t va;
    uint64_t len;
    uint64_t dev;               /* device address of va */
};

struct region_tab {
    struct region_tab *retired; /* older tables, to free */
    unsigned n;
    struct region_ent e[];      /* sorted by va, disjoint */
};

struct region_table {
    struct region_tab *cur;     /* atomic; NULL: empty */
};

int region_table_add(struct region_table *m, const void *va, uint64_t len,
                     uint64_t dev);
void region_table_remove(struct region_table *m, const void *va,
                         uint64_t len);
/* Free the retired tables; only when readers_quiet() said so. */
void region_table_reclaim(struct region_table *m);
/* How many retired tables are kept (for tests). */
unsigned region_table_retired(const struct region_table *m);
void region_table_free(struct region_table *m);

/*
 * A full barrier on every running thread of the process (membarrier(2),
 * registered on first use).  False where the kernel (or valgrind) has no
 * private expedited membarrier: then retired tables stay until
 * region_table_free().
 */
bool region_barrier_all_threads(void);

/* A queue's reader flag around a lookup (see the top of this file). */
static inline void region_read_begin(int *reading)
{
    __atomic_store_n(reading, 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

static inline void region_read_end(int *reading)
{
    __atomic_store_n(reading, 0, __ATOMIC_RELEASE);
}

/* Is this reader outside a lookup?  (After region_barrier_all_threads().) */
static inline bool region_reader_quiet(const int *reading)
{
    return __atomic_load_n(reading, __ATOMIC_ACQUIRE) == 0;
}

/* The region entry containing [p, p+len), or NULL.  Inside a read
 * section. */
static inline const struct region_ent *
region_table_find(const struct region_table *m, const void *p, uint64_t len)
{
    const struct region_tab *t = __atomic_load_n(&m->cur, __ATOMIC_ACQUIRE);
    uint64_t a = (uint64_t)(uintptr_t)p, off, elen;
    unsigned lo = 0, hi = t ? t->n : 0;

    while (lo < hi) {           /* first entry with va > a */
        unsigned mid = (lo + hi) / 2;

        if (t->e[mid].va <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    off = a - t->e[lo - 1].va;
    elen = __atomic_load_n(&t->e[lo - 1].len, __ATOMIC_RELAXED);
    if (off >= elen || len > elen - off)  /* a dead entry has length 0 */
        return NULL;
    return &t->e[lo - 1];
}

/* The device address of [p, p+len), which must lie inside one region. */
static inline bool region_table_lookup(const struct region_table *m,
                                       int *reading, const void *p,
                                       uint64_t len, uint64_t *dev)
{
    const struct region_ent *e;
    bool found = false;

    region_read_begin(reading);
    e = region_table_find(m, p, len);
    if (e) {
        *dev = e->dev + ((uint64_t)(uintptr_t)p - e->va);
        found = true;
    }
    region_read_end(reading);
    return found;
}

/* Is [p, p+len) inside one region? */
static inline bool region_table_contains(const struct region_table *m,
                                         int *reading, const void *p,
                                         uint64_t len)
{
    bool found;

    region_read_begin(reading);
    found = region_table_find(m, p, len) != NULL;
    region_read_end(reading);
    return found;
}

#endif /* BLKIO_REGION_TABLE_H */
