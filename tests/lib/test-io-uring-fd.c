/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the fd property.  -1 is "not set"; any other value is taken,
 * as by libblkio 1.5's io_uring, and counts as set: another negative one is
 * a bad file descriptor at connect, and path and fd together fail connect
 * (an empty path is no path, as in 1.5)
 * without closing the fd; at connect read-only and direct follow the fd's
 * status flags; a successful connect passes ownership (destroy closes it), while
 * an instance destroyed before connect leaves the fd alone.
 */
#include "util.h"

static bool fd_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

int main(void)
{
    const char *path = ut_temp_file(1u << 20);
    struct blkio *b;
    struct blkioq *q;
    char buf[512];
    bool v;
    int fd, got;

    /* -1 is "not set"; libblkio 1.5 takes any value, and any other
     * negative one is a bad file descriptor at connect (conformance:
     * lifecycle). */
    ok(blkio_create("io_uring", &b));
    ok(blkio_set_int(b, "fd", -7));
    t_expect_int(b, "fd", -7);
    err(blkio_connect(b), -EBADF);
    ok(blkio_set_str(b, "path", path));
    err(blkio_connect(b), -EINVAL);     /* a negative fd is still set */
    check(strstr(blkio_get_error_msg(), "'path' and 'fd'") != NULL);
    blkio_destroy(&b);
    ok(blkio_create("io_uring", &b));
    err(blkio_connect(b), -EINVAL);     /* neither path nor fd */
    ok(blkio_set_str(b, "path", ""));   /* empty is not set (as in 1.5) */
    err(blkio_connect(b), -EINVAL);
    check(strstr(blkio_get_error_msg(), "must be set") != NULL);
    ok(blkio_set_int(b, "fd", -1));
    ok(blkio_set_str(b, "path", path));
    ok(blkio_connect(b));               /* path only */
    blkio_destroy(&b);

    /* An empty path beside an fd is no path: the fd is used. */
    fd = open(path, O_RDWR | O_CLOEXEC);
    check(fd >= 0);
    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", ""));
    ok(blkio_set_int(b, "fd", fd));
    ok(blkio_connect(b));
    {
        char *s = NULL;

        ok(blkio_get_str(b, "path", &s));
        check(s && strcmp(s, "") == 0);
        free(s);
    }
    blkio_destroy(&b);                  /* closes fd: it was handed over */
    check(!fd_open(fd));

    /* Not connected: the fd stays the caller's. */
    fd = open(path, O_RDWR | O_CLOEXEC);
    check(fd >= 0);
    ok(blkio_create("io_uring", &b));
    ok(blkio_set_int(b, "fd", fd));
    ok(blkio_set_str(b, "path", path));
    err(blkio_connect(b), -EINVAL);
    blkio_destroy(&b);
    check(fd_open(fd));

    /* Read-only fd, instance says read-write: the fd wins. */
    close(fd);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    check(fd >= 0);
    ok(blkio_create("io_uring", &b));
    ok(blkio_set_int(b, "fd", fd));
    ok(blkio_set_bool(b, "read-only", false));
    ok(blkio_set_bool(b, "direct", true));
    ok(blkio_connect(b));
    ok(blkio_get_bool(b, "read-only", &v));
    check(v);
    ok(blkio_get_bool(b, "direct", &v));
    check(!v);
    ok(blkio_get_int(b, "fd", &got));
    check(got == fd);
    ok(blkio_start(b));
    q = blkio_get_queue(b, 0);
    blkioq_read(q, 0, buf, sizeof(buf), NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    blkioq_write(q, 0, buf, sizeof(buf), NULL, 0);
    check(ut_wait1(q, NULL) == -EBADF);
    blkio_destroy(&b);
    check(!fd_open(fd));

    /* O_DIRECT fd: direct becomes true, and so does the alignment. */
    fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
        printf("note: O_DIRECT not supported here, part skipped\n");
        return 0;
    }
    ok(blkio_create("io_uring", &b));
    ok(blkio_set_int(b, "fd", fd));
    ok(blkio_set_bool(b, "read-only", true));
    ok(blkio_connect(b));
    ok(blkio_get_bool(b, "direct", &v));
    check(v);
    ok(blkio_get_bool(b, "read-only", &v));
    check(!v);
    ok(blkio_get_int(b, "request-alignment", &got));
    check(got > 1);
    blkio_destroy(&b);
    check(!fd_open(fd));
    return 0;
}
