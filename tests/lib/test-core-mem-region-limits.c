/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the memory-region limits a driver can impose, which the
 * io_uring driver does not (its max-mem-regions is huge and its
 * mem-region-alignment 1).  White-box: after connect, the test sets them in
 * struct blkio through internal.h, as a driver's connect() would, and
 * checks the core enforces them: max-mem-regions mapped at a time,
 * allocations aligned to a large mem-region-alignment and sized in
 * multiples of it, misaligned maps refused, needs-mem-region-fd requiring
 * an fd.
 */
#include <sys/mman.h>

#include "internal.h"
#include "core-util.h"

#define ALIGN (2u << 20)   /* above the page size: the reserve-and-trim path */

int main(void)
{
    const char *path = cu_temp_file("disk.img", 1 << 20, 0x21);
    struct blkio *b = cu_io_uring(path, CU_CONNECTED);
    struct blkio_mem_region r[4], big, bad;
    struct blkio_completion c;
    struct blkioq *q;
    uint64_t v;
    int fds_before;

    b->max_mem_regions = 3;
    b->mem_region_alignment = ALIGN;
    b->needs_mem_region_fd = true;
    CHECK_RET(blkio_get_uint64(b, "max-mem-regions", &v), 0);
    CHECK_RET(v, 3);
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_queue(b, 0);
    fds_before = cu_count_fds();

    /* Sizes must be multiples of the alignment. */
    CHECK_RET(blkio_alloc_mem_region(b, &bad, 4096), -EINVAL);
    CHECK_MSG("mem-region-alignment");
    CHECK_RET(blkio_alloc_mem_region(b, &bad, ALIGN + 4096), -EINVAL);

    for (int i = 0; i < 4; i++) {
        CHECK_RET(blkio_alloc_mem_region(b, &r[i], ALIGN), 0);
        CHECK((uintptr_t)r[i].addr % ALIGN == 0);
        CHECK(r[i].len == ALIGN);
        memset(r[i].addr, i, 4096);
    }
    CHECK_RET(blkio_alloc_mem_region(b, &big, 2 * (size_t)ALIGN), 0);
    CHECK((uintptr_t)big.addr % ALIGN == 0);
    memset(big.addr, 0, big.len);   /* all of it is mapped */

    /* Three fit, the fourth does not until one is unmapped. */
    for (int i = 0; i < 3; i++)
        CHECK_RET(blkio_map_mem_region(b, &r[i]), 0);
    CHECK(blkio_map_mem_region(b, &r[3]) < 0);
    CHECK_MSG("max-mem-regions");
    blkio_unmap_mem_region(b, &r[1]);
    CHECK_RET(blkio_map_mem_region(b, &r[3]), 0);
    CHECK(blkio_map_mem_region(b, &r[1]) < 0);

    /* I/O into a mapped region. */
    blkioq_read(q, 0, r[3].addr, 4096, NULL, 0);
    c = cu_wait_one(q);
    CHECK_RET(c.ret, 0);
    CHECK(((unsigned char *)r[3].addr)[0] == 0x21);

    /* Misaligned address or length, and no fd, are refused. */
    blkio_unmap_mem_region(b, &r[3]);
    bad = big;
    bad.addr = (char *)big.addr + 4096;
    bad.len = ALIGN;
    bad.fd_offset = 4096;
    CHECK_RET(blkio_map_mem_region(b, &bad), -EINVAL);
    bad = big;
    bad.len = ALIGN + 4096;
    CHECK_RET(blkio_map_mem_region(b, &bad), -EINVAL);
    bad = big;
    bad.fd = -1;
    CHECK_RET(blkio_map_mem_region(b, &bad), -EINVAL);
    CHECK_MSG("needs-mem-region-fd");
    CHECK_RET(blkio_map_mem_region(b, &big), 0);

    /* Free what is unmapped; destroy takes care of the rest, fds too. */
    blkio_free_mem_region(b, &r[1]);
    blkio_free_mem_region(b, &r[3]);
    blkio_destroy(&b);
    CHECK(cu_count_fds() < fds_before);
    return T_EXIT_PASS;
}
