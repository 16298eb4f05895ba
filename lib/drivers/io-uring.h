/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * io-uring.h - the io_uring driver's instance and request slot, shared by
 * io-uring.c (life cycle, queues, the request path), io-uring-call.c (the
 * system call of a request's next step) and io-uring-file.c (connect: what
 * the file or block device is and which properties follow from it).
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

/* The largest single-buffer transfer put in one SQE; the kernel would cut
 * larger ones short anyway (MAX_RW_COUNT) and the remainder is resubmitted. */
#define IOU_MAX_SQE_LEN (1u << 30)

/* One step of a write zeroes, discard or flush request. */
enum iou_method {
    IOU_M_END = 0,          /* no step left: the request is done */
    IOU_M_PUNCH,            /* fallocate PUNCH_HOLE | KEEP_SIZE */
    IOU_M_ZERO_RANGE,       /* fallocate ZERO_RANGE */
    IOU_M_DISCARD,          /* fallocate PUNCH_HOLE | KEEP_SIZE | NO_HIDE_STALE
                             * (block devices: a real discard) */
    IOU_M_WRITE_ZEROES,     /* writes from the zero buffer */
    IOU_M_FDATASYNC,        /* fsync(IORING_FSYNC_DATASYNC) */
    IOU_M_UNSUPPORTED,      /* every mode failed: complete with -ENOTSUP */
};

#define IOU_MAX_STEPS 5

struct iou_req {
    struct uring_slot hdr;      /* first: the shared ring code's part */
    void *user_data;
    const struct iovec *iov;    /* caller's array, unless single_iov */
    struct iovec single;        /* copy of blkioq_read()/write()'s buffer */
    uint64_t start;
    uint64_t len;
    uint64_t done;              /* bytes transferred (read/write/zero writes) */
    int iovcnt;
    uint8_t op;                 /* enum blkio_op */
    bool single_iov;
    bool fua;
    uint8_t step;               /* index into steps[] */
    uint8_t steps[IOU_MAX_STEPS];
};

static inline const struct iovec *iou_req_iov(const struct iou_req *r)
{
    return r->single_iov ? &r->single : r->iov;
}

/* The system call that a request's next step makes, described once for
 * both ways of making it: as an SQE (iou_prep_call) or in the calling
 * thread (iou_call_now). */
enum iou_call_kind {
    IOU_CALL_READ,
    IOU_CALL_WRITE,
    IOU_CALL_FALLOCATE,
    IOU_CALL_FDATASYNC,
};

struct iou_call {
    enum iou_call_kind kind;
    const struct iovec *iov;    /* read/write: `one`, or the caller's array */
    int iovcnt;
    int rw_flags;               /* RWF_DSYNC for FUA writes */
    int mode;                   /* fallocate mode */
    uint64_t pos;               /* read/write/fallocate offset */
    uint64_t len;               /* fallocate length */
    struct iovec one;
};

/* Describe the next step of the request in slot r (io-uring-call.c). */
void iou_next_call(struct blkioq *q, const struct iou_req *r,
                   struct iou_call *c);

/* Fill sqe with call c on fd; buf_index: the fixed buffer holding a lone
 * buffer, or -1. */
void iou_prep_call(struct io_uring_sqe *sqe, int fd, const struct iou_call *c,
                   int buf_index);

/* Make call c in this thread; returns what its CQE's res would be.  Reads
 * take extra_flags (RWF_NOWAIT). */
int iou_call_now(int fd, const struct iou_call *c, int extra_flags);

/* driver->connect(): open path (or take fd), fill in every device
 * property, map the zero buffer. */
int iou_connect(struct blkio *b);

/* driver->refresh_property(): capacity follows the file's size. */
void iou_refresh_property(struct blkio *b, const struct blkio_property *p);

#endif /* BLKIO_IO_URING_H */
