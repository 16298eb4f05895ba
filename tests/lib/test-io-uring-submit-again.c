/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the kernel refuses a submission for now (io_uring_enter
 * says -EAGAIN when it has no memory for it).  liburing's submit calls are
 * wrapped here to say so on demand.
 *  1. blkioq_do_io() with min_completions 0: the requests stay in the SQ,
 *     and no CQE of theirs will signal the completion fd, so the library
 *     signals it itself; a program that waits on the fd calls again and
 *     the requests go in then (before, the fd stayed quiet for ever).
 *  2. Blocking blkioq_do_io() while the shortage lasts 200 ms: it waits
 *     for it to pass (completing the request after it) without a busy
 *     loop of submissions (before: hundreds of thousands of calls).
 *  3. blkio_create(): io_uring_setup() out of fds is no "io_uring is not
 *     available" (-ENOSYS, for good), but -EMFILE; -ENOSYS stays.
 */
#include <dlfcn.h>
#include <liburing.h>
#include <poll.h>
#include <time.h>

#include "util.h"

static int fail_next;               /* refuse this many submits */
static struct timespec fail_until;  /* ... or every submit until then */
static int submit_calls;
static int init_error;              /* io_uring_queue_init() says this */

static bool refuse(void)
{
    struct timespec now;

    submit_calls++;
    if (fail_next > 0) {
        fail_next--;
        return true;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec < fail_until.tv_sec ||
           (now.tv_sec == fail_until.tv_sec &&
            now.tv_nsec < fail_until.tv_nsec);
}

static void *real_fn(const char *name)
{
    void *fn = dlsym(RTLD_NEXT, name);

    check(fn != NULL);
    return fn;
}

int io_uring_submit(struct io_uring *ring)
{
    static int (*real)(struct io_uring *);

    if (!real)
        real = (int (*)(struct io_uring *))real_fn("io_uring_submit");
    return refuse() ? -EAGAIN : real(ring);
}

int io_uring_submit_and_wait(struct io_uring *ring, unsigned want)
{
    static int (*real)(struct io_uring *, unsigned);

    if (!real)
        real = (int (*)(struct io_uring *, unsigned))
            real_fn("io_uring_submit_and_wait");
    return refuse() ? -EAGAIN : real(ring, want);
}

int io_uring_queue_init(unsigned entries, struct io_uring *ring,
                        unsigned flags)
{
    static int (*real)(unsigned, struct io_uring *, unsigned);

    if (init_error)
        return init_error;
    if (!real)
        real = (int (*)(unsigned, struct io_uring *, unsigned))
            real_fn("io_uring_queue_init");
    return real(entries, ring, flags);
}

static void drain_fd(int fd)
{
    uint64_t v;

    while (read(fd, &v, sizeof(v)) == sizeof(v))
        ;
}

/* 1: the completion fd wakes the program after a refused submission. */
static void refused_then_fd(struct blkioq *q, char *buf)
{
    int fd = blkioq_get_completion_fd(q);
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    struct blkio_completion c;
    int n = 0;

    check(fd >= 0);
    drain_fd(fd);
    blkioq_read(q, 0, buf, 4096, buf, 0);
    fail_next = 1;
    CHECK_RET(blkioq_do_io(q, &c, 0, 1, NULL), 0);
    check(fail_next == 0);
    if (poll(&pfd, 1, 2000) != 1)
        T_FAIL_MSG("the completion fd stayed quiet after the kernel "
                   "refused the submission");
    /* As an event loop does: read the fd, call again, until it is done. */
    for (int i = 0; i < 100 && n == 0; i++) {
        drain_fd(fd);
        n = ok(blkioq_do_io(q, &c, 0, 1, NULL));
        if (n == 0)
            check(poll(&pfd, 1, 2000) == 1);
    }
    CHECK_RET(n, 1);
    check(c.user_data == buf);
    CHECK_RET(c.ret, 0);
    check(buf[0] == 'A');
}

/* 2: a blocking wait rides out a lasting shortage without spinning. */
static void refused_for_a_while(struct blkioq *q, char *buf)
{
    struct blkio_completion c;

    memset(buf, 0, 4096);
    blkioq_read(q, 4096, buf, 4096, buf, 0);
    clock_gettime(CLOCK_MONOTONIC, &fail_until);
    fail_until.tv_nsec += 200 * 1000 * 1000;
    if (fail_until.tv_nsec >= 1000000000) {
        fail_until.tv_sec++;
        fail_until.tv_nsec -= 1000000000;
    }
    submit_calls = 0;
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, NULL), 1);
    CHECK_RET(c.ret, 0);
    check(buf[0] == 'B');
    printf("%d submissions tried while refused for 200 ms\n", submit_calls);
    if (submit_calls > 1000)
        T_FAIL_MSG("%d submissions in 200 ms: a busy loop", submit_calls);
}

int main(void)
{
    const char *path = ut_temp_file(1 << 20);
    char *buf = t_aligned_alloc(4096, 4096);
    struct blkio *b;

    memset(buf, 'A', 4096);
    ut_pwrite_file(path, buf, 4096, 0);
    memset(buf, 'B', 4096);
    ut_pwrite_file(path, buf, 4096, 4096);
    /* O_DIRECT: a page-cache hit may be served without the ring. */
    b = ut_connect_direct(path);
    ok(blkio_start(b));
    refused_then_fd(blkio_get_queue(b, 0), buf);
    refused_for_a_while(blkio_get_queue(b, 0), buf);
    blkio_destroy(&b);

    init_error = -EMFILE;
    err(blkio_create("io_uring", &b), -EMFILE);
    check(strstr(blkio_get_error_msg(), "not available") == NULL);
    init_error = -ENOSYS;
    err(blkio_create("io_uring", &b), -ENOSYS);
    init_error = 0;
    ok(blkio_create("io_uring", &b));
    blkio_destroy(&b);
    free(buf);
    return 0;
}
