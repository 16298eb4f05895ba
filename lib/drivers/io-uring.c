/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * io_uring driver: regular files and block device nodes through Linux
 * io_uring (liburing).
 *
 * Each queue owns one io_uring.  A request lives in a per-queue slot; the
 * SQE's user_data is the slot index, so no memory is allocated per request
 * (the slot array only grows, by doubling, when the caller keeps more
 * requests outstanding than it ever did before).
 *
 * At most as many requests are handed to the kernel as the CQ ring has
 * entries, so the CQ can never overflow; requests beyond that wait on a
 * per-queue backlog (a list threaded through the slots) and are submitted as
 * completions free up room.
 *
 * Some requests take several steps: short reads and writes are resubmitted
 * for the remainder, write zeroes and discard try a list of fallocate modes
 * (and, for write zeroes without BLKIO_REQ_NO_FALLBACK, finally plain writes
 * from a zero buffer), and FUA on write zeroes adds an fdatasync.  Every step
 * goes through the same slot until the request completes once.
 *
 * A lone buffered request may skip the ring.  When a request is the only
 * one of an idle queue, do_io runs it in the caller:
 * - a read first tries preadv2(RWF_NOWAIT), the attempt io_uring makes
 *   inline anyway, without the ring's submission and completion
 *   bookkeeping; what is not in the page cache goes through the ring;
 * - anything else, when the caller waits for it (min_completions, no
 *   deadline, no signal mask), is made of plain pwritev2, fallocate and
 *   fdatasync calls: io_uring would hand each to a worker thread (ext4
 *   cannot do buffered writes without blocking, fallocate and fsync
 *   always block), costing two context switches and a wake-up for the
 *   same work.
 * Each step is described once (struct iou_call) and made either as an SQE
 * or as that system call.  Batches, O_DIRECT, poll queues and FUSE always
 * use the ring.  Measured in bench/REPORT.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "uring-common.h"

/* Memcheck cannot see the kernel fill read buffers through io_uring; tell
 * it, so that programs using libblkio run clean under valgrind.  The
 * client requests cost a few instructions when not under valgrind. */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define IOU_HAVE_MEMCHECK 1
#endif
#endif

/* io_uring's limit on SQ entries since Linux 5.4 (IORING_MAX_ENTRIES). */
#define IOU_MAX_ENTRIES 32768

/* IOV_MAX: what readv/writev accept in one request. */
#define IOU_MAX_SEGMENTS 1024

/* The largest single-buffer transfer put in one SQE; the kernel would cut
 * larger ones short anyway (MAX_RW_COUNT) and the remainder is resubmitted. */
#define IOU_MAX_SQE_LEN (1u << 30)

/* Zero buffer for the write-zeroes fallback: ZERO_IOVS iovecs that all point
 * at the same read-only ZERO_CHUNK bytes of anonymous memory. */
#define IOU_ZERO_CHUNK (1u << 20)
#define IOU_ZERO_IOVS  64

#define IOU_NONE UINT32_MAX

/* statfs f_type of FUSE file systems (linux/magic.h lacks it). */
#define IOU_FUSE_MAGIC 0x65735546

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
    void *user_data;
    const struct iovec *iov;    /* caller's array, unless single_iov */
    struct iovec single;        /* copy of blkioq_read()/write()'s buffer */
    uint64_t start;
    uint64_t len;
    uint64_t done;              /* bytes transferred (read/write/zero writes) */
    int iovcnt;
    uint32_t next;              /* free list or backlog link */
    uint8_t op;                 /* enum blkio_op */
    bool in_flight;             /* a CQE is due for this slot */
    bool single_iov;
    bool fua;
    uint8_t step;               /* index into steps[] */
    uint8_t steps[IOU_MAX_STEPS];
};

struct iou_queue {
    struct io_uring ring;
    struct iou_req *slots;
    uint32_t nslots;
    uint32_t free_head;
    uint32_t backlog_head;
    uint32_t backlog_tail;
    uint32_t inflight;          /* SQEs prepared and not yet reaped */
    uint32_t max_inflight;      /* CQ ring size: no overflow possible */
    uint32_t held;              /* request held back for iou_run_held() */
    uint32_t caller_step;       /* request iou_run_blocking() is running */
    bool caller_step_again;     /* ... and it wants its next step */
    uint32_t cache_skip;        /* reads to send straight to the ring */
    uint32_t cache_backoff;     /* cache_skip after the next miss */
    bool cache_reads;           /* reads may try the page cache first */
    bool caller_runs;           /* buffered I/O: requests may be held */
    bool fixed_file;            /* the fd is registered as file 0 */
};

struct iou_instance {
    bool is_blkdev;
    bool is_reg;
    bool owns_fd;               /* set at successful connect */
    bool dev_write_zeroes;      /* block device offloads write zeroes */
    bool force_async;           /* IOSQE_ASYNC on every SQE (see connect) */
    void *zero_buf;             /* IOU_ZERO_CHUNK bytes, PROT_READ */
    struct iovec zero_iov[IOU_ZERO_IOVS];
};

