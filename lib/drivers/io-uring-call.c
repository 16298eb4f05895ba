/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * io_uring driver: the system call a request's next step makes, described
 * once (struct iou_call) and made either as an SQE (iou_prep_call) or in
 * the calling thread (iou_call_now).  A whole single-buffer read or write,
 * the common case, skips this and goes straight into its SQE (io-uring.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../sys-io.h"
#include "io-uring.h"

/* The part of a read or write not yet transferred. */
static void iou_rw_call(struct iou_call *c, const struct iou_req *r)
{
    const struct iovec *iov = iou_req_iov(r);
    int iovcnt = r->iovcnt;
    uint64_t skip = r->done;
    int k = 0;

    /* Find the first iovec element not yet fully transferred. */
    while (k < iovcnt && skip >= iov[k].iov_len) {
        skip -= iov[k].iov_len;
        k++;
    }
    c->pos = r->start + r->done;
    if (skip || iovcnt - k == 1) {
        /* One buffer (or the rest of a partly done element). */
        uint64_t left = iov[k].iov_len - skip;

        c->one.iov_base = (char *)iov[k].iov_base + skip;
        c->one.iov_len = left > IOU_MAX_SQE_LEN ? IOU_MAX_SQE_LEN : left;
        c->iov = &c->one;
        c->iovcnt = 1;
    } else {
        c->iov = &iov[k];
        c->iovcnt = iovcnt - k;
    }
}

void iou_next_call(struct blkioq *q, const struct iou_req *r,
                          struct iou_call *c)
{
    struct iou_instance *ii = q->b->priv;

    c->rw_flags = 0;
    if (r->op == BLKIO_OP_READ || r->op == BLKIO_OP_WRITE) {
        c->kind = r->op == BLKIO_OP_READ ? IOU_CALL_READ : IOU_CALL_WRITE;
        if (r->op == BLKIO_OP_WRITE && r->fua)
            c->rw_flags = RWF_DSYNC;
        iou_rw_call(c, r);
        return;
    }

    c->kind = IOU_CALL_FALLOCATE;
    c->pos = r->start;
    c->len = r->len;
    switch (r->steps[r->step]) {
    case IOU_M_PUNCH:
        c->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
        break;
    case IOU_M_ZERO_RANGE:
        c->mode = FALLOC_FL_ZERO_RANGE;
        break;
    case IOU_M_DISCARD:
        c->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE |
                  FALLOC_FL_NO_HIDE_STALE;
        break;
    case IOU_M_WRITE_ZEROES: {
        uint64_t left = r->len - r->done;

        /* Whole chunks from the zero iovecs, then the tail. */
        c->kind = IOU_CALL_WRITE;
        if (left >= IOU_ZERO_CHUNK) {
            uint64_t n = left / IOU_ZERO_CHUNK;

            c->iov = ii->zero_iov;
            c->iovcnt = n > IOU_ZERO_IOVS ? IOU_ZERO_IOVS : (int)n;
        } else {
            c->one.iov_base = ii->zero_buf;
            c->one.iov_len = left;
            c->iov = &c->one;
            c->iovcnt = 1;
        }
        c->pos = r->start + r->done;
        break;
    }
    case IOU_M_FDATASYNC:
    default:
        c->kind = IOU_CALL_FDATASYNC;
        break;
    }
}

/* buf_index: the fixed buffer holding a lone buffer, or -1. */
void iou_prep_call(struct io_uring_sqe *sqe, int fd,
                          const struct iou_call *c, int buf_index)
{
    bool write = c->kind == IOU_CALL_WRITE;

    switch (c->kind) {
    case IOU_CALL_READ:
    case IOU_CALL_WRITE:
        /* One buffer goes without the iovec indirection, and inside a
         * mapped region without the page lookup. */
        if (buf_index >= 0) {
            io_uring_prep_rw(write ? IORING_OP_WRITE_FIXED :
                             IORING_OP_READ_FIXED, sqe, fd,
                             c->iov[0].iov_base,
                             (unsigned)c->iov[0].iov_len, c->pos);
            sqe->buf_index = (uint16_t)buf_index;
        } else if (c->iovcnt == 1)
            io_uring_prep_rw(write ? IORING_OP_WRITE : IORING_OP_READ, sqe,
                             fd, c->iov[0].iov_base,
                             (unsigned)c->iov[0].iov_len, c->pos);
        else
            io_uring_prep_rw(write ? IORING_OP_WRITEV : IORING_OP_READV, sqe,
                             fd, c->iov, (unsigned)c->iovcnt, c->pos);
        sqe->rw_flags = c->rw_flags;
        break;
    case IOU_CALL_FALLOCATE:
        io_uring_prep_fallocate(sqe, fd, c->mode, (off_t)c->pos,
                                (off_t)c->len);
        break;
    case IOU_CALL_FDATASYNC:
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
    }
}

/* Make the call in this thread; returns what its CQE's res would be.
 * Reads take extra_flags (RWF_NOWAIT). */
int iou_call_now(int fd, const struct iou_call *c, int extra_flags)
{
    ssize_t n;

    switch (c->kind) {
    case IOU_CALL_READ:
        n = blkio_sys_prwv2(SYS_preadv2, fd, c->iov, c->iovcnt, c->pos,
                            extra_flags);
        break;
    case IOU_CALL_WRITE:
        n = blkio_sys_prwv2(SYS_pwritev2, fd, c->iov, c->iovcnt, c->pos,
                            c->rw_flags);
        break;
    case IOU_CALL_FALLOCATE:
        n = fallocate(fd, c->mode, (off_t)c->pos, (off_t)c->len);
        break;
    case IOU_CALL_FDATASYNC:
    default:
        n = fdatasync(fd);
        break;
    }
    /* A transfer returns at most MAX_RW_COUNT (just under 2 GiB). */
    return n < 0 ? -errno : (int)n;
}
