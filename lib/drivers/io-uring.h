/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * io-uring.h - the io_uring driver's instance, shared by io-uring.c (life
 * cycle, queues, the request path) and io-uring-file.c (connect: what the
 * file or block device is and which properties follow from it).
 */
#ifndef BLKIO_IO_URING_H
#define BLKIO_IO_URING_H

#include <stdbool.h>
#include <sys/uio.h>

#include "internal.h"
#include "uring-common.h"

/* Zero buffer for the write-zeroes fallback: IOU_ZERO_IOVS iovecs that all
 * point at the same read-only IOU_ZERO_CHUNK bytes of anonymous memory. */
#define IOU_ZERO_CHUNK (1u << 20)
#define IOU_ZERO_IOVS  64

/* IOV_MAX: what readv/writev accept in one request. */
#define IOU_MAX_SEGMENTS 1024

struct iou_instance {
    bool is_blkdev;
    bool is_reg;
    bool owns_fd;               /* set at successful connect */
    bool dev_write_zeroes;      /* block device offloads write zeroes */
    uint32_t lbs;               /* block device: logical block size */
    bool force_async;           /* IOSQE_ASYNC on every SQE (see connect) */
    void *zero_buf;             /* IOU_ZERO_CHUNK bytes, PROT_READ */
    struct iovec zero_iov[IOU_ZERO_IOVS];
    struct uring_fixed_table fixed;     /* mapped regions: fixed buffers */
};

/* driver->connect(): open path (or take fd), fill in every device
 * property, map the zero buffer. */
int iou_connect(struct blkio *b);

/* driver->refresh_property(): capacity follows the file's size. */
void iou_refresh_property(struct blkio *b, const struct blkio_property *p);

#endif /* BLKIO_IO_URING_H */
