/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * LD_PRELOAD shim for the plugin tests: once the file named by
 * FAIL_DO_IO_FILE exists, every blkioq_do_io() fails with -ENOTCONN (as if
 * the backend were gone) instead of calling libblkio.  While the file named
 * by FAIL_COMPLETION_FILE holds a number N, every request libblkio
 * completes fails with -N instead.  When the file named by
 * FAIL_DO_IO_ONCE_FILE holds a number N, the next blkioq_do_io() fails
 * with -N (as a call can for another reason than a lost device) and the
 * file is removed.  Once the file named by FAIL_MMAP_FIXED_FILE exists,
 * the next FAIL_MMAP_FIXED_N (default 1) mmap() calls with MAP_FIXED
 * fail with ENOMEM, as the kernel short of memory does (no allocation
 * here: malloc() may call mmap()).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <blkio.h>

typedef int do_io_fn(struct blkioq *, struct blkio_completion *, int, int,
                     struct timespec *);

/* The positive number in the file the environment variable env names,
 * or 0 (no variable, no file, no number). */
static int
file_number(const char *env)
{
    const char *path = getenv(env);
    FILE *f;
    int n = 0;

    if (!path || (f = fopen(path, "r")) == NULL)
        return 0;
    if (fscanf(f, "%d", &n) != 1 || n < 0)
        n = 0;
    fclose(f);
    return n;
}

__attribute__((visibility("default"))) int
blkioq_do_io(struct blkioq *q, struct blkio_completion *completions,
             int min_completions, int max_completions,
             struct timespec *timeout)
{
    static do_io_fn *real;
    const char *trigger = getenv("FAIL_DO_IO_FILE");
    int err, n;

    if (trigger && access(trigger, F_OK) == 0)
        return -ENOTCONN;
    err = file_number("FAIL_DO_IO_ONCE_FILE");
    if (err > 0 && unlink(getenv("FAIL_DO_IO_ONCE_FILE")) == 0)
        return -err;
    if (!real)
        real = (do_io_fn *)dlsym(RTLD_NEXT, "blkioq_do_io");
    if (!real)
        return -ENOSYS;
    n = real(q, completions, min_completions, max_completions, timeout);
    err = n > 0 ? file_number("FAIL_COMPLETION_FILE") : 0;
    for (int i = 0; err > 0 && i < n; i++) {
        completions[i].ret = -err;
        completions[i].error_msg = "injected by fail-do-io";
    }
    return n;
}

__attribute__((visibility("default"))) void *
mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    static int failed;
    const char *trigger = getenv("FAIL_MMAP_FIXED_FILE");
    const char *n = getenv("FAIL_MMAP_FIXED_N");

    if ((flags & MAP_FIXED) && trigger && access(trigger, F_OK) == 0 &&
        __atomic_fetch_add(&failed, 1, __ATOMIC_RELAXED) < (n ? atoi(n) : 1)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}
