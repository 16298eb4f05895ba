/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the IOVA allocator of the VFIO and vhost-vdpa drivers
 * (lib/virtio/iova.c) on the host, without a device: IOVAs come from the
 * IOMMU's usable ranges
 * (a 39-bit VT-d with its MSI hole here), first fit, page-aligned, never
 * 0, never overlapping, freed space reused; a mapping that fits nowhere
 * fails with -ENOSPC; a random sequence of maps and unmaps keeps all of
 * that true.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"
#include "virtio/iova.h"
#include "../common/test-util.h"

#define PG 4096ull
#define HOLE_START 0xfee00000ull            /* MSI window */
#define HOLE_END   0xfeefffffull
#define TOP        ((1ull << 39) - 1)

static void setup(struct iova_space *d)
{
    struct iova_span *r = calloc(2, sizeof(*r));

    CHECK(r);
    *d = (struct iova_space){ 0 };
    /* Given out of order: the allocator sorts them. */
    r[0] = (struct iova_span){ HOLE_END + 1, TOP };
    r[1] = (struct iova_span){ 0, HOLE_START - 1 };
    CHECK(iova_space_take_ranges(d, r, 2) == 0);
}

static int try_reserve(struct iova_space *d, uint64_t va, uint64_t len,
                       uint64_t *iova)
{
    return iova_reserve(d, "test", va, len, iova);
}

static uint64_t reserve(struct iova_space *d, uint64_t va, uint64_t len)
{
    uint64_t iova = 0;

    CHECK(try_reserve(d, va, len, &iova) == 0);
    return iova;
}

/* Sorted, disjoint, page-aligned, inside a usable range, never 0. */
static void check_invariants(const struct iova_space *d)
{
    for (unsigned i = 0; i < d->nmaps; i++) {
        const struct iova_map *m = &d->maps[i];
        uint64_t last = m->iova + m->len - 1;
        bool inside = false;

        CHECK(m->iova != 0 && m->iova % PG == 0);
        for (unsigned r = 0; r < d->nranges; r++)
            inside |= m->iova >= d->ranges[r].start &&
                      last <= d->ranges[r].end;
        CHECK(inside);
        if (i > 0)
            CHECK(d->maps[i - 1].iova + d->maps[i - 1].len <= m->iova);
    }
}

static void fixed_sequence(void)
{
    struct iova_space d;
    uint64_t iova, big = HOLE_START - 6 * PG;

    setup(&d);
    CHECK_EQ(reserve(&d, 0x7f0000000000, 2 * PG), PG);     /* A */
    CHECK_EQ(reserve(&d, 0x7f0000100000, PG), 3 * PG);     /* B */
    CHECK(iova_release(&d, 0x7f0000000000, 2 * PG, &iova) == 0);
    CHECK_EQ(iova, PG);
    CHECK_EQ(reserve(&d, 0x7f0000200000, PG), PG);         /* reuse */
    CHECK_EQ(reserve(&d, 0x7f0000300000, 2 * PG), 4 * PG); /* hole too small */
    /* Exactly what is left below the MSI window. */
    CHECK_EQ(reserve(&d, 0x7e0000000000, big), 6 * PG);
    CHECK_EQ(reserve(&d, 0x7f0000400000, PG), 2 * PG);     /* the last hole */
    /* The first range is full: the one above the window. */
    CHECK_EQ(reserve(&d, 0x7f0000500000, 2 * PG), HOLE_END + 1);
    /* Larger than the address width: nowhere. */
    CHECK(try_reserve(&d, 0x7d0000000000, 1ull << 40, &iova) ==
          -ENOSPC);
    CHECK(iova_release(&d, 0x1234000, PG, &iova) == -ENOENT);
    CHECK(try_reserve(&d, 0x7f0000600000, 0, &iova) == -EINVAL);
    check_invariants(&d);
    iova_space_free(&d);

    /* Overlapping or empty ranges are refused. */
    {
        struct iova_span *r = calloc(2, sizeof(*r));

        CHECK(r);
        r[0] = (struct iova_span){ 0x1000, 0x5000 };
        r[1] = (struct iova_span){ 0x4000, 0x9000 };
        CHECK(iova_space_take_ranges(&d, r, 2) == -EIO);
        CHECK(iova_space_set_range(&d, 2, 1) == -EINVAL);
        /* One range, as vhost-vdpa gives it. */
        CHECK(iova_space_set_range(&d, 0, TOP) == 0);
        CHECK_EQ(reserve(&d, 0x7f0000000000, PG), PG);
        CHECK(try_reserve(&d, 0x7e0000000000, TOP, &iova) == -ENOSPC);
        iova_space_free(&d);
    }
}

static void random_sequence(void)
{
    enum { N = 64 };
    struct { uint64_t va, len; bool live; } m[N] = { { 0 } };
    struct iova_space d;
    unsigned seed = 12345;

    setup(&d);
    for (int step = 0; step < 4000; step++) {
        unsigned k = (unsigned)rand_r(&seed) % N;
        uint64_t iova;

        if (m[k].live) {
            CHECK(iova_release(&d, m[k].va, m[k].len, &iova) == 0);
            m[k].live = false;
        } else {
            m[k].va = 0x7f0000000000ull + (uint64_t)k * (1ull << 32);
            m[k].len = (1 + (uint64_t)rand_r(&seed) % 4096) * PG;
            if (rand_r(&seed) % 16 == 0)
                m[k].len = (1 + (uint64_t)rand_r(&seed) % 64) << 30;
            if (try_reserve(&d, m[k].va, m[k].len, &iova) == 0)
                m[k].live = true;
        }
        check_invariants(&d);
    }
    iova_space_free(&d);
}

int main(void)
{
    CHECK(sysconf(_SC_PAGESIZE) == (long)PG);
    fixed_sequence();
    random_sequence();
    printf("IOVA allocator keeps inside the usable ranges\n");
    return 0;
}
