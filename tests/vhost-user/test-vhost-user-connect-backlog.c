/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: blkio_connect() to a vhost-user socket whose backend never
 * accepts, with its listen backlog full, fails with -ETIMEDOUT at the
 * replies' deadline instead of blocking in connect() for ever.  The
 * backend here is a listening socket of the test's own with a backlog of
 * 0, filled by one connection the test makes first.  Needs the test build
 * (LIBBLKIO_VHOST_USER_REPLY_TIMEOUT_MS, 300 ms in meson).
 */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vu-util.h"

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

int main(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int lfd, filler, filler2, ret;
    struct blkio *b;
    double t0, took;

    CHECK(getenv("LIBBLKIO_VHOST_USER_REPLY_TIMEOUT_MS") != NULL);
    snprintf(sa.sun_path, sizeof(sa.sun_path),
             "/tmp/vu-backlog.%d.sock", (int)getpid());
    unlink(sa.sun_path);
    lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(lfd >= 0);
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(lfd, 0) == 0);
    /* Fill the backlog: connections nobody accepts.  A non-blocking
     * connect tells when it is full (EAGAIN). */
    filler = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(filler >= 0 &&
          connect(filler, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    filler2 = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    CHECK(filler2 >= 0);
    ret = connect(filler2, (struct sockaddr *)&sa, sizeof(sa));
    if (ret == 0)
        t_skip("the kernel queued a second connection on a backlog of 0");
    CHECK(errno == EAGAIN);

    CHECK_RET(blkio_create("virtio-blk-vhost-user", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", sa.sun_path), 0);
    t0 = now_s();
    ret = blkio_connect(b);
    took = now_s() - t0;
    printf("blkio_connect: %d after %.2f s: %s\n", ret, took,
           blkio_get_error_msg());
    CHECK_RET(ret, -ETIMEDOUT);
    if (!strstr(blkio_get_error_msg(), sa.sun_path))
        T_FAIL_MSG("the error does not name the socket: %s",
                   blkio_get_error_msg());
    if (took > 5.0)
        T_FAIL_MSG("connect took %.2f s with a 0.3 s deadline", took);
    blkio_destroy(&b);
    close(filler2);
    close(filler);
    close(lfd);
    unlink(sa.sun_path);
    return 0;
}
