/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nbdkit-blkio-plugin: which NBD error a client gets for a library error.
 *
 * nbdkit turns the errno a plugin sets into an NBD error, and turns every
 * errno it does not know (ENOTCONN, EPIPE, ...) into EINVAL, which tells
 * a client that its request was malformed.  The library's errors are
 * mapped here first, to the errno whose NBD error a client can act on:
 * EIO for a device that failed or went away (retry later, elsewhere),
 * ENOSPC, EPERM for writing a read-only device, ENOMEM, and EINVAL only
 * for a request the device found malformed.
 */

#include <errno.h>
#include <stddef.h>
#include <stdio.h>

#include "blkio-plugin.h"

struct bio_errno_map {
  int err;                      /* from libblkio */
  int nbd;                      /* errno handed to nbdkit */
};

static const struct bio_errno_map bio_errno_table[] = {
  /* The device failed, or the way to it is gone. */
  { EIO, EIO },
  { ENOTCONN, EIO },
  { EPIPE, EIO },
  { ECONNRESET, EIO },
  { ECONNABORTED, EIO },
  { ESHUTDOWN, EIO },
  { ENODEV, EIO },
  { ENXIO, EIO },
  { ETIMEDOUT, EIO },
  { EPROTO, EIO },
  { EBADMSG, EIO },
  { EILSEQ, EIO },
  { ENODATA, EIO },
  { EBUSY, EIO },
  { EAGAIN, EIO },
  { ECANCELED, EIO },
  { EFAULT, EIO },
  /* Out of space. */
  { ENOSPC, ENOSPC },
  { EDQUOT, ENOSPC },
  { EFBIG, ENOSPC },
  /* Writing where that is not allowed (EBADF: an fd opened read-only). */
  { EROFS, EPERM },
  { EBADF, EPERM },
  { EPERM, EPERM },
  { EACCES, EPERM },
  /* Out of memory. */
  { ENOMEM, ENOMEM },
  { ENOBUFS, ENOMEM },
  /* Not supported by the device: write zeroes and discard handle it
   * before this table (nbdkit falls back, or fails a fast zero); for any
   * other request nbdkit would send EINVAL, so it is the device's error. */
  { ENOTSUP, EIO },
  /* A request the device found malformed. */
  { EINVAL, EINVAL },
  { ERANGE, EINVAL },
  { EOVERFLOW, EINVAL },
};

/* The errno to give nbdkit for library error err (positive); an error not
 * in the table is the device's, so EIO. */
int
bio_nbd_errno (int err)
{
  size_t i;

  for (i = 0; i < sizeof bio_errno_table / sizeof bio_errno_table[0]; i++)
    if (bio_errno_table[i].err == err)
      return bio_errno_table[i].nbd;
  return EIO;
}

/* --dump-plugin: the table as errno:errno pairs, for scripts and tests. */
void
bio_dump_errno_table (void)
{
  size_t i;

  printf ("blkio_errno_map=");
  for (i = 0; i < sizeof bio_errno_table / sizeof bio_errno_table[0]; i++)
    printf ("%s%d:%d", i ? "," : "", bio_errno_table[i].err,
            bio_errno_table[i].nbd);
  printf ("\n");
}
