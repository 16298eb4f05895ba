/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * sys-io.h - the system calls of the request path, made with syscall(2)
 * rather than through libc's wrappers.
 *
 * libc's write(), preadv2(), epoll_pwait2() & co. are thread cancellation
 * points: each call switches asynchronous cancellation on and off around
 * the system call (two atomic operations on the thread's cancel state),
 * and a thread cancelled inside one would leave a request half-submitted
 * on a queue that other threads go on using.  The calls made for every
 * request (the kicks, the completion fd's signal, the virtio waits, the
 * io_uring driver's direct reads and writes) therefore go straight to the
 * kernel; liburing makes its own calls the same way.  The rarer ones (the
 * hang-up check's poll(), direct fallocate() and fdatasync()) still use
 * libc.  These return what the kernel does: -1 with errno set on failure,
 * like the libc functions.
 */
#ifndef BLKIO_SYS_IO_H
#define BLKIO_SYS_IO_H

#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* The kernel's sigset_t is _NSIG bits, not glibc's 1024. */
#define BLKIO_KERNEL_SIGSET_BYTES (_NSIG / 8)

/* Add 1 to an eventfd (a kick, or a completion fd's signal). */
static inline long blkio_sys_eventfd_add1(int fd)
{
    uint64_t one = 1;

    return syscall(SYS_write, fd, &one, sizeof(one));
}

/* preadv2()/pwritev2(): the offset goes as two longs, low half first; on
 * a 64-bit kernel the low one holds all of it. */
static inline long blkio_sys_prwv2(long nr, int fd, const struct iovec *iov,
                                   int iovcnt, uint64_t pos, int flags)
{
    unsigned long lo = (unsigned long)pos;
    unsigned long hi = (unsigned long)(pos >> (4 * sizeof(long)) >>
                                       (4 * sizeof(long)));

    return syscall(nr, fd, iov, iovcnt, lo, hi, flags);
}

static inline long blkio_sys_epoll_pwait2(int epfd, struct epoll_event *ev,
                                          int maxevents,
                                          const struct timespec *tp,
                                          const sigset_t *sig)
{
    return syscall(SYS_epoll_pwait2, epfd, ev, maxevents, tp, sig,
                   BLKIO_KERNEL_SIGSET_BYTES);
}

static inline long blkio_sys_epoll_pwait(int epfd, struct epoll_event *ev,
                                         int maxevents, int timeout_ms,
                                         const sigset_t *sig)
{
    return syscall(SYS_epoll_pwait, epfd, ev, maxevents, timeout_ms, sig,
                   BLKIO_KERNEL_SIGSET_BYTES);
}

#endif /* BLKIO_SYS_IO_H */