/* ---- properties ---- */

static const struct blkio_property iou_props[] = {
    BLKIO_PROP("direct", PROP_BOOL, ST_ALL, ST_CREATED, direct, NULL),
    BLKIO_PROP("fd", PROP_INT, ST_ALL, ST_CREATED, fd,
               blkio_prop_set_nonneg_int),
    BLKIO_PROP("num-entries", PROP_INT, ST_AFTER_CONNECT, ST_CONNECTED,
               num_entries, blkio_prop_set_positive_int),
    BLKIO_PROP("path", PROP_STR, ST_ALL, ST_CREATED, path, NULL),
};

/* ---- instance life cycle ---- */

static int iou_create(struct blkio *b)
{
    struct io_uring probe;
    struct iou_instance *ii;
    int ret;

    /* The manual promises -ENOSYS from blkio_create() when the kernel has
     * no (or a disabled) io_uring, so find out now with a tiny ring. */
    ret = io_uring_queue_init(1, &probe, 0);
    if (ret < 0)
        return blkio_set_error(-ENOSYS, "io_uring is not available: %s",
                               strerror(-ret));
    io_uring_queue_exit(&probe);

    ii = calloc(1, sizeof(*ii));
    if (!ii)
        return blkio_set_error(-ENOMEM, "out of memory creating io_uring "
                               "instance");
    b->priv = ii;
    b->num_entries = 128;
    b->can_add_queues = true;
    return 0;
}

/* Read one unsigned number from a sysfs file; false if absent. */
static bool iou_sysfs_u64(dev_t dev, const char *name, uint64_t *value)
{
    char path[128];
    unsigned long long v;
    FILE *f;
    bool ok;

    snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/%s", major(dev),
             minor(dev), name);
    f = fopen(path, "re");
    if (!f)
        return false;
    ok = fscanf(f, "%llu", &v) == 1;
    fclose(f);
    if (ok)
        *value = v;
    return ok;
}

/* A queue attribute of a whole disk or of a partition's disk. */
static bool iou_sysfs_queue_u64(dev_t dev, const char *attr, uint64_t *value)
{
    char name[96];

    snprintf(name, sizeof(name), "queue/%s", attr);
    if (iou_sysfs_u64(dev, name, value))
        return true;
    /* Partitions have no queue/ directory: their parent disk does. */
    snprintf(name, sizeof(name), "../queue/%s", attr);
    return iou_sysfs_u64(dev, name, value);
}

/*
 * Direct I/O alignment of a file: statx(STATX_DIOALIGN) where the kernel
 * and file system report it (Linux 6.1+), else 512, the logical block size
 * of nearly every device.
 */
static void iou_dio_align(int fd, uint32_t *offset_align, uint32_t *mem_align)
{
    struct statx stx;

    *offset_align = 512;
    *mem_align = 512;
#ifdef STATX_DIOALIGN
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
        *offset_align = stx.stx_dio_offset_align;
        *mem_align = stx.stx_dio_mem_align ? stx.stx_dio_mem_align : 1;
    }
#else
    (void)fd;
    (void)stx;
#endif
}

