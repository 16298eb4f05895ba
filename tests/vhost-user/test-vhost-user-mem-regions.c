/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: mapping and unmapping memory regions while started updates
 * the backend: I/O works through regions mapped after start, a region
 * unmapped is refused (-EFAULT) and works again when mapped again, and
 * many regions can be mapped at once.
 */
#include "vu-util.h"

#define NREG 16
#define RLEN (256 * 1024)

static void rw_check(struct blkioq *q, uint8_t *w, uint8_t *r, uint64_t off,
                     uint64_t seed)
{
    t_fill_random(w, RLEN, seed);
    memset(r, 0, RLEN);
    blkioq_write(q, off, w, RLEN, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    blkioq_read(q, off, r, RLEN, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    if (memcmp(w, r, RLEN))
        T_FAIL_MSG("data mismatch at offset %llu", (unsigned long long)off);
}

int main(void)
{
    struct blkio *b = vu_start(1, 0);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_mem_region reg[NREG];
    uint64_t max = 0;
    int n;

    CHECK(q);
    CHECK_RET(blkio_get_uint64(b, "max-mem-regions", &max), 0);
    CHECK(max >= 8);
    /* One slot holds the library's rings; keep one for `extra` below. */
    n = max - 2 < NREG ? (int)max - 2 : NREG;
    for (int i = 0; i < n; i++) {
        t_region(b, RLEN, &reg[i]);
        if (i > 0)
            rw_check(q, reg[i - 1].addr, reg[i].addr,
                     (uint64_t)i * RLEN, (uint64_t)i);
    }

    /* Unmap one: the core refuses it, the others keep working. */
    blkio_unmap_mem_region(b, &reg[3]);
    blkioq_read(q, 0, reg[3].addr, 4096, NULL, 0);
    CHECK_RET(vu_wait_one(q), -EFAULT);
    rw_check(q, reg[4].addr, reg[5].addr, 0, 99);
    CHECK(n >= 6);

    /* Unmap and map again, several times. */
    for (int k = 0; k < 5; k++) {
        CHECK_RET(blkio_map_mem_region(b, &reg[3]), 0);
        rw_check(q, reg[3].addr, reg[1].addr, 4096 * 1024, 100 + k);
        rw_check(q, reg[1].addr, reg[3].addr, 4096 * 1024, 200 + k);
        blkio_unmap_mem_region(b, &reg[3]);
    }

    /* A fresh allocation after unmaps. */
    {
        struct blkio_mem_region extra;
        t_region(b, 2 * RLEN, &extra);
        rw_check(q, extra.addr, reg[2].addr, 8192 * 1024, 7);
        blkio_unmap_mem_region(b, &extra);
        blkio_free_mem_region(b, &extra);
    }
    blkio_destroy(&b);
    return 0;
}
