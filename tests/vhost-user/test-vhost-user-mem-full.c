/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: regions mapped up to the backend's limit.  One of its
 * slots holds the library's rings, so the region that would need one
 * more than it has is refused with -ENOSPC, and the device keeps working
 * through every region mapped before it (a backend asked for more slots
 * than it has gives up on the whole device: libvhost-user panics).  With
 * and without VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS.
 */
#include "vu-util.h"

#define RLEN (64 * 1024)
#define MAXREG 512

int main(void)
{
    struct blkio *b = vu_start(1, 0);
    struct blkioq *q = blkio_get_queue(b, 0);
    static struct blkio_mem_region reg[MAXREG];
    uint64_t max = 0;
    int n = 0, r;

    CHECK(q);
    CHECK_RET(blkio_get_uint64(b, "max-mem-regions", &max), 0);
    CHECK(max >= 2 && max < MAXREG);
    for (;;) {
        CHECK_RET(blkio_alloc_mem_region(b, &reg[n], RLEN), 0);
        r = blkio_map_mem_region(b, &reg[n]);
        if (r < 0)
            break;
        n++;
        CHECK((uint64_t)n < max);
    }
    if (r != -ENOSPC)
        T_FAIL_MSG("region %d: %s, expected ENOSPC", n + 1, strerror(-r));
    printf("max-mem-regions %llu: %d regions mapped, the next refused: %s\n",
           (unsigned long long)max, n, blkio_get_error_msg());
    CHECK(n >= 1);
    blkio_free_mem_region(b, &reg[n]);

    /* Still serving, through the first and the last region. */
    t_fill_random(reg[0].addr, RLEN, 1);
    blkioq_write(q, 0, reg[0].addr, RLEN, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    memset(reg[n - 1].addr, 0, RLEN);
    blkioq_read(q, 0, reg[n - 1].addr, RLEN, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    CHECK(memcmp(reg[0].addr, reg[n - 1].addr, RLEN) == 0);
    for (int i = 0; i < n; i++)
        t_region_free(b, &reg[i]);
    blkio_destroy(&b);
    return 0;
}
