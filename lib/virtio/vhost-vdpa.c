/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-blk-vhost-vdpa driver: the kernel's vhost-vdpa character device
 * (/dev/vhost-vdpa-N, linux/vhost.h) as a virtio transport.  The device
 * logic is the generic virtio-blk code; this file only drives the device
 * status, features, config and virtqueues through ioctls, owns the kick
 * eventfds and keeps the device's IOTLB in step with our memory.
 *
 * Memory: every region the device must reach (our ring region and the
 * application's mapped regions) goes into the IOTLB.  Where the device's
 * IOVA range covers every user address (VDUSE), a region's IOVA is its
 * virtual address, so descriptors and ring addresses carry plain pointers,
 * exactly as with vhost-user.  A device behind a platform IOMMU reports a
 * smaller range (an x86 VT-d with a 39-bit address width: below 512 GiB,
 * while user addresses go up to 2^47): there each region gets an IOVA
 * inside the range from iova.c's allocator, and the generic code
 * translates (as with VFIO).  Software devices (VDUSE) map the file
 * behind an address, hardware devices pin the pages: either way the
 * memory must stay mapped while the device may use it.
 *
 * The device only looks at its virtqueues once DRIVER_OK is set, and
 * after that it cannot take new ones; virtio.c sets it after the last
 * queue of blkio_start() and resets the device once no queue is left.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/vhost.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>

#include "internal.h"
#include "iova.h"
#include "virtio.h"
#include "virtio-blk.h"

/* Upper bound on queue-size: what the split ring index arithmetic in the
 * generic code allows, whatever larger number a device reports. */
#define VDPA_MAX_QUEUE_SIZE     32768u

/* IOTLB entries a vhost-vdpa device takes.  Measured on Linux 6.12 with
 * VDUSE (qemu-storage-daemon's vduse-blk export): the 2049th mapping fails
 * (the IOTLB message write returns EFAULT), with libblkio 1.5 as with this
 * driver, whatever the vhost module's max_iotlb_entries, RLIMIT_MEMLOCK or
 * the regions' sizes.  The kernel reports no such limit, so none is read:
 * tests/conformance/test-vm-limits.sh checks that it still holds. */
#define VDPA_IOTLB_ENTRIES      2048u

/* The highest user-space address of any Linux architecture (56 bits with
 * x86-64's 5-level paging): a device whose IOVA range reaches it takes
 * virtual addresses as IOVAs. */
#define VDPA_USER_VA_LAST       ((1ull << 57) - 1)

/* Config space the generic code reads at most. */
#define VDPA_CONFIG_MAX         256u

#define VDPA_BACKEND_WANTED                                                  \
    ((1ull << VHOST_BACKEND_F_IOTLB_MSG_V2) |                                \
     (1ull << VHOST_BACKEND_F_IOTLB_BATCH))

struct vhost_vdpa {
    struct blkio *b;
    int fd;                     /* the vhost-vdpa device, -1 if none */
    bool opened;                /* we opened fd from the path property */
    char name[64];              /* "'/dev/vhost-vdpa-N'" or "fd N", for
                                   messages */

    uint64_t backend_features;  /* negotiated */
    uint64_t offered;           /* virtio features the device offers */
    uint64_t features;          /* virtio features we accepted */
    uint32_t config_size;       /* 0: the kernel cannot tell */
    uint32_t nvqs;              /* 0: the kernel cannot tell */
    uint16_t vring_num_max;
    uint64_t iova_first, iova_last;
    bool translate;             /* IOVAs from `iova`, not virtual addresses */
    struct iova_space iova;
    uint64_t iotlb_entries;
    bool maps_by_file;          /* VDUSE: only shared file mappings reach
                                   the device */
    pid_t owner;                /* the process of VHOST_SET_OWNER */

    struct blkio_mem_region internal;
    uint64_t internal_iova;
    bool internal_mapped;

    struct virtio_kickfds kick;
};

static int vdpa_ioctl(struct vhost_vdpa *v, unsigned long req, void *arg,
                      const char *name)
{
    int r;

    do {
        r = ioctl(v->fd, req, arg);
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return blkio_set_error(-errno, "vhost-vdpa %s on %s: %m", name,
                               v->name);
    return 0;
}

#define VDPA_IOCTL(v, req, arg) vdpa_ioctl((v), (req), (arg), #req)

/* Reset on paths that must not touch the thread's error message (undoing
 * a failed connect, closing): the earlier failure is what the caller
 * needs to read. */
static void vdpa_reset_quiet(struct vhost_vdpa *v)
{
    uint8_t zero = 0;
    int r = ioctl(v->fd, VHOST_VDPA_SET_STATUS, &zero);

    (void)r;
}

/* ---- IOTLB ---- */

static int vdpa_iotlb_msg(struct vhost_vdpa *v, uint8_t type, uint64_t iova,
                          uint64_t size, uint64_t uaddr)
{
    struct vhost_msg_v2 msg;
    ssize_t r;

    memset(&msg, 0, sizeof(msg));
    msg.type = VHOST_IOTLB_MSG_V2;
    msg.iotlb.type = type;
    msg.iotlb.iova = iova;
    msg.iotlb.size = size;
    msg.iotlb.uaddr = uaddr;
    msg.iotlb.perm = type == VHOST_IOTLB_UPDATE ? VHOST_ACCESS_RW : 0;
    do {
        r = write(v->fd, &msg, sizeof(msg));
    } while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if ((size_t)r != sizeof(msg))
        return -EIO;
    return 0;
}

/*
 * One update or invalidation, without touching the error message.  With
 * IOTLB_BATCH the kernel hands the device the whole new table once at
 * BATCH_END instead of after every message; devices that take the table
 * as a whole (VDUSE) prefer that.
 */
static int vdpa_iotlb_quiet(struct vhost_vdpa *v, uint8_t type,
                            uint64_t iova, uint64_t len, const void *addr)
{
    bool batch = v->backend_features & (1ull << VHOST_BACKEND_F_IOTLB_BATCH);
    uint64_t uaddr = (uint64_t)(uintptr_t)addr;
    int ret, ret2 = 0;

    /* A batch that cannot begin still gets its message, unbatched: an
     * invalidation skipped here would leave the device a mapping of
     * memory that is about to be freed. */
    if (batch && vdpa_iotlb_msg(v, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0) < 0)
        batch = false;
    ret = vdpa_iotlb_msg(v, type, iova, len, uaddr);
    if (batch)
        ret2 = vdpa_iotlb_msg(v, VHOST_IOTLB_BATCH_END, 0, 0, 0);
    return ret < 0 ? ret : ret2;
}

/*
 * Make len bytes at addr reachable by the device; *iova gets the address
 * the device sees: addr itself, or one inside the device's IOVA range
 * where it cannot take virtual addresses.
 */
static int vdpa_map(struct vhost_vdpa *v, void *addr, uint64_t len,
                    uint64_t *iova)
{
    uint64_t at = (uint64_t)(uintptr_t)addr;
    int ret;

    if (v->translate) {
        ret = iova_reserve(&v->iova, "vhost-vdpa", at, len, &at);
        if (ret < 0)
            return ret;
    } else if (at < v->iova_first || len == 0 || at + len - 1 < at ||
               at + len - 1 > v->iova_last) {
        return blkio_set_error(-ERANGE, "vhost-vdpa: memory at %p (%llu "
                               "bytes) is outside the device's IOVA range "
                               "0x%llx-0x%llx", addr, (unsigned long long)len,
                               (unsigned long long)v->iova_first,
                               (unsigned long long)v->iova_last);
    }
    ret = vdpa_iotlb_quiet(v, VHOST_IOTLB_UPDATE, at, len, addr);
    if (ret < 0) {
        uint64_t ignored;

        if (v->translate)
            iova_release(&v->iova, (uint64_t)(uintptr_t)addr, len, &ignored);
        return blkio_set_error(ret, "vhost-vdpa: IOTLB update of %p (%llu "
                               "bytes) at IOVA 0x%llx: %s", addr,
                               (unsigned long long)len,
                               (unsigned long long)at, strerror(-ret));
    }
    *iova = at;
    return 0;
}

/* The IOVA of a mapping of exactly [addr, addr + len), forgotten by the
 * allocator; false if there is none. */
static bool vdpa_forget(struct vhost_vdpa *v, const void *addr, uint64_t len,
                        uint64_t *iova)
{
    *iova = (uint64_t)(uintptr_t)addr;
    return !v->translate || iova_release(&v->iova, *iova, len, iova) == 0;
}

/* Undo vdpa_map(); quiet (teardown paths keep the earlier error). */
static void vdpa_unmap(struct vhost_vdpa *v, const void *addr, uint64_t len)
{
    uint64_t iova;

    if (vdpa_forget(v, addr, len, &iova))
        vdpa_iotlb_quiet(v, VHOST_IOTLB_INVALIDATE, iova, len, addr);
}

/* ---- transport ops ---- */

static int vdpa_get_status(void *t, uint8_t *status)
{
    return VDPA_IOCTL((struct vhost_vdpa *)t, VHOST_VDPA_GET_STATUS, status);
}

static int vdpa_set_status(void *t, uint8_t status)
{
    return VDPA_IOCTL((struct vhost_vdpa *)t, VHOST_VDPA_SET_STATUS, &status);
}

static int vdpa_get_features(void *t, uint64_t *features)
{
    struct vhost_vdpa *v = t;
    int ret = VDPA_IOCTL(v, VHOST_GET_FEATURES, &v->offered);

    if (ret < 0)
        return ret;
    *features = v->offered;
    return 0;
}

static int vdpa_set_features(void *t, uint64_t features)
{
    struct vhost_vdpa *v = t;

    v->features = features;
    return VDPA_IOCTL(v, VHOST_SET_FEATURES, &features);
}

static int vdpa_read_config(void *t, void *buf, uint32_t len)
{
    struct vhost_vdpa *v = t;
    /* struct vhost_vdpa_config ends in a flexible array: room for it. */
    uint32_t raw[(sizeof(struct vhost_vdpa_config) + VDPA_CONFIG_MAX) / 4];
    struct vhost_vdpa_config *cfg = (struct vhost_vdpa_config *)raw;
    uint32_t n = len;
    int ret;

    if (len > VDPA_CONFIG_MAX)
        return blkio_set_error(-EINVAL, "config read of %u bytes is too "
                               "large", len);
    /* The device's config may be shorter than the newest struct: read
     * what it has, the rest stays zero (the caller cleared buf). */
    if (v->config_size && n > v->config_size)
        n = v->config_size;
    memset(raw, 0, sizeof(raw));
    cfg->off = 0;
    cfg->len = n;
    ret = VDPA_IOCTL(v, VHOST_VDPA_GET_CONFIG, cfg);
    if (ret < 0)
        return ret;
    memcpy(buf, cfg->buf, n);
    return 0;
}

static int vdpa_max_queues(void *t)
{
    struct vhost_vdpa *v = t;
    return v->nvqs > 65535 ? 65535 : (int)v->nvqs;
}

static uint64_t vdpa_max_mem_regions(void *t)
{
    struct vhost_vdpa *v = t;

    /* One IOTLB entry per region (file-backed regions spanning several
     * mappings take more); one of them holds our rings. */
    return v->iotlb_entries - 1;
}

static int vdpa_start(void *t, const struct blkio_mem_region *internal,
                      unsigned nvqs, unsigned nirqs, uint64_t *internal_addr)
{
    struct vhost_vdpa *v = t;
    int ret;

    (void)nirqs;
    if (v->nvqs && nvqs > v->nvqs)
        return blkio_set_error(-EINVAL, "vhost-vdpa device has %u "
                               "virtqueues, %u requested", v->nvqs, nvqs);
    if (v->internal_mapped) {
        /* A retried blkio_start(): the old ring memory is gone. */
        vdpa_unmap(v, v->internal.addr, v->internal.len);
        v->internal_mapped = false;
    }
    ret = vdpa_map(v, internal->addr, internal->len, &v->internal_iova);
    if (ret < 0)
        return ret;
    v->internal = *internal;
    v->internal_mapped = true;
    *internal_addr = v->internal_iova;
    return 0;
}

static int vdpa_setup_queue(void *t, const struct virtio_vq_info *info)
{
    struct vhost_vdpa *v = t;
    struct vhost_vring_state st = { .index = info->index };
    struct vhost_vring_addr addr = {
        .index = info->index,
        .desc_user_addr = info->desc_addr,
        .used_user_addr = info->used_addr,
        .avail_user_addr = info->avail_addr,
    };
    struct vhost_vring_file f = { .index = info->index };
    int kick, ret;

    if (v->nvqs && info->index >= v->nvqs)
        return blkio_set_error(-EINVAL, "vhost-vdpa device has %u "
                               "virtqueues, cannot set up virtqueue %u",
                               v->nvqs, info->index);
    kick = virtio_kickfds_get(&v->kick, info->index);
    if (kick < 0)
        return kick;

    st.num = info->num;
    ret = VDPA_IOCTL(v, VHOST_SET_VRING_NUM, &st);
    if (ret < 0)
        return ret;
    st.num = 0;
    ret = VDPA_IOCTL(v, VHOST_SET_VRING_BASE, &st);
    if (ret < 0)
        return ret;
    ret = VDPA_IOCTL(v, VHOST_SET_VRING_ADDR, &addr);
    if (ret < 0)
        return ret;
    f.fd = info->call_fd;       /* -1 unsets it */
    ret = VDPA_IOCTL(v, VHOST_SET_VRING_CALL, &f);
    if (ret < 0)
        return ret;
    f.fd = kick;
    ret = VDPA_IOCTL(v, VHOST_SET_VRING_KICK, &f);
    if (ret < 0)
        return ret;
    st.num = 1;
    return VDPA_IOCTL(v, VHOST_VDPA_SET_VRING_ENABLE, &st);
}

static void vdpa_stop_queue(void *t, unsigned index)
{
    /*
     * A running vDPA device cannot stop one of its queues; the ring memory
     * stays mapped until the device is reset, which virtio.c does once
     * the last queue is gone.
     */
    (void)t;
    (void)index;
}

static void vdpa_kick(void *t, unsigned index)
{
    struct vhost_vdpa *v = t;

    virtio_kickfds_kick(&v->kick, index);
}

/*
 * Devices that take virtual addresses (VDUSE) are handed the file behind
 * each mapping, and the kernel silently leaves out memory that is not a
 * shared file mapping (private or anonymous): requests using it would
 * never complete.  Check /proc/self/maps first and refuse such memory.
 */
static int vdpa_check_file_backed(struct vhost_vdpa *v, void *addr,
                                  size_t len)
{
    uintptr_t start = (uintptr_t)addr, end = start + len, covered = start;
    char line[512];
    bool bol = true;
    FILE *f = fopen("/proc/self/maps", "re");

    if (!f)
        return blkio_set_error(-errno, "open /proc/self/maps: %m");
    while (covered < end && fgets(line, sizeof(line), f)) {
        unsigned long lo, hi, ino;
        char perms[8];
        bool line_start = bol;

        /* Long paths: skip the rest of an overlong line. */
        bol = strchr(line, '\n') != NULL;
        if (!line_start ||
            sscanf(line, "%lx-%lx %7s %*s %*s %lu", &lo, &hi, perms,
                   &ino) != 4)
            continue;
        if (hi <= covered)
            continue;
        if (lo > covered)
            break;      /* a hole */
        if (perms[3] != 's' || ino == 0) {
            fclose(f);
            return blkio_set_error(-EINVAL, "memory at %p (%zu bytes) is "
                                   "not a shared file mapping: the VDUSE "
                                   "device %s can only reach MAP_SHARED "
                                   "memory of a file or memfd (memory from "
                                   "blkio_alloc_mem_region() is)", addr, len,
                                   v->name);
        }
        covered = hi;
    }
    fclose(f);
    if (covered < end)
        return blkio_set_error(-EFAULT, "memory at %p (%zu bytes) is not "
                               "mapped", addr, len);
    return 0;
}

static int vdpa_map_region(void *t, const struct blkio_mem_region *region,
                           uint64_t *addr)
{
    struct vhost_vdpa *v = t;

    /* The kernel looks every address up in the owner's memory: from a
     * process forked since, it would map the parent's pages at that
     * address, or nothing (and VDUSE then drops the requests). */
    if (getpid() != v->owner)
        return blkio_set_error(-EPERM, "vhost-vdpa device %s maps memory of "
                               "process %d, which opened it; memory regions "
                               "cannot be mapped from process %d (forked "
                               "since): map them before fork() or open the "
                               "device in the process that uses it",
                               v->name, (int)v->owner, (int)getpid());
    if (v->maps_by_file) {
        int ret;

        if (region->fd < 0)
            return blkio_set_error(-EINVAL, "memory region at %p has no "
                                   "file descriptor, but the VDUSE device %s "
                                   "can only reach memory of a file "
                                   "(needs-mem-region-fd is true): use "
                                   "blkio_alloc_mem_region() or map a memfd "
                                   "with MAP_SHARED and pass its fd",
                                   region->addr, v->name);
        ret = vdpa_check_file_backed(v, region->addr, region->len);

        if (ret < 0)
            return ret;
    }
    return vdpa_map(v, region->addr, region->len, addr);
}

static void vdpa_unmap_region(void *t, const struct blkio_mem_region *region)
{
    struct vhost_vdpa *v = t;

    if (v->fd >= 0)
        vdpa_unmap(v, region->addr, region->len);
}

/* At destroy: with IOTLB_BATCH, all invalidations between one BEGIN and
 * END, so that the device gets its new (empty) table once rather than once
 * per region; VDUSE answers each table change with a round trip to its
 * daemon, which made destroying 2047 regions take 6.5 s in the test VM.
 * Without batches (or if BEGIN fails) the caller unmaps one by one. */
static int vdpa_unmap_regions(void *t, const struct blkio_mem_region *regions,
                              size_t n)
{
    struct vhost_vdpa *v = t;

    if (v->fd < 0)
        return 0;
    if (!(v->backend_features & (1ull << VHOST_BACKEND_F_IOTLB_BATCH)))
        return -EOPNOTSUPP;
    if (vdpa_iotlb_msg(v, VHOST_IOTLB_BATCH_BEGIN, 0, 0, 0) < 0)
        return -EIO;
    for (size_t i = n; i > 0; i--) {
        const struct blkio_mem_region *r = &regions[i - 1];
        uint64_t iova;

        if (vdpa_forget(v, r->addr, r->len, &iova))
            vdpa_iotlb_msg(v, VHOST_IOTLB_INVALIDATE, iova, r->len,
                           (uint64_t)(uintptr_t)r->addr);
    }
    vdpa_iotlb_msg(v, VHOST_IOTLB_BATCH_END, 0, 0, 0);
    return 0;
}

static bool vdpa_remaps(void *t)
{
    return ((struct vhost_vdpa *)t)->translate;
}

static int vdpa_hangup_fd(void *t)
{
    (void)t;
    return -1;  /* a kernel device does not hang up */
}

static void vdpa_close(struct vhost_vdpa *v)
{
    virtio_kickfds_close(&v->kick);
    if (v->fd >= 0) {
        /* Stop the device before its memory goes away; closing the fd
         * also resets it, but only once the last reference is gone. */
        vdpa_reset_quiet(v);
        if (v->internal_mapped)
            vdpa_unmap(v, v->internal.addr, v->internal.len);
        close(v->fd);
    }
    v->fd = -1;
    v->internal_mapped = false;
    /* The device's mappings went with it. */
    iova_space_free(&v->iova);
}

static void vdpa_destroy(void *t)
{
    struct vhost_vdpa *v = t;

    /* The fd is ours once blkio_connect() succeeded (or we opened it). */
    vdpa_close(v);
    v->b->fd = -1;
    free(v);
}

static const struct virtio_transport_ops vdpa_ops = {
    .name            = "vhost-vdpa",
    /*
     * Our addresses are IOVAs translated by the device's IOTLB, which is
     * what ACCESS_PLATFORM says; vDPA devices require it (VDUSE refuses to
     * create a device without it).  A hardware device may need the
     * platform's DMA ordering (virtqueue.c's barriers provide it).
     */
    .transport_features = (1ull << VIRTIO_F_ACCESS_PLATFORM) |
                          (1ull << VIRTIO_F_ORDER_PLATFORM),
    .get_status      = vdpa_get_status,
    .set_status      = vdpa_set_status,
    .get_features    = vdpa_get_features,
    .set_features    = vdpa_set_features,
    .remaps          = vdpa_remaps,
    .full_indirect   = true,
    .read_config     = vdpa_read_config,
    .max_queues      = vdpa_max_queues,
    .max_mem_regions = vdpa_max_mem_regions,
    .start           = vdpa_start,
    .setup_queue     = vdpa_setup_queue,
    .stop_queue      = vdpa_stop_queue,
    .kick            = vdpa_kick,
    .map_region      = vdpa_map_region,
    .unmap_region    = vdpa_unmap_region,
    .unmap_regions   = vdpa_unmap_regions,
    .hangup_fd       = vdpa_hangup_fd,
    .destroy         = vdpa_destroy,
};

/* ---- connect ---- */

/* Is the device behind fd a VDUSE one (/sys/devices/virtual/vduse/...)? */
static bool vdpa_is_vduse(int fd)
{
    char link[64], target[512];
    struct stat st;
    ssize_t n;

    if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode))
        return false;
    snprintf(link, sizeof(link), "/sys/dev/char/%u:%u", major(st.st_rdev),
             minor(st.st_rdev));
    n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return false;
    target[n] = '\0';
    return strstr(target, "/vduse/") != NULL;
}

