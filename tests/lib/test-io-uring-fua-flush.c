/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: FUA writes (RWF_DSYNC), FUA write zeroes (fallocate then
 * fdatasync) and flush complete successfully and the data is there;
 * FUA on a read is refused with -EINVAL.
 */
#include "util.h"

int main(void)
{
    const char *path = ut_temp_file(1u << 20);
    struct blkio *b = ut_start(path, false, false);
    struct blkioq *q = blkio_get_queue(b, 0);
    char wbuf[8192], rbuf[8192];
    bool fua_native, flush_needed;

    ok(blkio_get_bool(b, "supports-fua-natively", &fua_native));
    check(!fua_native);
    ok(blkio_get_bool(b, "flush-needed", &flush_needed));
    check(flush_needed);

    t_fill_random(wbuf, sizeof(wbuf), 3);
    blkioq_write(q, 4096, wbuf, sizeof(wbuf), wbuf, BLKIO_REQ_FUA);
    check(ut_wait1(q, wbuf) == 0);
    ut_pread_file(path, rbuf, sizeof(rbuf), 4096);
    check(memcmp(wbuf, rbuf, sizeof(rbuf)) == 0);

    blkioq_write_zeroes(q, 4096, 4096, rbuf, BLKIO_REQ_FUA);
    check(ut_wait1(q, rbuf) == 0);
    blkioq_flush(q, q, 0);
    check(ut_wait1(q, q) == 0);
    ut_pread_file(path, rbuf, sizeof(rbuf), 4096);
    check(t_is_zero(rbuf, 4096));
    check(memcmp(wbuf + 4096, rbuf + 4096, 4096) == 0);

    blkioq_read(q, 0, rbuf, 512, NULL, BLKIO_REQ_FUA);
    check(ut_wait1(q, NULL) == -EINVAL);

    blkio_destroy(&b);
    return 0;
}
