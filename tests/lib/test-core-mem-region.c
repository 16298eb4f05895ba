/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: memory regions.  Allocation and mapping only after start;
 * allocated regions are aligned, zero-length requests refused, their fd
 * close-on-exec and the memory usable for I/O; mapping twice, overlapping
 * regions and non-zero iova/flags fail; unmapping something not mapped has
 * no effect; max-mem-regions is enforced; destroy releases what is left.
 */
#include <sys/mman.h>

#include "core-util.h"

int main(void)
{
    const char *path = cu_temp_file("disk.img", 1 << 20, 0x66);
    struct blkio *b;
    struct blkioq *q;
    struct blkio_mem_region r = { .fd = -1 }, r2, bad;
    struct blkio_completion c;
    uint64_t align, maxr;
    long page = sysconf(_SC_PAGESIZE);
    bool needs_fd;
    int fl, fds_before;

    b = cu_create("io_uring");
    blkio_destroy(&b);
    fds_before = cu_count_fds();

    /* Not before connect (as in libblkio, -ENODEV); after it, yes. */
    b = cu_io_uring(path, CU_CREATED);
    CHECK_RET(blkio_alloc_mem_region(b, &r, 4096), -ENODEV);
    CHECK(blkio_get_error_msg()[0] != '\0');
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(blkio_alloc_mem_region(b, &r, 4096), 0);
    blkio_free_mem_region(b, &r);
    CHECK_RET(blkio_get_uint64(b, "mem-region-alignment", &align), 0);
    CHECK_RET(blkio_get_uint64(b, "max-mem-regions", &maxr), 0);
    CHECK_RET(blkio_get_bool(b, "needs-mem-region-fd", &needs_fd), 0);
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_queue(b, 0);

    /* Allocate. */
    CHECK(blkio_alloc_mem_region(b, &r, 0) < 0);
    CHECK_RET(blkio_alloc_mem_region(b, &r, 4 * (size_t)page), 0);
    CHECK(r.addr != NULL);
    CHECK(r.len == 4 * (size_t)page);
    CHECK((uintptr_t)r.addr % align == 0);
    CHECK((uintptr_t)r.addr % (uintptr_t)page == 0);
    CHECK(r.iova == 0 && r.flags == 0);
    CHECK(r.fd >= 0);
    fl = fcntl(r.fd, F_GETFD);
    CHECK(fl >= 0 && (fl & FD_CLOEXEC));
    memset(r.addr, 0, r.len);   /* writable */

    /* Map, use, map again, overlap. */
    CHECK_RET(blkio_map_mem_region(b, &r), 0);
    blkioq_read(q, 0, r.addr, 4096, NULL, 0);
    c = cu_wait_one(q);
    CHECK_RET(c.ret, 0);
    CHECK(((unsigned char *)r.addr)[4095] == 0x66);

    CHECK(blkio_map_mem_region(b, &r) < 0);
    CHECK(blkio_get_error_msg()[0] != '\0');
    bad = r;
    bad.addr = (char *)r.addr + page;
    bad.len = (size_t)page;
    bad.fd_offset = page;
    CHECK(blkio_map_mem_region(b, &bad) < 0);       /* inside */
    bad = r;
    bad.len = r.len / 2;
    CHECK(blkio_map_mem_region(b, &bad) < 0);       /* same start */

    /* Unmap; unmapping again or something never mapped is harmless. */
    blkio_unmap_mem_region(b, &r);
    blkio_unmap_mem_region(b, &r);
    bad = r;
    bad.len = (size_t)page;
    blkio_unmap_mem_region(b, &bad);
    /* Mapping works again, and the overlap check saw the unmap. */
    CHECK_RET(blkio_map_mem_region(b, &bad), 0);
    blkio_unmap_mem_region(b, &bad);
    CHECK_RET(blkio_map_mem_region(b, &r), 0);
    blkio_unmap_mem_region(b, &r);

    /* Reserved fields must be zero. */
    bad = r;
    bad.flags = 1;
    CHECK(blkio_map_mem_region(b, &bad) < 0);
    bad = r;
    bad.iova = (uint64_t)page;
    CHECK(blkio_map_mem_region(b, &bad) < 0);
    bad = r;
    bad.len = 0;
    CHECK(blkio_map_mem_region(b, &bad) < 0);

    /* Application memory without an fd, when the driver allows it. */
    if (!needs_fd) {
        void *mem = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        struct blkio_mem_region user = { .addr = mem,
                                         .len = 2 * (size_t)page,
                                         .fd = -1 };

        CHECK(mem != MAP_FAILED);
        CHECK_RET(blkio_map_mem_region(b, &user), 0);
        blkioq_read(q, 0, mem, 512, NULL, 0);
        c = cu_wait_one(q);
        CHECK_RET(c.ret, 0);
        blkio_unmap_mem_region(b, &user);
        munmap(mem, 2 * (size_t)page);
    }

    /* max-mem-regions, when it is small enough to reach. */
    if (maxr > 0 && maxr <= 256) {
        struct blkio_mem_region *v = calloc(maxr + 1, sizeof(*v));

        CHECK(v != NULL);
        for (uint64_t i = 0; i <= maxr; i++)
            CHECK_RET(blkio_alloc_mem_region(b, &v[i], (size_t)page), 0);
        for (uint64_t i = 0; i < maxr; i++)
            CHECK_RET(blkio_map_mem_region(b, &v[i]), 0);
        CHECK(blkio_map_mem_region(b, &v[maxr]) < 0);
        blkio_unmap_mem_region(b, &v[0]);
        CHECK_RET(blkio_map_mem_region(b, &v[maxr]), 0);
        for (uint64_t i = 1; i <= maxr; i++)
            blkio_unmap_mem_region(b, &v[i]);
        for (uint64_t i = 0; i <= maxr; i++)
            blkio_free_mem_region(b, &v[i]);
        free(v);
    } else {
        printf("note: max-mem-regions is %llu, limit not exercised\n",
               (unsigned long long)maxr);
    }

    /* Free, allocate again, and leave a mapped and an unmapped region
     * for destroy to release. */
    blkio_free_mem_region(b, &r);
    CHECK_RET(blkio_alloc_mem_region(b, &r, (size_t)page), 0);
    CHECK_RET(blkio_map_mem_region(b, &r), 0);
    CHECK_RET(blkio_alloc_mem_region(b, &r2, 2 * (size_t)page), 0);
    CHECK(r2.addr != r.addr && r2.fd != r.fd);
    blkio_destroy(&b);
    CHECK_RET(cu_count_fds(), fds_before);
    return T_EXIT_PASS;
}