/* The device's IOVA range (all of it when the kernel cannot tell), and
 * whether its addresses are ours: a device that cannot take every user
 * address gets IOVAs from its range (page 0 aside, no user mapping lies
 * below a page). */
static int vdpa_probe_iova(struct vhost_vdpa *v)
{
    struct vhost_vdpa_iova_range range;

    v->iova_first = 0;
    v->iova_last = UINT64_MAX;
    if (ioctl(v->fd, VHOST_VDPA_GET_IOVA_RANGE, &range) == 0) {
        if (range.first > range.last)
            return blkio_set_error(-EIO, "vhost-vdpa device reported an "
                                   "empty IOVA range 0x%llx-0x%llx",
                                   (unsigned long long)range.first,
                                   (unsigned long long)range.last);
        v->iova_first = range.first;
        v->iova_last = range.last;
    }
    v->translate = v->iova_first > (uint64_t)sysconf(_SC_PAGESIZE) ||
                   v->iova_last < VDPA_USER_VA_LAST;
    if (v->translate)
        return iova_space_set_range(&v->iova, v->iova_first, v->iova_last);
    return 0;
}

/* Everything we learn about the device before the generic code talks
 * features and config. */
static int vdpa_probe(struct vhost_vdpa *v)
{
    uint64_t backend;
    uint32_t id, n;
    uint16_t num;
    int ret;

    ret = VDPA_IOCTL(v, VHOST_SET_OWNER, NULL);
    if (ret == -EBUSY)
        return blkio_set_error(-EBUSY, "vhost-vdpa device %s already has "
                               "an owner", v->name);
    if (ret == -ENOTTY)
        return blkio_set_error(-ENOTTY, "%s is not a vhost-vdpa device "
                               "(VHOST_SET_OWNER not supported)", v->name);
    if (ret < 0)
        return ret;
    v->owner = getpid();

    ret = VDPA_IOCTL(v, VHOST_VDPA_GET_DEVICE_ID, &id);
    if (ret < 0)
        return ret;
    if (id != VIRTIO_ID_BLOCK)
        return blkio_set_error(-ENOTSUP, "vhost-vdpa device %s is virtio "
                               "device type %u, not a block device (%u)",
                               v->name, id, VIRTIO_ID_BLOCK);

    ret = VDPA_IOCTL(v, VHOST_GET_BACKEND_FEATURES, &backend);
    if (ret < 0)
        return ret;
    if (!(backend & (1ull << VHOST_BACKEND_F_IOTLB_MSG_V2)))
        return blkio_set_error(-ENOTSUP, "vhost-vdpa device does not "
                               "support IOTLB v2 messages (backend "
                               "features 0x%llx)",
                               (unsigned long long)backend);
    backend &= VDPA_BACKEND_WANTED;
    ret = VDPA_IOCTL(v, VHOST_SET_BACKEND_FEATURES, &backend);
    if (ret < 0)
        return ret;
    v->backend_features = backend;

    /* Optional ioctls of newer kernels: without them, assume the widest
     * limits and let the device refuse. */
    ret = vdpa_probe_iova(v);
    if (ret < 0)
        return ret;
    if (ioctl(v->fd, VHOST_VDPA_GET_CONFIG_SIZE, &n) == 0)
        v->config_size = n;
    if (ioctl(v->fd, VHOST_VDPA_GET_VQS_COUNT, &n) == 0) {
        if (n == 0)
            return blkio_set_error(-EIO, "vhost-vdpa device has no "
                                   "virtqueues");
        v->nvqs = n;
    }

    ret = VDPA_IOCTL(v, VHOST_VDPA_GET_VRING_NUM, &num);
    if (ret < 0)
        return ret;
    if (num == 0)
        return blkio_set_error(-EIO, "vhost-vdpa device reported a maximum "
                               "queue size of 0");
    v->vring_num_max = num;
    v->iotlb_entries = VDPA_IOTLB_ENTRIES;
    v->maps_by_file = vdpa_is_vduse(v->fd);
    return 0;
}

