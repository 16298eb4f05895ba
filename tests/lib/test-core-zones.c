/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: zoned storage requests on a device that is not zoned (the
 * io_uring driver on a regular file) fail with -ENOTSUP, each exactly once
 * and with an error_msg, and leave the queue usable.
 */
#include "core-util.h"

int main(void)
{
    const char *path = cu_temp_file("disk.img", 1 << 20, 0);
    struct blkio *b = cu_io_uring(path, CU_STARTED);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_zone zones[4];
    struct blkio_completion c[16];
    struct timespec t = { .tv_sec = 10 };
    bool seen[9] = { false };
    static char buf[512];
    int n;

    CHECK(q != NULL);
    memset(zones, 0xee, sizeof(zones));
    blkioq_report_zones(q, 0, zones, 4, (void *)1, 0);
    blkioq_open_zone(q, 0, (void *)2, 0);
    blkioq_close_zone(q, 0, (void *)3, 0);
    blkioq_finish_zone(q, 0, (void *)4, 0);
    blkioq_reset_zone(q, 0, (void *)5, 0);
    blkioq_open_all_zones(q, (void *)6, 0);
    blkioq_close_all_zones(q, (void *)7, 0);
    blkioq_finish_all_zones(q, (void *)8, 0);
    blkioq_reset_all_zones(q, (void *)9, 0);   /* 9 requests */

    n = blkioq_do_io(q, c, 9, 16, &t);
    CHECK_RET(n, 9);
    for (int i = 0; i < n; i++) {
        uintptr_t u = (uintptr_t)c[i].user_data;

        CHECK(u >= 1 && u <= 9);
        CHECK(!seen[u - 1]);
        seen[u - 1] = true;
        if (c[i].ret != -ENOTSUP)
            T_FAIL("zone request %d: ret %d, expected -ENOTSUP", (int)u,
                   c[i].ret);
        CHECK(c[i].error_msg != NULL);
    }
    /* The zone array was not touched. */
    CHECK(zones[0].start == 0xeeeeeeeeeeeeeeeeull);
    CHECK_RET(blkioq_do_io(q, c, 0, 16, NULL), 0);

    blkioq_read(q, 0, buf, sizeof(buf), NULL, 0);
    c[0] = cu_wait_one(q);
    CHECK_RET(c[0].ret, 0);
    blkio_destroy(&b);
    return T_EXIT_PASS;
}
