/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The lock-free region table (region-table.h).  Changes happen in
 * blkio_map_mem_region()/blkio_unmap_mem_region(), never per request.
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "region-table.h"

/* A copy of the current table with room for `extra` more entries.  Entries
 * that an unmap without memory could only mark dead (length 0) are left
 * out, so that a region mapped again at the same address is found. */
static struct region_tab *region_table_copy(const struct region_table *m,
                                            unsigned extra)
{
    const struct region_tab *cur = m->cur;
    unsigned n = cur ? cur->n : 0;
    struct region_tab *t = malloc(sizeof(*t) + (n + extra) * sizeof(t->e[0]));

    if (!t)
        return NULL;
    t->retired = m->cur;
    t->n = 0;
    for (unsigned i = 0; i < n; i++)
        if (cur->e[i].len)
            t->e[t->n++] = cur->e[i];
    return t;
}

static void region_table_publish(struct region_table *m, struct region_tab *t)
{
    __atomic_store_n(&m->cur, t, __ATOMIC_RELEASE);
}

int region_table_add(struct region_table *m, const void *va, uint64_t len,
                     uint64_t dev)
{
    struct region_tab *t = region_table_copy(m, 1);
    uint64_t a = (uint64_t)(uintptr_t)va;
    unsigned i = 0;

    if (!t)
        return blkio_set_error(-ENOMEM, "out of memory for the region "
                               "table");
    while (i < t->n && t->e[i].va < a)
        i++;
    memmove(&t->e[i + 1], &t->e[i], (t->n - i) * sizeof(t->e[0]));
    t->e[i] = (struct region_ent){ .va = a, .len = len, .dev = dev };
    t->n++;
    region_table_publish(m, t);
    return 0;
}

/* The entry of [va, va + len) in table t, or t->n. */
static unsigned region_tab_index(const struct region_tab *t, uint64_t va,
                                 uint64_t len)
{
    unsigned i;

    for (i = 0; i < t->n; i++)
        if (t->e[i].va == va && t->e[i].len == len)
            break;
    return i;
}

void region_table_remove(struct region_table *m, const void *va, uint64_t len)
{
    uint64_t a = (uint64_t)(uintptr_t)va;
    struct region_tab *t;
    unsigned i;

    if (!m->cur || !len)
        return;
    t = region_table_copy(m, 0);
    if (!t) {
        /* No memory for a new table: mark the entry dead where it is.  A
         * length of 0 matches no lookup, and no request may be using the
         * region (the manual forbids unmapping it then), so a reader that
         * still sees the old length is not looking this region up.  The
         * next change drops the entry. */
        i = region_tab_index(m->cur, a, len);
        if (i < m->cur->n)
            __atomic_store_n(&m->cur->e[i].len, 0, __ATOMIC_RELEASE);
        return;
    }
    i = region_tab_index(t, a, len);
    if (i == t->n) {
        free(t);
        return;
    }
    memmove(&t->e[i], &t->e[i + 1], (t->n - i - 1) * sizeof(t->e[0]));
    t->n--;
    region_table_publish(m, t);
}

static void region_tab_free_chain(struct region_tab *t)
{
    while (t) {
        struct region_tab *old = t->retired;

        free(t);
        t = old;
    }
}

void region_table_reclaim(struct region_table *m)
{
    if (!m->cur)
        return;
    region_tab_free_chain(m->cur->retired);
    m->cur->retired = NULL;
}

unsigned region_table_retired(const struct region_table *m)
{
    unsigned n = 0;

    for (const struct region_tab *t = m->cur ? m->cur->retired : NULL; t;
         t = t->retired)
        n++;
    return n;
}

void region_table_free(struct region_table *m)
{
    region_tab_free_chain(m->cur);
    m->cur = NULL;
}

bool region_barrier_all_threads(void)
{
    /* 0: not tried yet, 1: registered, -1: unavailable */
    static int state;
    int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);

    if (s == 0) {
        /* Registering twice is harmless: the first one wins the store. */
        s = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                    0) == 0 ? 1 : -1;
        __atomic_store_n(&state, s, __ATOMIC_RELEASE);
    }
    if (s < 0)
        return false;
    return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0) == 0;
}