static int vdpa_drv_create(struct blkio *b)
{
    struct vhost_vdpa *v = calloc(1, sizeof(*v));
    int ret;

    if (!v)
        return blkio_set_error(-ENOMEM, "out of memory creating "
                               "virtio-blk-vhost-vdpa state");
    v->b = b;
    v->fd = -1;
    ret = virtio_blk_create(b, &vdpa_ops, v);
    if (ret < 0)
        free(v);
    return ret;
}

static int vdpa_drv_connect(struct blkio *b)
{
    struct vhost_vdpa *v = virtio_blk_transport(b);
    unsigned max;
    int ret;

    if (b->path && b->fd != -1)
        return blkio_set_error(-EINVAL, "properties 'path' and 'fd' cannot "
                               "both be set");
    if (!b->path && b->fd < 0)
        return blkio_set_error(-EINVAL, "property 'path' or 'fd' must be set "
                               "to the vhost-vdpa character device before "
                               "blkio_connect()");
    if (b->path) {
        struct stat st;

        v->fd = open(b->path, O_RDWR | O_CLOEXEC);
        if (v->fd < 0)
            return blkio_set_error(-errno, "open vhost-vdpa device '%s': %m",
                                   b->path);
        if (fstat(v->fd, &st) == 0 && !S_ISCHR(st.st_mode)) {
            close(v->fd);
            v->fd = -1;
            return blkio_set_error(-ENOTTY, "'%s' is not a vhost-vdpa "
                                   "character device", b->path);
        }
        v->opened = true;
        snprintf(v->name, sizeof(v->name), "'%.60s'", b->path);
    } else {
        v->fd = b->fd;
        v->opened = false;
        snprintf(v->name, sizeof(v->name), "fd %d", b->fd);
    }

    ret = vdpa_probe(v);
    if (ret == 0)
        ret = virtio_blk_connect(b);
    if (ret < 0) {
        /* The caller's fd stays the caller's until we succeed; reset what
         * we did to the device, it may be handed to someone else. */
        if (v->opened)
            close(v->fd);
        else
            vdpa_reset_quiet(v);
        v->fd = -1;
        v->opened = false;
        return ret;
    }
    /* "fd" keeps what the caller set: -1 after connecting by path (the
     * descriptor we opened stays internal), as in libblkio. */

    max = v->vring_num_max < VDPA_MAX_QUEUE_SIZE ? v->vring_num_max
                                                 : VDPA_MAX_QUEUE_SIZE;
    while (max & (max - 1))
        max &= max - 1;         /* largest power of two below */
    b->max_queue_size = (int)max;
    if (b->queue_size > b->max_queue_size)
        b->queue_size = b->max_queue_size;
    b->needs_mem_regions = true;
    /* A software device (VDUSE) reaches memory only by mapping the file
     * behind it, page by page: it needs an fd for every region, as
     * libblkio reports, and page-aligned regions. */
    b->needs_mem_region_fd = v->maps_by_file;
    if (v->maps_by_file)
        b->mem_region_alignment = (uint64_t)sysconf(_SC_PAGESIZE);
    b->may_pin_mem_regions = true;
    return 0;
}

/* "fd": an open vhost-vdpa descriptor, or -1 for none (use "path"). */
static int vdpa_set_fd(struct blkio *b, const struct blkio_property *p,
                       const void *value)
{
    int v = *(const int *)value;

    (void)b;
    if (v < -1)
        return blkio_set_error(-EINVAL, "property '%s' must be an open file "
                               "descriptor or -1 for none, got %d", p->name,
                               v);
    return 0;
}

static const struct blkio_property vdpa_props[] = {
    BLKIO_PROP("path", PROP_STR, ST_ALL, ST_CREATED, path, NULL),
    BLKIO_PROP("fd", PROP_INT, ST_ALL, ST_CREATED, fd, vdpa_set_fd),
    VIRTIO_BLK_QUEUE_PROPS,
};

const struct blkio_driver blkio_driver_virtio_blk_vhost_vdpa = {
    .name                      = "virtio-blk-vhost-vdpa",
    .props                     = vdpa_props,
    .nprops                    = sizeof(vdpa_props) / sizeof(vdpa_props[0]),
    .create                    = vdpa_drv_create,
    .connect                   = vdpa_drv_connect,
    VIRTIO_BLK_DRIVER_OPS,
};
