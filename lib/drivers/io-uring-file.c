/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * io_uring driver, connect: open the file or block device and turn what it
 * is into properties.  Where libblkio 1.5 reports a value that only
 * depends on the kind of file, this reports the same (docs/HACKING.md,
 * "The reference").
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "io-uring.h"
#include "uring-common.h"

/* statfs f_type of FUSE file systems (linux/magic.h lacks it). */
#define IOU_FUSE_MAGIC 0x65735546

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

/*
 * Open path, or take the caller's fd, and check its access mode.  Returns
 * the fd's status flags, or a negative errno (the fd is closed again if
 * this opened it).
 */
static int iou_open(struct blkio *b)
{
    int fl, ret;

    ret = uring_check_path_or_fd(b);
    if (ret < 0)
        return ret;
    if (b->path) {
        int flags = (b->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC |
                    (b->direct ? O_DIRECT : 0);

        b->fd = open(b->path, flags);
        if (b->fd < 0)
            return blkio_set_error(-errno, "cannot open '%s'%s: %m",
                                   b->path,
                                   b->direct ? " with O_DIRECT" : "");
    }

    /* With an fd of the caller's, its status flags are the truth. */
    fl = fcntl(b->fd, F_GETFL);
    if (fl < 0) {
        ret = blkio_set_error(-errno, "fd %d: %m", b->fd);
    } else if ((fl & O_ACCMODE) == O_WRONLY) {
        ret = blkio_set_error(-EINVAL, "fd %d is open write-only; reads "
                              "need O_RDONLY or O_RDWR", b->fd);
    } else {
        b->read_only = (fl & O_ACCMODE) == O_RDONLY;
        b->direct = (fl & O_DIRECT) != 0;
        return fl;
    }
    if (b->path) {
        close(b->fd);
        b->fd = -1;
    }
    return ret;
}

/* Properties that do not depend on the kind of file. */
static void iou_set_defaults(struct blkio *b, int fl)
{
    b->max_queues = INT_MAX;
    b->supports_poll_queues = false;
    b->max_mem_regions = UINT64_MAX;
    /* Fixed buffers pin the regions' pages. */
    b->may_pin_mem_regions = b->fixed_buffers;
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
    b->optimal_buf_alignment = (int)sysconf(_SC_PAGESIZE);
    b->supports_fua_natively = false;
    b->max_write_zeroes_len = 0;
    b->discard_alignment = 0;
    b->discard_alignment_offset = 0;
    b->max_discard_len = 0;
}

/* A regular file: its size, and writes past the end extend it. */
static void iou_probe_reg(struct blkio *b, const struct stat *st)
{
    b->capacity = (uint64_t)st->st_size;
    b->can_grow = true;
    if (b->direct) {
        uint32_t oa, ma;

        iou_dio_align(b->fd, &oa, &ma);
        b->request_alignment = (int)oa;
        b->buf_alignment = (int)ma;
    }
    b->discard_alignment = b->request_alignment;
}

/*
 * A block device: its size, block sizes and what its queue offloads.
 * Write zeroes and discard report no length limit, as libblkio does: the
 * kernel splits fallocate() by the device's limits itself.
 */
static int iou_probe_blkdev(struct blkio *b, const struct stat *st)
{
    struct iou_instance *ii = b->priv;
    uint64_t size, v, discard_max = 0;
    int lbs = 512, pbs = 0;
    unsigned int io_opt = 0;

    int ro = 0;

    if (ioctl(b->fd, BLKGETSIZE64, &size) < 0)
        return blkio_set_error(-errno, "BLKGETSIZE64 on fd %d: %m", b->fd);
    /* The kernel opens a read-only block device (blockdev --setro,
     * losetup -r) for writing all the same and fails every write with
     * EPERM; say so now, when the caller can still ask for read-only. */
    if (!b->read_only && ioctl(b->fd, BLKROGET, &ro) == 0 && ro)
        return blkio_set_error(-EROFS, "block device %s is read-only: set "
                               "read-only=true to open it",
                               b->path ? b->path : "(fd)");
    b->capacity = size;
    if (ioctl(b->fd, BLKSSZGET, &lbs) < 0 || lbs <= 0)
        lbs = 512;
    ii->lbs = (uint32_t)lbs;
    if (b->direct) {
        uint32_t oa, ma;

        /* Buffered I/O goes through the page cache and takes any
         * alignment; O_DIRECT needs the logical block size. */
        b->request_alignment = lbs;
        iou_dio_align(b->fd, &oa, &ma);
        /* Older kernels report nothing for block devices: the logical
         * block size is always safe. */
        b->buf_alignment = oa == 512 && ma == 512 ? lbs : (int)ma;
    }
    if (ioctl(b->fd, BLKPBSZGET, &pbs) == 0 && pbs > 0)
        b->optimal_io_alignment = pbs;
    if (ioctl(b->fd, BLKIOOPT, &io_opt) == 0 && io_opt <= INT_MAX)
        b->optimal_io_size = (int)io_opt;
    if (iou_sysfs_queue_u64(st->st_rdev, "write_zeroes_max_bytes", &v))
        ii->dev_write_zeroes = v > 0;
    if (iou_sysfs_queue_u64(st->st_rdev, "discard_max_bytes", &v))
        discard_max = v;
    if (discard_max &&
        iou_sysfs_queue_u64(st->st_rdev, "discard_granularity", &v) &&
        v <= INT_MAX)
        b->discard_alignment = (int)v;
    if (b->discard_alignment &&
        iou_sysfs_u64(st->st_rdev, "discard_alignment", &v) &&
        v < (uint64_t)b->discard_alignment)
        b->discard_alignment_offset = (int)v;
    return 0;
}

/* Read-only zero pages for the write-zeroes fallback: costs address
 * space, not memory. */
static int iou_map_zero_buf(struct iou_instance *ii)
{
    ii->zero_buf = mmap(NULL, IOU_ZERO_CHUNK, PROT_READ,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ii->zero_buf == MAP_FAILED) {
        ii->zero_buf = NULL;
        return blkio_set_error(-ENOMEM, "mmap of the zero buffer: %m");
    }
    for (int i = 0; i < IOU_ZERO_IOVS; i++) {
        ii->zero_iov[i].iov_base = ii->zero_buf;
        ii->zero_iov[i].iov_len = IOU_ZERO_CHUNK;
    }
    return 0;
}

int iou_connect(struct blkio *b)
{
    struct iou_instance *ii = b->priv;
    bool opened = b->path != NULL;
    struct stat st;
    struct statfs sfs;
    uint64_t v;
    int fl, ret;

    fl = iou_open(b);
    if (fl < 0)
        return fl;
    iou_set_defaults(b, fl);

    if (fstat(b->fd, &st) < 0) {
        ret = blkio_set_error(-errno, "fstat fd %d: %m", b->fd);
        goto fail;
    }
    ii->is_reg = S_ISREG(st.st_mode);
    ii->is_blkdev = S_ISBLK(st.st_mode);
    if (ii->is_reg) {
        iou_probe_reg(b, &st);
    } else if (ii->is_blkdev) {
        ret = iou_probe_blkdev(b, &st);
        if (ret < 0)
            goto fail;
    } else {
        ret = blkio_set_error(-EINVAL, "%s is neither a regular file nor a "
                              "block device", b->path ? b->path : "fd");
        goto fail;
    }

    /*
     * FUSE ignores IOCB_NOWAIT on some paths (direct_io files): io_uring
     * would then run the read inline and block in io_uring_enter, so that
     * submitting (do_io with min 0) hangs and deadlines do not work.  Make
     * io_uring hand every request to its worker threads instead.
     */
    if (ii->is_reg && fstatfs(b->fd, &sfs) == 0 &&
        sfs.f_type == IOU_FUSE_MAGIC)
        ii->force_async = true;

    /*
     * Poll queues (IORING_SETUP_IOPOLL) only work with O_DIRECT on a
     * device whose driver has poll queues.  Elsewhere the kernel accepts
     * the ring but Linux 6.x fails every polled read with -EOPNOTSUPP, so
     * do not claim support.  (libblkio 1.5 says true for any O_DIRECT file
     * and its poll-queue reads then fail: a deliberate difference.)
     */
    if (b->direct &&
        iou_sysfs_queue_u64(ii->is_reg ? st.st_dev : st.st_rdev, "io_poll",
                            &v) && v)
        b->supports_poll_queues = true;

    /* Memory regions need what the buffers need (libblkio says so too). */
    b->mem_region_alignment = (uint64_t)b->buf_alignment;

    ret = iou_map_zero_buf(ii);
    if (ret < 0)
        goto fail;
    ii->owns_fd = true;
    return 0;

fail:
    if (opened) {
        close(b->fd);
        b->fd = -1;
    }
    return ret;
}

/*
 * driver->refresh_property(): the capacity is the file's or device's size
 * now, as libblkio reports it, also after the file grew or shrank under
 * the instance.  A request that extends the file updates it as well
 * (io-uring.c), so that a reader racing with it never sees less.
 */
void iou_refresh_property(struct blkio *b, const struct blkio_property *p)
{
    const struct iou_instance *ii = b->priv;
    uint64_t size;
    struct stat st;

    if (p->offset != offsetof(struct blkio, capacity) || b->fd < 0)
        return;
    if (ii->is_reg && fstat(b->fd, &st) == 0)
        size = (uint64_t)st.st_size;
    else if (!ii->is_blkdev || ioctl(b->fd, BLKGETSIZE64, &size) < 0)
        return;
    __atomic_store_n(&b->capacity, size, __ATOMIC_RELAXED);
}
