/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* fake-ioctl.c - see fake-ioctl.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "blkio.h"
#include "fake-ioctl.h"

int fake_is_dev(int fd)
{
    static dev_t null_rdev;
    struct stat st;

    if (!null_rdev) {
        if (stat(FAKE_DEV_PATH, &st) < 0)
            return 0;
        null_rdev = st.st_rdev;
    }
    return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) &&
           st.st_rdev == null_rdev;
}

int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    void *arg;

    va_start(ap, req);
    arg = va_arg(ap, void *);
    va_end(ap);
    if (fake_is_dev(fd))
        return fake_dev_ioctl(req, arg);
    return (int)syscall(SYS_ioctl, fd, req, arg);
}

void fake_dev_run(const char *driver, void (*check)(struct blkio *b),
                  void (*io)(struct blkio *b))
{
    struct blkio *b = NULL;

    if (blkio_create(driver, &b) < 0)
        abort();
    if (blkio_set_str(b, "path", FAKE_DEV_PATH) == 0 &&
        blkio_connect(b) == 0) {
        check(b);
        io(b);
    }
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "%s: last error: %s\n", driver,
                blkio_get_error_msg());
    blkio_destroy(&b);
}
