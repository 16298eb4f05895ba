/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: failures of the vhost-user control socket's system calls
 * (wrapped here, on the main thread only) against a real backend.
 *  1. sendmsg() short of memory (ENOMEM) sends nothing: blkio_start()
 *     fails, the stream is still in step, and starting again works, with
 *     I/O.  (Before, the device was marked dead while the socket went on:
 *     start then "worked" and every request failed with ENOTCONN.)
 *  2. poll() or recv() short of memory while a reply is due: the wait goes
 *     on, and blkio_map_mem_region() succeeds.  (Before, poll()'s error
 *     ended the call while its reply was still coming: the next call read
 *     that stale reply as its own.)
 *  3. recv() failing for good (EIO) while a reply is due: the call fails,
 *     and the connection is given up on, so the next call fails at once
 *     with -ENOTCONN instead of reading the stale reply as its own.  A new
 *     instance then works.
 *  4. A region whose removal the backend never got (sendmsg() short of
 *     memory): the backend may still map it, and memory mapped at that
 *     address later would reach it as the old pages (requests then read
 *     and wrote stale memory).  The connection is given up: requests fail
 *     with -ENOTCONN.  (Before, nothing was said and I/O went on.)
 * Run with and without mem slots (REM_MEM_REG, or a whole SET_MEM_TABLE).
 */
#include <blkio.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vu-util.h"

enum fn { FN_NONE, FN_SENDMSG, FN_POLL, FN_RECV };

static enum fn fail_fn;     /* fail the next call of this function ... */
static int fail_errno;      /* ... with this errno */

/* Only the main thread's calls fail, and only it reads the switch: the
 * library's connection-watch thread polls the same socket. */
static bool fail_now(enum fn fn)
{
    if (gettid() != getpid() || fail_fn != fn)
        return false;
    fail_fn = FN_NONE;
    errno = fail_errno;
    return true;
}

static void *real_fn(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);

    CHECK(fn != NULL);
    return fn;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    static ssize_t (*real)(int, const struct msghdr *, int);

    if (!real)
        real = (ssize_t (*)(int, const struct msghdr *, int))
            real_fn("sendmsg");
    return fail_now(FN_SENDMSG) ? -1 : real(fd, msg, flags);
}

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    static int (*real)(struct pollfd *, nfds_t, int);

    if (!real)
        real = (int (*)(struct pollfd *, nfds_t, int))real_fn("poll");
    return fail_now(FN_POLL) ? -1 : real(fds, n, timeout);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    static ssize_t (*real)(int, void *, size_t, int);

    if (!real)
        real = (ssize_t (*)(int, void *, size_t, int))real_fn("recv");
    return fail_now(FN_RECV) ? -1 : real(fd, buf, len, flags);
}

static void arm(enum fn fn, int err)
{
    fail_fn = fn;
    fail_errno = err;
}

/* Write a pattern through region r and read it back. */
static void io_through(struct blkio *b, struct blkio_mem_region *r, char c)
{
    struct blkioq *q = blkio_get_queue(b, 0);
    char *buf = r->addr;

    memset(buf, c, 4096);
    blkioq_write(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    memset(buf, 0, 4096);
    blkioq_read(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(vu_wait_one(q), 0);
    CHECK(buf[0] == c && buf[4095] == c);
}

static void map_new(struct blkio *b, struct blkio_mem_region *r)
{
    CHECK_RET(blkio_alloc_mem_region(b, r, 1 << 20), 0);
    CHECK_RET(blkio_map_mem_region(b, r), 0);
}

int main(void)
{
    struct blkio_mem_region r1, r2, r3;
    struct blkio *b = vu_connect(false);

    /* 1: nothing was sent; a second start works. */
    arm(FN_SENDMSG, ENOMEM);
    CHECK_RET(blkio_start(b), -ENOMEM);
    CHECK(fail_fn == FN_NONE);
    CHECK(strstr(blkio_get_error_msg(), "nothing was sent") != NULL);
    CHECK_RET(blkio_start(b), 0);
    map_new(b, &r1);
    io_through(b, &r1, 'a');

    /* 2: the reply is waited for through a passing shortage. */
    CHECK_RET(blkio_alloc_mem_region(b, &r2, 1 << 20), 0);
    arm(FN_POLL, ENOMEM);
    CHECK_RET(blkio_map_mem_region(b, &r2), 0);
    CHECK(fail_fn == FN_NONE);
    io_through(b, &r2, 'b');
    CHECK_RET(blkio_alloc_mem_region(b, &r3, 1 << 20), 0);
    arm(FN_RECV, ENOMEM);
    CHECK_RET(blkio_map_mem_region(b, &r3), 0);
    CHECK(fail_fn == FN_NONE);
    io_through(b, &r3, 'c');
    blkio_unmap_mem_region(b, &r3);
    blkio_free_mem_region(b, &r3);

    /* 3: a reply lost for good: the connection goes with it. */
    CHECK_RET(blkio_alloc_mem_region(b, &r3, 1 << 20), 0);
    arm(FN_RECV, EIO);
    CHECK_RET(blkio_map_mem_region(b, &r3), -EIO);
    CHECK(fail_fn == FN_NONE);
    CHECK_RET(blkio_map_mem_region(b, &r3), -ENOTCONN);
    blkio_free_mem_region(b, &r3);
    blkio_destroy(&b);

    b = vu_start(1, 0);
    map_new(b, &r1);
    io_through(b, &r1, 'd');

    /* 4: a removal that did not reach the backend. */
    map_new(b, &r2);
    arm(FN_SENDMSG, ENOMEM);
    blkio_unmap_mem_region(b, &r2);
    CHECK(fail_fn == FN_NONE);
    blkio_free_mem_region(b, &r2);
    blkioq_read(blkio_get_queue(b, 0), 0, r1.addr, 4096, NULL, 0);
    CHECK_RET(vu_wait_one(blkio_get_queue(b, 0)), -ENOTCONN);
    blkio_destroy(&b);
    return 0;
}
