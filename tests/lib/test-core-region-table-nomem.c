/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: unmapping a region when the new region table cannot be
 * allocated (malloc() fails).  The region must stop being found at once,
 * the other regions must stay, and a region mapped again at the same
 * address must be found with its new device address; before, the entry
 * stayed, and a later region at that address was looked up through the
 * stale one.  White-box: drives the table (region-table.h) directly.
 * malloc() is replaced here; skipped under ASan and valgrind, which
 * replace malloc() themselves.
 */
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "region-table.h"
#include "util.h"
#include "fail-malloc.h"

/* The device address the table gives for [va, va + len), or 0 if none. */
static uint64_t dev_of(const struct region_table *m, uintptr_t va,
                       uint64_t len)
{
    const struct region_ent *e = region_table_find(m, (const void *)va, len);

    return e ? e->dev + (va - e->va) : 0;
}

int main(void)
{
    struct region_table m = { 0 };
    const uintptr_t a = 0x100000, b = 0x200000, c = 0x300000;

    fail_malloc_skip_if_replaced();

    check(region_table_add(&m, (void *)a, 0x1000, 0xa000) == 0);
    check(region_table_add(&m, (void *)b, 0x1000, 0xb000) == 0);
    check(region_table_add(&m, (void *)c, 0x1000, 0xc000) == 0);
    check(dev_of(&m, b + 0x10, 8) == 0xb010);

    /* No memory: b is gone all the same; a and c stay. */
    fail_malloc_all = true;
    region_table_remove(&m, (void *)b, 0x1000);
    check(region_table_add(&m, (void *)b, 0x1000, 0xd000) == -ENOMEM);
    fail_malloc_all = false;
    check(dev_of(&m, b, 8) == 0);
    check(dev_of(&m, b + 0xff8, 8) == 0);
    check(dev_of(&m, a, 0x1000) == 0xa000);
    check(dev_of(&m, c + 0x800, 8) == 0xc800);

    /* Mapped again at the same address: the new device address. */
    check(region_table_add(&m, (void *)b, 0x1000, 0xd000) == 0);
    check(dev_of(&m, b + 0x20, 8) == 0xd020);
    check(dev_of(&m, a + 0x20, 8) == 0xa020);
    check(dev_of(&m, c + 0x20, 8) == 0xc020);

    /* And unmapped again with memory: gone, the others stay. */
    region_table_remove(&m, (void *)b, 0x1000);
    check(dev_of(&m, b, 8) == 0);
    check(dev_of(&m, a, 8) == 0xa000);
    check(dev_of(&m, c, 8) == 0xc000);
    region_table_free(&m);
    return 0;
}
