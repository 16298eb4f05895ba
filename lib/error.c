/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Per-thread error message.  The API returns a negative errno and leaves a
 * human-readable explanation for the calling thread only, so concurrent
 * users of different instances never see each other's messages.
 */
#include <stdio.h>

#include "internal.h"

static __thread char blkio_error_msg[1024];

int blkio_set_error(int neg_errno, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(blkio_error_msg, sizeof(blkio_error_msg), fmt, ap);
    va_end(ap);
    return neg_errno;
}

void blkio_clear_error(void)
{
    blkio_error_msg[0] = '\0';
}

const char *blkio_get_error_msg(void)
{
    return blkio_error_msg;
}
