/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: num-entries rules, as in libblkio 1.5: default 128,
 * writable only while connected, > 0 when set; any value up to 32768 starts
 * (it is a minimum: 3 and 100 work and read back as set), larger ones fail
 * start with -EINVAL; a 1-entry ring still carries 100 requests in flight.
 */
#include "util.h"

static struct blkio *connected(const char *path)
{
    struct blkio *b;

    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", path));
    ok(blkio_connect(b));
    return b;
}

int main(void)
{
    const char *path = ut_temp_file(1u << 20);
    static const int bad[] = { 65536, 32769, 1 << 30 };
    static const int good[] = { 3, 100, 32767 };
    struct blkio_completion c[100];
    char buf[100][512];
    struct blkio *b;
    struct blkioq *q;
    int v, got;

    ok(blkio_create("io_uring", &b));
    err(blkio_set_int(b, "num-entries", 64), -ENODEV);
    blkio_destroy(&b);

    b = connected(path);
    ok(blkio_get_int(b, "num-entries", &v));
    check(v == 128);
    err(blkio_set_int(b, "num-entries", 0), -EINVAL);
    err(blkio_set_int(b, "num-entries", -8), -EINVAL);
    ok(blkio_get_int(b, "num-entries", &v));
    check(v == 128);
    blkio_destroy(&b);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        b = connected(path);
        ok(blkio_set_int(b, "num-entries", bad[i]));
        err(blkio_start(b), -EINVAL);
        check(strstr(blkio_get_error_msg(), "num-entries") != NULL);
        /* A failed start leaves it connected: fix it and start. */
        ok(blkio_set_int(b, "num-entries", 32768));
        ok(blkio_start(b));
        blkio_destroy(&b);
    }

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        b = connected(path);
        ok(blkio_set_int(b, "num-entries", good[i]));
        ok(blkio_start(b));
        ok(blkio_get_int(b, "num-entries", &v));
        check(v == good[i]);
        blkio_destroy(&b);
    }

    b = connected(path);
    ok(blkio_set_int(b, "num-entries", 1));
    ok(blkio_start(b));
    ok(blkio_get_int(b, "num-entries", &v));
    check(v == 1);
    err(blkio_set_int(b, "num-entries", 2), -EBUSY);
    q = blkio_get_queue(b, 0);
    for (int i = 0; i < 100; i++) {
        memset(buf[i], i, sizeof(buf[i]));
        blkioq_write(q, (uint64_t)i * 512, buf[i], 512, buf[i], 0);
    }
    for (got = 0; got < 100;) {
        int n = (int)ok(blkioq_do_io(q, c, 1, 100, NULL));
        for (int k = 0; k < n; k++)
            check(c[k].ret == 0);
        got += n;
    }
    for (int i = 0; i < 100; i++) {
        char r[512];
        ut_pread_file(path, r, 512, i * 512);
        check(memcmp(r, buf[i], 512) == 0);
    }
    blkio_destroy(&b);
    return 0;
}
