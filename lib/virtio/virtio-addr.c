/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Region table for address translation (virtio-addr.h).  Changes happen
 * in blkio_map_mem_region()/blkio_unmap_mem_region(), never per request.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "virtio-addr.h"

/* A copy of the current table with room for `extra` more entries. */
static struct virtio_addr_tab *virtio_addr_copy(const struct virtio_addr_map *m,
                                                unsigned extra)
{
    const struct virtio_addr_tab *cur = m->cur;
    unsigned n = cur ? cur->n : 0;
    struct virtio_addr_tab *t = malloc(sizeof(*t) +
                                       (n + extra) * sizeof(t->e[0]));

    if (!t)
        return NULL;
    t->retired = m->cur;
    t->n = n;
    if (n)
        memcpy(t->e, cur->e, n * sizeof(t->e[0]));
    return t;
}

static void virtio_addr_publish(struct virtio_addr_map *m,
                                struct virtio_addr_tab *t)
{
    __atomic_store_n(&m->cur, t, __ATOMIC_RELEASE);
}

int virtio_addr_add(struct virtio_addr_map *m, const void *va, uint64_t len,
                    uint64_t dev)
{
    struct virtio_addr_tab *t = virtio_addr_copy(m, 1);
    uint64_t a = (uint64_t)(uintptr_t)va;
    unsigned i = 0;

    if (!t)
        return blkio_set_error(-ENOMEM, "out of memory for the address "
                               "table");
    while (i < t->n && t->e[i].va < a)
        i++;
    memmove(&t->e[i + 1], &t->e[i], (t->n - i) * sizeof(t->e[0]));
    t->e[i] = (struct virtio_addr_ent){ .va = a, .len = len, .dev = dev };
    t->n++;
    virtio_addr_publish(m, t);
    return 0;
}

void virtio_addr_remove(struct virtio_addr_map *m, const void *va,
                        uint64_t len)
{
    uint64_t a = (uint64_t)(uintptr_t)va;
    struct virtio_addr_tab *t;
    unsigned i;

    if (!m->cur)
        return;
    t = virtio_addr_copy(m, 0);
    if (!t)
        return;     /* the stale entry only costs a lookup hit */
    for (i = 0; i < t->n; i++)
        if (t->e[i].va == a && t->e[i].len == len)
            break;
    if (i == t->n) {
        free(t);
        return;
    }
    memmove(&t->e[i], &t->e[i + 1], (t->n - i - 1) * sizeof(t->e[0]));
    t->n--;
    virtio_addr_publish(m, t);
}

void virtio_addr_free(struct virtio_addr_map *m)
{
    struct virtio_addr_tab *t = m->cur;

    while (t) {
        struct virtio_addr_tab *old = t->retired;
        free(t);
        t = old;
    }
    m->cur = NULL;
}
