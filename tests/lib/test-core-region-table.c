/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: mapping and unmapping a memory region while other threads
 * do I/O through their own queues on another region.  The manual allows
 * this (it only forbids changing a region that requests are using); the
 * I/O path looks regions up in a table that each change replaces, so
 * every read must succeed, no lookup may touch a freed table (ASan and
 * valgrind stages), and the replaced tables must be freed as the changes
 * go, not kept until blkio_destroy().  White-box: needs-mem-regions is
 * switched on for io_uring, so that its requests take the region lookup.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "core-util.h"
#include "internal.h"

#define READERS 2
#define CHANGES 4000
#define MIN_READS 200   /* each reader's, while the changes go on */

struct reader {
    struct blkioq *q;
    unsigned char *buf;         /* 4 KiB inside region a */
    atomic_bool *stop;
    atomic_ulong reads;
    int bad_ret;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;

    while (!atomic_load(r->stop)) {
        struct blkio_completion c;

        blkioq_read(r->q, (r->reads % 64) * 4096, r->buf, 4096, NULL, 0);
        c = cu_wait_one(r->q);
        if (c.ret != 0 && r->bad_ret == 0)
            r->bad_ret = c.ret;
        r->reads++;
    }
    return NULL;
}

int main(void)
{
    const char *path = cu_temp_file("disk.img", 1 << 20, 0x5a);
    struct blkio *b = cu_io_uring(path, CU_CONNECTED);
    struct blkio_mem_region a, r;
    struct reader rd[READERS];
    pthread_t th[READERS];
    atomic_bool stop = false;
    unsigned most = 0;
    int n;
    bool reclaims = region_barrier_all_threads();

    b->needs_mem_regions = true;
    CHECK_RET(blkio_set_int(b, "num-queues", READERS), 0);
    CHECK_RET(blkio_start(b), 0);
    CHECK_RET(blkio_alloc_mem_region(b, &a, READERS * 4096), 0);
    CHECK_RET(blkio_alloc_mem_region(b, &r, 4096), 0);
    CHECK_RET(blkio_map_mem_region(b, &a), 0);

    /* A buffer outside every region is still refused. */
    {
        struct blkioq *q = blkio_get_queue(b, 0);

        blkioq_read(q, 0, r.addr, 4096, NULL, 0);
        CHECK_RET(cu_wait_one(q).ret, -EFAULT);
    }

    for (int i = 0; i < READERS; i++) {
        rd[i] = (struct reader){
            .q = blkio_get_queue(b, i),
            .buf = (unsigned char *)a.addr + i * 4096,
            .stop = &stop,
        };
        CHECK(pthread_create(&th[i], NULL, reader_main, &rd[i]) == 0);
    }
    /* The writer pauses now and then, so that the readers keep up on
     * two CPUs and under valgrind's one-thread-at-a-time scheduler. */
    for (n = 0; n < CHANGES || atomic_load(&rd[0].reads) < MIN_READS ||
                atomic_load(&rd[READERS - 1].reads) < MIN_READS; n++) {
        CHECK(n < 10 * CHANGES);
        CHECK_RET(blkio_map_mem_region(b, &r), 0);
        blkio_unmap_mem_region(b, &r);
        if (region_table_retired(&b->region_tab) > most)
            most = region_table_retired(&b->region_tab);
        if (n % 32 == 0 || n >= CHANGES)
            usleep(n >= CHANGES ? 1000 : 50);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < READERS; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        CHECK_RET(rd[i].bad_ret, 0);
        CHECK(rd[i].reads >= MIN_READS);
        CHECK(rd[i].buf[0] == 0x5a && rd[i].buf[4095] == 0x5a);
    }
    printf("%d map/unmap pairs beside %lu + %lu reads; at most %u old tables "
           "kept\n", n, atomic_load(&rd[0].reads), atomic_load(&rd[1].reads),
           most);

    if (reclaims) {
        /* Each change frees what no reader can hold.  Tables are kept
         * only while a reader is inside a lookup (longer when its thread
         * is preempted there), so far fewer than the 2n made, and none
         * once the readers are gone. */
        CHECK(most < (unsigned)n);
        CHECK_RET(blkio_map_mem_region(b, &r), 0);
        blkio_unmap_mem_region(b, &r);
        CHECK(region_table_retired(&b->region_tab) == 0);
    } else {
        printf("no private expedited membarrier here: old tables are "
               "kept until blkio_destroy() (not checked)\n");
    }

    blkio_unmap_mem_region(b, &a);
    blkio_free_mem_region(b, &a);
    blkio_free_mem_region(b, &r);
    blkio_destroy(&b);
    return T_EXIT_PASS;
}
