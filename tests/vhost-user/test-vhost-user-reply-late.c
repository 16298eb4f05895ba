/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: a control reply that misses its deadline loses the
 * connection.  The backend is stopped (SIGSTOP) while a memory region is
 * mapped: the map fails with -ETIMEDOUT.  When the backend continues, its
 * late reply must not be taken for the answer to the next request: the
 * next map fails (-ENOTCONN) and queued I/O fails fast instead of
 * hanging.  Needs the test build (LIBBLKIO_VHOST_USER_REPLY_TIMEOUT_MS).
 */
#include <errno.h>
#include <signal.h>

#include "vu-util.h"

int main(void)
{
    pid_t pid = (pid_t)vu_env_u64("VU_QSD_PID");
    struct blkio *b = vu_start(1, 0);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_mem_region r1, r2;
    int ret;

    CHECK(pid > 0 && q);
    CHECK(getenv("LIBBLKIO_VHOST_USER_REPLY_TIMEOUT_MS") != NULL);
    CHECK_RET(blkio_alloc_mem_region(b, &r1, 65536), 0);
    CHECK_RET(blkio_alloc_mem_region(b, &r2, 65536), 0);

    CHECK(kill(pid, SIGSTOP) == 0);
    ret = blkio_map_mem_region(b, &r1);
    CHECK(kill(pid, SIGCONT) == 0);
    CHECK_RET(ret, -ETIMEDOUT);
    usleep(200 * 1000);     /* the late reply arrives */

    ret = blkio_map_mem_region(b, &r2);
    if (ret == 0)
        T_FAIL("a map after a missed reply succeeded: the late reply was "
               "read as its answer");
    blkioq_read(q, 0, r2.addr, 4096, NULL, 0);
    ret = vu_wait_one(q);
    if (ret == 0)
        T_FAIL("I/O after a lost connection succeeded");
    blkio_free_mem_region(b, &r1);
    blkio_free_mem_region(b, &r2);
    blkio_destroy(&b);
    return 0;
}