static int iou_connect(struct blkio *b)
{
    struct iou_instance *ii = b->priv;
    bool opened = false;
    struct stat st;
    dev_t queue_dev;
    uint64_t v;
    long page = sysconf(_SC_PAGESIZE);
    int fl, ret;

    if (b->path && b->fd >= 0)
        return blkio_set_error(-EINVAL, "properties 'path' and 'fd' cannot "
                               "both be set");
    if (!b->path && b->fd < 0)
        return blkio_set_error(-EINVAL, "property 'path' or 'fd' must be "
                               "set before blkio_connect()");

    if (b->path) {
        int flags = (b->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC |
                    (b->direct ? O_DIRECT : 0);

        b->fd = open(b->path, flags);
        if (b->fd < 0)
            return blkio_set_error(-errno, "cannot open '%s'%s: %m",
                                   b->path,
                                   b->direct ? " with O_DIRECT" : "");
        opened = true;
    }

    /* With an fd of the caller's, its status flags are the truth. */
    fl = fcntl(b->fd, F_GETFL);
    if (fl < 0) {
        ret = blkio_set_error(-errno, "fd %d: %m", b->fd);
        goto fail;
    }
    if ((fl & O_ACCMODE) == O_WRONLY) {
        ret = blkio_set_error(-EINVAL, "fd %d is open write-only; reads "
                              "need O_RDONLY or O_RDWR", b->fd);
        goto fail;
    }
    b->read_only = (fl & O_ACCMODE) == O_RDONLY;
    b->direct = (fl & O_DIRECT) != 0;

    if (fstat(b->fd, &st) < 0) {
        ret = blkio_set_error(-errno, "fstat fd %d: %m", b->fd);
        goto fail;
    }
    ii->is_reg = S_ISREG(st.st_mode);
    ii->is_blkdev = S_ISBLK(st.st_mode);

    /* Defaults for every kind of file. */
    b->max_queues = INT_MAX;
    b->supports_poll_queues = false;
    b->max_mem_regions = INT_MAX;
    b->may_pin_mem_regions = false;
    b->mem_region_alignment = 1;
    b->needs_mem_regions = false;
    b->needs_mem_region_fd = false;
    b->optimal_io_alignment = 4096;
    b->optimal_io_size = 0;
    b->request_alignment = 1;
    /* Writes reach stable storage only after a flush unless every write
     * is already synchronous. */
    b->flush_needed = !(fl & (O_SYNC | O_DSYNC));
    b->buf_alignment = 1;
    b->can_grow = false;
    b->max_segments = IOU_MAX_SEGMENTS;
    b->max_segment_len = 0;
    b->max_transfer = 0;
    b->optimal_buf_alignment = b->direct ? (int)page : 1;
    b->supports_fua_natively = false;
    b->max_write_zeroes_len = 0;
    b->discard_alignment = 0;
    b->discard_alignment_offset = 0;
    b->max_discard_len = 0;

    if (ii->is_reg) {
        b->capacity = (uint64_t)st.st_size;
        if (b->direct) {
            uint32_t oa, ma;

            iou_dio_align(b->fd, &oa, &ma);
            b->request_alignment = (int)oa;
            b->buf_alignment = (int)ma;
        }
        queue_dev = st.st_dev;
    } else if (ii->is_blkdev) {
        uint64_t size;
        int lbs = 512, pbs = 0;
        unsigned int io_opt = 0;

        if (ioctl(b->fd, BLKGETSIZE64, &size) < 0) {
            ret = blkio_set_error(-errno, "BLKGETSIZE64 on fd %d: %m", b->fd);
            goto fail;
        }
        b->capacity = size;
        if (ioctl(b->fd, BLKSSZGET, &lbs) < 0 || lbs <= 0)
            lbs = 512;
        b->request_alignment = lbs;
        if (b->direct) {
            uint32_t oa, ma;

            iou_dio_align(b->fd, &oa, &ma);
            /* Older kernels report nothing for block devices: the logical
             * block size is always safe. */
            b->buf_alignment = oa == 512 && ma == 512 ? lbs : (int)ma;
        }
        if (ioctl(b->fd, BLKPBSZGET, &pbs) == 0 && pbs > 0)
            b->optimal_io_alignment = pbs;
        if (ioctl(b->fd, BLKIOOPT, &io_opt) == 0 && io_opt <= INT_MAX)
            b->optimal_io_size = (int)io_opt;
        if (iou_sysfs_queue_u64(st.st_rdev, "write_zeroes_max_bytes", &v)) {
            b->max_write_zeroes_len = v;
            ii->dev_write_zeroes = v > 0;
        }
        if (iou_sysfs_queue_u64(st.st_rdev, "discard_max_bytes", &v))
            b->max_discard_len = v;
        if (b->max_discard_len &&
            iou_sysfs_queue_u64(st.st_rdev, "discard_granularity", &v) &&
            v <= INT_MAX)
            b->discard_alignment = (int)v;
        if (b->discard_alignment &&
            iou_sysfs_u64(st.st_rdev, "discard_alignment", &v) &&
            v < (uint64_t)b->discard_alignment)
            b->discard_alignment_offset = (int)v;
        queue_dev = st.st_rdev;
    } else {
        ret = blkio_set_error(-EINVAL, "%s is neither a regular file nor a "
                              "block device",
                              b->path ? b->path : "fd");
        goto fail;
    }

    /*
     * FUSE ignores IOCB_NOWAIT on some paths (direct_io files): io_uring
     * would then run the read inline and block in io_uring_enter, so that
     * submitting (do_io with min 0) hangs and deadlines do not work.  Make
     * io_uring hand every request to its worker threads instead.
     */
    if (ii->is_reg) {
        struct statfs sfs;

        if (fstatfs(b->fd, &sfs) == 0 && sfs.f_type == IOU_FUSE_MAGIC)
            ii->force_async = true;
    }

    /*
     * Poll queues (IORING_SETUP_IOPOLL) only really poll with O_DIRECT on a
     * device whose driver has poll queues; elsewhere the kernel accepts the
     * ring but completes by interrupt, so do not claim support.
     */
    if (b->direct && iou_sysfs_queue_u64(queue_dev, "io_poll", &v) && v)
        b->supports_poll_queues = true;

    /* Read-only zero pages: costs address space, not memory. */
    ii->zero_buf = mmap(NULL, IOU_ZERO_CHUNK, PROT_READ,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ii->zero_buf == MAP_FAILED) {
        ii->zero_buf = NULL;
        ret = blkio_set_error(-ENOMEM, "mmap of the zero buffer: %m");
        goto fail;
    }
    for (int i = 0; i < IOU_ZERO_IOVS; i++) {
        ii->zero_iov[i].iov_base = ii->zero_buf;
        ii->zero_iov[i].iov_len = IOU_ZERO_CHUNK;
    }

    ii->owns_fd = true;
    return 0;

fail:
    if (opened) {
        close(b->fd);
        b->fd = -1;
    }
    return ret;
}

static int iou_start(struct blkio *b)
{
    int n = b->num_entries;

    if (n <= 0 || n > IOU_MAX_ENTRIES || (n & (n - 1)) != 0)
        return blkio_set_error(-EINVAL, "num-entries must be a power of two "
                               "between 1 and %d, got %d", IOU_MAX_ENTRIES,
                               n);
    return 0;
}

static void iou_destroy(struct blkio *b)
{
    struct iou_instance *ii = b->priv;

    if (!ii)
        return;
    if (ii->zero_buf)
        munmap(ii->zero_buf, IOU_ZERO_CHUNK);
    if (ii->owns_fd && b->fd >= 0) {
        close(b->fd);
        b->fd = -1;
    }
    free(ii);
    b->priv = NULL;
}

/* ---- queues ---- */

static int iou_slots_grow(struct iou_queue *iq)
{
    uint32_t n = iq->nslots ? iq->nslots * 2 : 64;
    struct iou_req *s;

    if (n <= iq->nslots || n >= IOU_NONE)
        return -ENOMEM;
    s = realloc(iq->slots, (size_t)n * sizeof(*s));
    if (!s)
        return -ENOMEM;
    /* Chain the new slots onto the free list. */
    for (uint32_t i = iq->nslots; i < n; i++) {
        s[i].next = i + 1 < n ? i + 1 : iq->free_head;
        s[i].in_flight = false;
    }
    iq->free_head = iq->nslots;
    iq->slots = s;
    iq->nslots = n;
    return 0;
}

static int iou_queue_init(struct blkioq *q)
{
    struct iou_queue *iq;
    struct io_uring_params p;
    int ret;

    iq = calloc(1, sizeof(*iq));
    if (!iq)
        return blkio_set_error(-ENOMEM, "out of memory creating queue %d",
                               q->index);
    iq->free_head = IOU_NONE;
    iq->backlog_head = IOU_NONE;
    iq->backlog_tail = IOU_NONE;
    iq->held = IOU_NONE;
    iq->caller_step = IOU_NONE;
    iq->cache_backoff = 1;
    {
        struct iou_instance *ii = q->b->priv;

        /* O_DIRECT goes to the device, where the ring keeps requests in
         * flight while the caller goes on; run in the caller, each would
         * wait for the device. */
        iq->caller_runs = !q->poll && !q->b->direct && !ii->force_async;
        iq->cache_reads = iq->caller_runs;
    }

    memset(&p, 0, sizeof(p));
    if (q->poll)
        p.flags |= IORING_SETUP_IOPOLL;
    ret = io_uring_queue_init_params((unsigned)q->b->num_entries, &iq->ring,
                                     &p);
    if (ret < 0) {
        free(iq);
        return blkio_set_error(ret, "io_uring_queue_init with %d entries%s "
                               "for queue %d: %s", q->b->num_entries,
                               q->poll ? " (IOPOLL)" : "", q->index,
                               strerror(-ret));
    }
    iq->max_inflight = p.cq_entries;

    /* A registered file spares the kernel an fget/fput per request.  It is
     * only an optimisation: a kernel that refuses it gets the plain fd. */
    iq->fixed_file = io_uring_register_files(&iq->ring, &q->b->fd, 1) == 0;

    if (!q->poll) {
        ret = io_uring_register_eventfd(&iq->ring, q->completion_fd);
        if (ret < 0) {
            io_uring_queue_exit(&iq->ring);
            free(iq);
            return blkio_set_error(ret, "io_uring_register_eventfd for "
                                   "queue %d: %s", q->index, strerror(-ret));
        }
        /* A registered eventfd starts out signalled for every CQE. */
        q->completion_fd_enabled = true;
    }

    while (iq->nslots < iq->max_inflight) {
        if (iou_slots_grow(iq) < 0) {
            io_uring_queue_exit(&iq->ring);
            free(iq->slots);
            free(iq);
            return blkio_set_error(-ENOMEM, "out of memory creating queue "
                                   "%d", q->index);
        }
    }
    q->priv = iq;
    return 0;
}

static void iou_queue_destroy(struct blkioq *q)
{
    struct iou_queue *iq = q->priv;

    if (!iq)
        return;
    /* Closing the ring does not wait: the kernel would go on filling the
     * caller's read buffers after blkio_destroy() returned.  Cancel what
     * can be cancelled and wait (bounded) for the rest.  The slots are
     * never read by the kernel, so they can go either way. */
    uring_drain(&iq->ring, iq->inflight, q->poll, true);
    io_uring_queue_exit(&iq->ring);
    free(iq->slots);
    free(iq);
    q->priv = NULL;
}

static void iou_set_completion_fd_enabled(struct blkioq *q, bool enable)
{
    struct iou_queue *iq = q->priv;

    uring_set_eventfd_enabled(&iq->ring, enable);
}

/* ---- requests ---- */

static void iou_backlog_push(struct iou_queue *iq, uint32_t idx)
{
    iq->slots[idx].next = IOU_NONE;
    if (iq->backlog_tail == IOU_NONE)
        iq->backlog_head = idx;
    else
        iq->slots[iq->backlog_tail].next = idx;
    iq->backlog_tail = idx;
}

static void iou_slot_free(struct iou_queue *iq, uint32_t idx)
{
    iq->slots[idx].next = iq->free_head;
    iq->free_head = idx;
}

static const struct iovec *iou_req_iov(const struct iou_req *r)
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

static void iou_next_call(struct blkioq *q, const struct iou_req *r,
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

static void iou_prep_call(struct io_uring_sqe *sqe, int fd,
                          const struct iou_call *c)
{
    bool write = c->kind == IOU_CALL_WRITE;

    switch (c->kind) {
    case IOU_CALL_READ:
    case IOU_CALL_WRITE:
        /* One buffer goes without the iovec indirection. */
        if (c->iovcnt == 1)
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
static int iou_call_now(int fd, const struct iou_call *c, int extra_flags)
{
    ssize_t n;

    switch (c->kind) {
    case IOU_CALL_READ:
        n = preadv2(fd, c->iov, c->iovcnt, (off_t)c->pos, extra_flags);
        break;
    case IOU_CALL_WRITE:
        n = pwritev2(fd, c->iov, c->iovcnt, (off_t)c->pos, c->rw_flags);
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

/*
 * Hand a slot's next step to the kernel, or put it on the backlog when the
 * SQ is full or the CQ could overflow.  Never waits.
 */
static void iou_issue(struct blkioq *q, uint32_t idx, bool from_backlog)
{
    struct iou_queue *iq = q->priv;
    struct io_uring_sqe *sqe;

    /* iou_run_blocking() makes the next step itself. */
    if (BLKIO_UNLIKELY(idx == iq->caller_step)) {
        iq->caller_step_again = true;
        return;
    }
    /* Keep request order: nothing overtakes the backlog. */
    if ((!from_backlog && iq->backlog_head != IOU_NONE) ||
        iq->inflight >= iq->max_inflight)
        goto backlog;

    sqe = io_uring_get_sqe(&iq->ring);
    if (!sqe) {
        /* SQ full: pass what is there to the kernel to make room. */
        io_uring_submit(&iq->ring);
        sqe = io_uring_get_sqe(&iq->ring);
        if (!sqe)
            goto backlog;
    }
    {
        struct iou_call c;

        iou_next_call(q, &iq->slots[idx], &c);
        iou_prep_call(sqe, q->b->fd, &c);
    }
    if (iq->fixed_file) {
        sqe->fd = 0;
        sqe->flags |= IOSQE_FIXED_FILE;
    }
    if (((struct iou_instance *)q->b->priv)->force_async)
        sqe->flags |= IOSQE_ASYNC;
    io_uring_sqe_set_data64(sqe, idx);
    iq->slots[idx].in_flight = true;
    iq->inflight++;
    return;

backlog:
    iou_backlog_push(iq, idx);
}

/* Move backlogged requests into the SQ while there is room. */
static void iou_backlog_drain(struct blkioq *q)
{
    struct iou_queue *iq = q->priv;

    while (iq->backlog_head != IOU_NONE &&
           iq->inflight < iq->max_inflight &&
           io_uring_sq_space_left(&iq->ring) > 0) {
        uint32_t idx = iq->backlog_head;

        iq->backlog_head = iq->slots[idx].next;
        if (iq->backlog_head == IOU_NONE)
            iq->backlog_tail = IOU_NONE;
        iou_issue(q, idx, true);
    }
}

/*
 * A new request.  On an idle queue (nothing queued, nothing in the kernel)
 * it is held back for iou_run_held(); any later request puts it in the SQ
 * first, so that batches reach the kernel whole and in order.
 */
static void iou_start_request(struct blkioq *q, uint32_t idx)
{
    struct iou_queue *iq = q->priv;
    uint8_t op = iq->slots[idx].op;

    if (iq->held != IOU_NONE) {
        uint32_t held = iq->held;

        iq->held = IOU_NONE;
        iou_issue(q, held, false);
    } else if (iq->caller_runs && iq->inflight == 0) {
        if (op != BLKIO_OP_READ || (iq->cache_reads && iq->cache_skip == 0)) {
            iq->held = idx;
            return;
        }
        if (iq->cache_reads)
            iq->cache_skip--;
    }
    iou_issue(q, idx, false);
}

/* Plan the steps of a write zeroes or discard request; false if there is
 * no way to do it here. */
static bool iou_plan(const struct blkio *b, const struct blkio_request *req,
                     struct iou_req *r)
{
    const struct iou_instance *ii = b->priv;
    bool unmap = !(req->flags & BLKIO_REQ_NO_UNMAP);
    bool fallback = !(req->flags & BLKIO_REQ_NO_FALLBACK);
    int n = 0;

    if (req->op == BLKIO_OP_DISCARD) {
        if (ii->is_blkdev)
            r->steps[n++] = IOU_M_DISCARD;
        /* Files: a hole.  Block devices without discard: deallocating
         * write zeroes (never the slow path), since discarded data may
         * read back as anything, zeroes included. */
        r->steps[n++] = IOU_M_PUNCH;
    } else if (ii->is_blkdev) {
        /* PUNCH_HOLE on a block device is write zeroes that may unmap and
         * never falls back to writing; ZERO_RANGE keeps the blocks
         * allocated and falls back to writing zeroes in the kernel. */
        if (unmap)
            r->steps[n++] = IOU_M_PUNCH;
        if (fallback || (!unmap && ii->dev_write_zeroes))
            r->steps[n++] = IOU_M_ZERO_RANGE;
    } else {
        if (unmap)
            r->steps[n++] = IOU_M_PUNCH;
        r->steps[n++] = IOU_M_ZERO_RANGE;
        if (fallback)
            r->steps[n++] = IOU_M_WRITE_ZEROES;
    }
    if (n == 0)
        return false;
    if (req->op == BLKIO_OP_WRITE_ZEROES && (req->flags & BLKIO_REQ_FUA))
        r->steps[n++] = IOU_M_FDATASYNC;
    r->steps[n] = IOU_M_END;
    return true;
}

static int iou_queue_request(struct blkioq *q,
                             const struct blkio_request *req)
{
    struct iou_queue *iq = q->priv;
    struct iou_req *r;
    uint32_t idx;

    switch (req->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
        if (req->iovcnt > IOU_MAX_SEGMENTS)
            return -EINVAL;
        break;
    case BLKIO_OP_FLUSH:
    case BLKIO_OP_WRITE_ZEROES:
    case BLKIO_OP_DISCARD:
        /* IOPOLL rings only take reads and writes. */
        if (q->poll)
            return -ENOTSUP;
        break;
    default:
        return -ENOTSUP;
    }

    if (iq->free_head == IOU_NONE && iou_slots_grow(iq) < 0)
        return -ENOMEM;
    idx = iq->free_head;
    r = &iq->slots[idx];
    iq->free_head = r->next;

    r->user_data = req->user_data;
    r->op = (uint8_t)req->op;
    r->start = req->start;
    r->len = req->len;
    r->done = 0;
    r->fua = (req->flags & BLKIO_REQ_FUA) != 0;
    r->step = 0;
    r->iovcnt = req->iovcnt;
    r->iov = req->iov;
    r->single_iov = false;
    if (req->iov == &req->single) {
        /* blkioq_read()/write(): the iovec lives on the caller's stack. */
        r->single = req->single;
        r->single_iov = true;
    }

    if (req->op == BLKIO_OP_FLUSH) {
        r->steps[0] = IOU_M_FDATASYNC;
        r->steps[1] = IOU_M_END;
    } else if (req->op == BLKIO_OP_WRITE_ZEROES ||
               req->op == BLKIO_OP_DISCARD) {
        if (!iou_plan(q->b, req, r)) {
            iou_slot_free(iq, idx);
            return -ENOTSUP;
        }
        if (req->len == 0) {
            iou_slot_free(iq, idx);
            blkioq_fail(q, req->user_data, 0, NULL);
            return 0;
        }
    } else if (req->len == 0) {
        /* Nothing to transfer: complete without the kernel. */
        iou_slot_free(iq, idx);
        blkioq_fail(q, req->user_data, 0, NULL);
        return 0;
    }

    iou_start_request(q, idx);
    return 0;
}

static const char *iou_op_error(enum blkio_op op)
{
    switch (op) {
    case BLKIO_OP_READ:
        return "io_uring read failed";
    case BLKIO_OP_WRITE:
        return "io_uring write failed";
    case BLKIO_OP_WRITE_ZEROES:
        return "io_uring write zeroes failed";
    case BLKIO_OP_DISCARD:
        return "io_uring discard failed";
    case BLKIO_OP_FLUSH:
        return "io_uring flush failed";
    default:
        return "io_uring request failed";
    }
}

static void iou_finish(struct blkioq *q, uint32_t idx, int ret,
                       const char *msg)
{
    struct iou_queue *iq = q->priv;
    void *user_data = iq->slots[idx].user_data;
    enum blkio_op op = (enum blkio_op)iq->slots[idx].op;

    iou_slot_free(iq, idx);
    blkioq_complete(q, user_data, ret, msg ? msg : iou_op_error(op));
}

/* A read is complete: its buffers hold data now. */
static void iou_mark_read_defined(const struct iou_req *r)
{
#ifdef IOU_HAVE_MEMCHECK
    const struct iovec *iov = iou_req_iov(r);

    for (int k = 0; k < r->iovcnt; k++)
        VALGRIND_MAKE_MEM_DEFINED(iov[k].iov_base, iov[k].iov_len);
#else
    (void)r;
#endif
}

/* One CQE came back for slot idx: complete the request or take its next
 * step. */
static void iou_handle_cqe(struct blkioq *q, uint32_t idx, int res)
{
    struct iou_queue *iq = q->priv;
    struct iou_instance *ii = q->b->priv;
    struct iou_req *r = &iq->slots[idx];
    uint8_t m;

    if (r->op == BLKIO_OP_READ || r->op == BLKIO_OP_WRITE) {
        if (res < 0) {
            iou_finish(q, idx, res, NULL);
            return;
        }
        if (res == 0) {
            /* No progress.  A read of a regular file that hit end of file
             * (the file shrank under us): the rest reads as zeroes, like a
             * hole.  Anything else must not pass as success. */
            if (r->op == BLKIO_OP_READ && ii->is_reg) {
                const struct iovec *iov = iou_req_iov(r);
                uint64_t skip = r->done;

                for (int k = 0; k < r->iovcnt; k++) {
                    if (skip >= iov[k].iov_len) {
                        skip -= iov[k].iov_len;
                        continue;
                    }
                    memset((char *)iov[k].iov_base + skip, 0,
                           iov[k].iov_len - skip);
                    skip = 0;
                }
                iou_mark_read_defined(r);
                iou_finish(q, idx, 0, NULL);
            } else {
                iou_finish(q, idx, -EIO, r->op == BLKIO_OP_READ ?
                           "short read: the device returned no data" :
                           "short write: the device accepted no data");
            }
            return;
        }
        r->done += (uint64_t)res;
        if (r->done >= r->len) {
            if (r->op == BLKIO_OP_READ)
                iou_mark_read_defined(r);
            iou_finish(q, idx, 0, NULL);
        }
        else
            iou_issue(q, idx, false);  /* the remainder */
        return;
    }

    m = r->steps[r->step];
    if (m == IOU_M_WRITE_ZEROES && res > 0) {
        r->done += (uint64_t)res;
        if (r->done < r->len) {
            iou_issue(q, idx, false);
            return;
        }
        res = 0;
    } else if (m == IOU_M_WRITE_ZEROES && res == 0) {
        res = -EIO;
    }

    if (res == -EOPNOTSUPP || (res == -EINVAL && m != IOU_M_FDATASYNC &&
                               m != IOU_M_WRITE_ZEROES)) {
        /* This mode is not available here: try the next one, skipping a
         * trailing fdatasync that only belongs to a successful step. */
        uint8_t next = r->steps[r->step + 1];

        if (next == IOU_M_END || next == IOU_M_FDATASYNC) {
            iou_finish(q, idx, -ENOTSUP,
                       r->op == BLKIO_OP_DISCARD ?
                       "discard is not supported by this file or device" :
                       "write zeroes is not supported by this file or "
                       "device without falling back to writing zeroes");
            return;
        }
        r->step++;
        iou_issue(q, idx, false);
        return;
    }
    if (res < 0) {
        iou_finish(q, idx, res, NULL);
        return;
    }

    /* Success: skip the remaining alternatives, keep a trailing fdatasync
     * (FUA) if this was not it. */
    if (m != IOU_M_FDATASYNC) {
        int k = r->step + 1;

        while (r->steps[k] != IOU_M_END && r->steps[k] != IOU_M_FDATASYNC)
            k++;
        if (r->steps[k] == IOU_M_FDATASYNC) {
            r->step = (uint8_t)k;
            iou_issue(q, idx, false);
            return;
        }
    }
    iou_finish(q, idx, 0, NULL);
}

/* Move every CQE into the completion ring (or into a next step). */
static void iou_reap(struct blkioq *q)
{
    struct iou_queue *iq = q->priv;
    struct io_uring_cqe *cqe;
    unsigned head, n;

    /* No CQE is due, and a backlog only builds up behind requests in
     * flight. */
    if (iq->inflight == 0)
        return;
    do {
        n = 0;
        io_uring_for_each_cqe(&iq->ring, head, cqe) {
            uint64_t idx = cqe->user_data;

            n++;
            /* Only a slot we gave the kernel has a CQE due. */
            if (BLKIO_UNLIKELY(idx >= iq->nslots ||
                               !iq->slots[idx].in_flight))
                continue;
            iq->slots[idx].in_flight = false;
            iq->inflight--;
            iou_handle_cqe(q, (uint32_t)idx, cqe->res);
        }
        io_uring_cq_advance(&iq->ring, n);
        iou_backlog_drain(q);
    } while (n);
}

/* After a miss, this many reads (doubling per miss in a row, up to the
 * maximum) go straight to the ring: data that is not cached tends to stay
 * so, and every miss costs a system call. */
#define IOU_CACHE_BACKOFF_MAX 64

/*
 * Copy the held read from the page cache if it is all there, without
 * blocking, as io_uring's own first attempt would.  Returns false when
 * nothing was read: the ring does it.  Errors other than "would block" are
 * left to the ring too, so that they are reported the same way on both
 * paths.
 */
static bool iou_read_cached(struct blkioq *q, uint32_t idx)
{
    struct iou_queue *iq = q->priv;
    struct iou_req *r = &iq->slots[idx];
    struct iou_call c;
    int res;

    iou_next_call(q, r, &c);
    res = iou_call_now(q->b->fd, &c, RWF_NOWAIT);
    if (res >= 0) {               /* 0: end of file, as from the ring */
        iq->cache_backoff = 1;
        iou_handle_cqe(q, idx, res);    /* a partial read resubmits */
        return true;
    }
    if (res == -EAGAIN) {
        iq->cache_skip = iq->cache_backoff;
        if (iq->cache_backoff < IOU_CACHE_BACKOFF_MAX)
            iq->cache_backoff *= 2;
    } else if (res == -EOPNOTSUPP) {
        iq->cache_reads = false;    /* the file system has no RWF_NOWAIT */
    }
    return false;
}

/*
 * Run the held request's steps in the calling thread, which is about to
 * sleep until it completes anyway.  io_uring runs what it cannot do
 * without blocking on one of its worker threads: buffered writes on file
 * systems without RWF_NOWAIT for them (ext4), and every fallocate and
 * fdatasync; that is two context switches and a wake-up per step for the
 * same work.  A step interrupted (EINTR, EAGAIN) goes to the ring.
 */
static void iou_run_blocking(struct blkioq *q, uint32_t idx)
{
    struct iou_queue *iq = q->priv;
    struct iou_call c;
    int res;

    do {
        iou_next_call(q, &iq->slots[idx], &c);
        res = iou_call_now(q->b->fd, &c, 0);
        if (res == -EINTR || res == -EAGAIN) {
            iou_issue(q, idx, false);
            return;
        }
        /* Completes the request, or asks iou_issue() for the next step
         * (the rest of a short write, the next fallocate mode, FUA's
         * fdatasync), which lands back here. */
        iq->caller_step = idx;
        iq->caller_step_again = false;
        iou_handle_cqe(q, idx, res);
        iq->caller_step = IOU_NONE;
    } while (iq->caller_step_again);
}

/*
 * The held request (see iou_start_request()): a read tries the page cache;
 * anything else runs here when the caller waits for it without a deadline
 * or signal mask (a blocking system call could overrun either).
 * Otherwise, or for what that did not do, the ring.
 */
static void iou_run_held(struct blkioq *q, bool caller_waits)
{
    struct iou_queue *iq = q->priv;
    uint32_t idx = iq->held;
    uint32_t completions = blkioq_ring_count(q);

    iq->held = IOU_NONE;
    if (iq->slots[idx].op == BLKIO_OP_READ) {
        if (!iou_read_cached(q, idx))
            iou_issue(q, idx, false);
    } else if (caller_waits) {
        iou_run_blocking(q, idx);
    } else {
        iou_issue(q, idx, false);
    }
    if (blkioq_ring_count(q) != completions)
        q->completed_unsignalled = true;
}

static int iou_process(struct blkioq *q, int min,
                       const struct timespec *deadline, const sigset_t *sig)
{
    struct iou_queue *iq = q->priv;

    if (iq->held != IOU_NONE)
        iou_run_held(q, (uint32_t)min > blkioq_ring_count(q) && !deadline &&
                        !sig);

    return uring_process(q, &iq->ring, iou_reap, &iq->inflight, min,
                         deadline, sig);
}

const struct blkio_driver blkio_driver_io_uring = {
    .name = "io_uring",
    .props = iou_props,
    .nprops = sizeof(iou_props) / sizeof(iou_props[0]),
    .create = iou_create,
    .connect = iou_connect,
    .start = iou_start,
    .destroy = iou_destroy,
    .queue_init = iou_queue_init,
    .queue_destroy = iou_queue_destroy,
    .queue_request = iou_queue_request,
    .process = iou_process,
    .set_completion_fd_enabled = iou_set_completion_fd_enabled,
};
