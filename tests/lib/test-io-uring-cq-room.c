/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: a request's next step is issued while its completion is
 * handled (a short O_DIRECT read at the end of the file goes on past it);
 * on a ring of one entry the submission that step makes happens inside
 * the reaping pass.  The completions handled so far must have been given
 * back to the kernel by then: the kernel must never find the completion
 * queue full (IORING_SQ_CQ_OVERFLOW), where it keeps completions on a
 * list it may fail to allocate, and older kernels refuse submissions.
 * io_uring_submit() is wrapped here to look at the flag after each call.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <liburing.h>
#include <time.h>

#include "util.h"

static int overflows, submits;

int io_uring_submit(struct io_uring *ring)
{
    static int (*real)(struct io_uring *);
    int r;

    if (!real)
        real = (int (*)(struct io_uring *))dlsym(RTLD_NEXT,
                                                 "io_uring_submit");
    check(real != NULL);
    r = real(ring);
    submits++;
    if (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_CQ_OVERFLOW)
        overflows++;
    return r;
}

int main(void)
{
    const char *path = ut_temp_file(0);
    static char data[1000];
    struct blkio *b;
    struct blkioq *q;
    char *buf = t_aligned_alloc(4096, 2 * 4096);
    int done = 0;

    memset(data, 'A', sizeof(data));
    ut_pwrite_file(path, data, sizeof(data), 0);
    b = ut_connect_direct(path);
    ok(blkio_set_int(b, "num-entries", 1));
    ok(blkio_start(b));
    q = blkio_get_queue(b, 0);
    for (int round = 0; round < 20; round++) {
        struct blkio_completion c[4];
        struct timespec pause = { 0, 20 * 1000 * 1000 };
        int n;

        blkioq_read(q, 0, buf, 4096, NULL, 0);
        blkioq_read(q, 0, buf + 4096, 4096, NULL, 0);
        n = blkioq_do_io(q, c, 0, 4, NULL);
        check(n >= 0);
        done += n;
        nanosleep(&pause, NULL);        /* both first steps complete */
        while (done < 2 * (round + 1)) {
            n = blkioq_do_io(q, c, 1, 4, NULL);
            check(n > 0);
            for (int i = 0; i < n; i++)
                check(c[i].ret == 0);
            done += n;
        }
        check(memcmp(buf, data, sizeof(data)) == 0);
        check(t_is_zero(buf + sizeof(data), 4096 - sizeof(data)));
    }
    printf("%d submissions, completion queue overflowed at %d\n", submits,
           overflows);
    if (submits == 0)
        t_skip("no step was submitted from inside a reaping pass here "
               "(every next step ran in the caller)");
    check(overflows == 0);
    blkio_destroy(&b);
    free(buf);
    return 0;
}
