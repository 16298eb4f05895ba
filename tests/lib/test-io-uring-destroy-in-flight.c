/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: blkio_destroy() with reads still in the kernel (FUSE reads
 * the test's own server holds back, core-fuse.h, and answers 300 ms later
 * from another thread) returns within a bounded time, and once it has
 * returned the kernel no longer writes the read buffers: the caller may
 * reuse or free that memory.  (The driver cancels what it can and waits
 * for the rest; closing the ring alone returns at once and the answer
 * lands in the buffer afterwards.)
 */
#include <pthread.h>
#include <sys/mman.h>

#include "core-fuse.h"

static int64_t now_ms(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void *release_later(void *arg)
{
    usleep(300 * 1000);
    cu_fuse_release(arg);
    return NULL;
}

int main(void)
{
    struct cu_fuse *f;
    struct blkio *b;
    struct blkioq *q;
    struct blkio_completion c;
    uint8_t *buf;
    char why[256];
    pthread_t thr;
    int64_t start, took;

    f = cu_fuse_start(1 << 20, why, sizeof(why));
    if (!f)
        t_skip("no FUSE file system for a read that stays in flight: %s",
               why);
    buf = mmap(NULL, 8192, PROT_READ | PROT_WRITE,
               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(buf != MAP_FAILED);

    b = cu_io_uring(f->file, CU_STARTED);
    q = blkio_get_queue(b, 0);
    CHECK(q != NULL);
    blkioq_read(q, 0, buf, 512, NULL, 0);       /* the file system works */
    c = cu_wait_one(q);
    CHECK_RET(c.ret, 0);

    if (cu_under_valgrind()) {
        /* Valgrind runs no other thread while one waits in
         * io_uring_enter(), so nothing could answer a held read: destroy
         * with unheld reads in flight instead, for the memory checks. */
        printf("under valgrind: reads in flight are not held\n");
        blkioq_read(q, 65536, buf, 4096, NULL, 0);
        blkioq_read(q, 131072, buf + 4096, 4096, NULL, 0);
        /* Submit; an unheld read may already be done (0 or 1 back). */
        CHECK(blkioq_do_io(q, &c, 0, 1, NULL) >= 0);
        blkio_destroy(&b);
        munmap(buf, 8192);
        cu_fuse_stop(f);
        return 0;
    }

    cu_fuse_hold(f);
    blkioq_read(q, 65536, buf, 4096, NULL, 0);
    blkioq_read(q, 131072, buf + 4096, 4096, NULL, 0);
    CHECK_RET(blkioq_do_io(q, &c, 0, 1, NULL), 0);
    cu_fuse_wait_held(f, 1);

    CHECK_RET(pthread_create(&thr, NULL, release_later, f), 0);
    start = now_ms();
    blkio_destroy(&b);
    took = now_ms() - start;
    printf("blkio_destroy with reads in flight took %lld ms\n",
           (long long)took);
    CHECK(took < 8000);

    /* Whatever the server answers now must not reach the buffer. */
    memset(buf, 0xab, 8192);
    CHECK_RET(pthread_join(thr, NULL), 0);
    usleep(200 * 1000);
    for (int i = 0; i < 8192; i++)
        if (buf[i] != 0xab)
            T_FAIL("byte %d of the read buffer changed after "
                   "blkio_destroy() returned (0x%02x)", i, buf[i]);
    munmap(buf, 8192);
    cu_fuse_stop(f);
    return 0;
}
