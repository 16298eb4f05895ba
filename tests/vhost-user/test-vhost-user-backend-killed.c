/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the backend is killed (SIGKILL) with requests in flight on
 * regular and poll queues.  Every request completes promptly, with an
 * error unless it finished before the kill; later requests fail at once;
 * nothing hangs and blkio_destroy() returns.
 */
#include <signal.h>

#include "vu-util.h"

#define DEPTH 64

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* Keep DEPTH requests going on q until the deadline; return how many
 * failed.  The first call kills the backend part way through. */
static int drain(struct blkioq *q, uint8_t *buf, int inflight)
{
    struct blkio_completion c[DEPTH];
    struct timespec t = { .tv_sec = 10 };
    int failed = 0;
    double t0 = now();

    while (inflight > 0) {
        int r = blkioq_do_io(q, c, 1, DEPTH, &t);

        if (r < 0)
            T_FAIL_MSG("blkioq_do_io after the kill: %s", strerror(-r));
        for (int i = 0; i < r; i++) {
            if (c[i].ret != 0) {
                if (c[i].ret != -ENOTCONN && c[i].ret != -EIO)
                    T_FAIL_MSG("unexpected error %s", strerror(-c[i].ret));
                failed++;
            }
        }
        inflight -= r;
    }
    if (now() - t0 > 5)
        T_FAIL_MSG("completing after the kill took %.1f s", now() - t0);
    (void)buf;
    return failed;
}

int main(void)
{
    pid_t pid = (pid_t)vu_env_u64("VU_QSD_PID");
    struct blkio *b = vu_start(1, 1);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkioq *pq = blkio_get_poll_queue(b, 0);
    struct blkio_mem_region r;
    uint8_t *buf = t_region(b, 2 * DEPTH * 65536, &r);
    int failed;

    CHECK(pid > 0 && q && pq);
    /* Requests in flight on both queues... */
    for (int i = 0; i < DEPTH; i++) {
        blkioq_write(q, (uint64_t)i * 65536, buf + i * 65536, 65536, NULL, 0);
        blkioq_read(pq, (uint64_t)i * 65536, buf + (DEPTH + i) * 65536,
                    65536, NULL, 0);
    }
    CHECK(blkioq_do_io(pq, NULL, 0, 0, NULL) >= 0);
    /* Let the first one finish, so the kill lands in the middle... */
    CHECK_RET(vu_wait_one(q), 0);
    /* ...and the backend dies. */
    CHECK(kill(pid, SIGKILL) == 0);
    for (int i = 0; i < 8; i++)
        blkioq_write(q, 0, buf, 4096, NULL, 0);

    /* The poll queue first: it must notice the hangup by itself. */
    failed = drain(pq, buf, DEPTH);
    printf("poll queue: %d of %d requests failed\n", failed, DEPTH);
    failed = drain(q, buf, DEPTH - 1 + 8);
    printf("regular queue: %d of %d requests failed\n", failed, DEPTH - 1 + 8);
    CHECK(failed >= 8);

    /* Afterwards: prompt failure. */
    blkioq_read(q, 0, buf, 4096, NULL, 0);
    CHECK(vu_wait_one(q) < 0);
    blkioq_read(pq, 0, buf, 4096, NULL, 0);
    CHECK(vu_wait_one(pq) < 0);
    blkio_unmap_mem_region(b, &r);
    blkio_destroy(&b);
    return 0;
}
