/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nvme-io_uring: NVMe commands sent straight to a namespace's generic
 * character device (/dev/ngXnY) with io_uring passthrough
 * (IORING_OP_URING_CMD, NVME_URING_CMD_IO).
 *
 * Connect reads the controller and namespace with admin Identify commands
 * (NVME_IOCTL_ADMIN_CMD on the same character device) and turns what they
 * say into properties.  Each queue is one io_uring with 128-byte SQEs (the
 * NVMe command lives in the SQE) and 32-byte CQEs, the device file
 * registered as fixed file 0, and a pool of request slots that never moves
 * in memory, because the kernel may read a slot's DSM range or the iovec
 * copy long after submission (when it punts a command to its workers).
 *
 * A request that needs more than one NVMe command (write zeroes, discard
 * or report zones longer than one command allows, or write zeroes done by
 * writing a zero buffer) is run as a chain: the next command is issued when
 * the previous one completes.  That is slower than fanning out, but keeps
 * one command per slot in flight and writes zoned namespaces strictly in
 * order, which sequential-write-required zones demand.
 */
#include <errno.h>
#include <endian.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/nvme_ioctl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "internal.h"
#include "uring-common.h"

/* ---- NVMe definitions (NVM Express Base 2.0, NVM and ZNS command sets) ---- */

#define NVME_ADMIN_IDENTIFY   0x06

#define NVME_CNS_NS           0x00  /* Identify Namespace */
#define NVME_CNS_CTRL         0x01  /* Identify Controller */
#define NVME_CNS_NS_DESC_LIST 0x03  /* Namespace Identification Descriptors */
#define NVME_CNS_CS_NS        0x05  /* I/O command set specific namespace */
#define NVME_CNS_CS_CTRL      0x06  /* I/O command set specific controller */

#define NVME_CSI_NVM          0x00
#define NVME_CSI_ZNS          0x02
#define NVME_NIDT_CSI         0x04

#define NVME_CMD_FLUSH        0x00
#define NVME_CMD_WRITE        0x01
#define NVME_CMD_READ         0x02
#define NVME_CMD_WRITE_ZEROES 0x08
#define NVME_CMD_DSM          0x09
#define NVME_CMD_ZONE_MGMT_SEND 0x79
#define NVME_CMD_ZONE_MGMT_RECV 0x7a

#define NVME_RW_FUA           (1u << 30)  /* CDW12 of Write / Write Zeroes */
#define NVME_WZ_DEAC          (1u << 25)  /* CDW12 of Write Zeroes */
#define NVME_DSM_AD           (1u << 2)   /* CDW11 of DSM: deallocate */

#define NVME_ONCS_DSM         (1u << 2)
#define NVME_ONCS_WRITE_ZEROES (1u << 3)

#define NVME_ZSA_CLOSE        0x01
#define NVME_ZSA_FINISH       0x02
#define NVME_ZSA_OPEN         0x03
#define NVME_ZSA_RESET        0x04
#define NVME_ZSA_SELECT_ALL   (1u << 8)   /* CDW13 of Zone Management Send */
#define NVME_ZRA_REPORT       0x00
#define NVME_ZRA_PARTIAL      (1u << 16)  /* CDW13 of Zone Management Recv */

#define NVME_ZONE_DESC_SIZE   64          /* as is the report header */
#define NVME_ZA_RZR           (1u << 2)   /* zone attribute: reset recommended */

/* The NVMe spec sizes these in units of the controller's minimum memory
 * page size, CAP.MPSMIN, which lives in a register the character device
 * cannot read.  Linux on x86_64 refuses controllers whose MPSMIN exceeds
 * 4 KiB, so any controller we can talk to here uses 4 KiB. */
#define NVME_MIN_PAGE_SIZE    4096u

/* Commands carry a 16-bit zero-based block count. */
#define NVME_MAX_NLB          65536u

/* Zero buffer for write zeroes on controllers without Write Zeroes. */
#define NVME_ZERO_BUF_MAX     (1024u * 1024u)

/* io_uring's limit on SQ entries (IORING_MAX_ENTRIES). */
#define NVME_MAX_ENTRIES      32768

#define NVME_SLOTS_PER_CHUNK  64u
#define NVME_SLOT_NONE        UINT32_MAX

/* One DSM range (NVM command set, Dataset Management). */
struct nvme_dsm_range {
    uint32_t cattr;
    uint32_t nlb;    /* not zero-based */
    uint64_t slba;
};

static inline uint16_t nvme_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t nvme_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static inline uint64_t nvme_le64(const uint8_t *p)
{
    return (uint64_t)nvme_le32(p) | ((uint64_t)nvme_le32(p + 4) << 32);
}

static inline uint32_t nvme_cpu_to_le32(uint32_t v)
{
    return htole32(v);
}

static inline uint64_t nvme_cpu_to_le64(uint64_t v)
{
    return htole64(v);
}

/* ---- driver state ---- */

struct nvme_state {
    bool owns_fd;
    uint32_t nsid;
    unsigned lba_shift;
    uint32_t csi;
    uint16_t oncs;
    bool deac;                  /* Write Zeroes may deallocate, reads zero */
    uint32_t wz_max_blocks;     /* per Write Zeroes command */
    uint32_t dsm_max_blocks;    /* per DSM range */
    uint32_t report_max_zones;  /* zone descriptors per report command */
    uint64_t zone_blocks;       /* zone size in blocks (zoned only) */
    void *zero_buf;             /* write zeroes fallback, read-only */
    uint32_t zero_buf_blocks;
};

/* One request, from queueing to blkioq_complete().  Everything a command
 * needs is copied in at queueing, so that a request can wait on the
 * backlog; chained requests advance lba/nlb_left one command at a time. */
struct nvme_slot {
    void *user_data;
    enum blkio_op op;
    uint32_t flags;
    uint32_t next;              /* free list or backlog link */
    bool in_flight;             /* a CQE is due for this slot */
    bool vec;                   /* read/write: addr is an iovec array */
    uint32_t data_len;          /* read/write: bytes, or iovec count */
    uint64_t addr;              /* read/write: buffer or iovec array */
    uint64_t lba;
    uint64_t nlb_left;          /* blocks not yet issued (read/write too) */
    uint32_t zsa;               /* zone management send action */
    struct nvme_dsm_range dsm;  /* read by the device: stays put */
    /* report zones */
    struct blkio_zone *zones;
    uint32_t nr_zones;
    uint32_t zones_done;
    uint8_t *report_buf;
    uint32_t report_len;
};

struct nvme_queue {
    struct io_uring ring;
    struct blkioq *q;
    struct nvme_slot **chunks;  /* never reallocated slots, see above */
    uint32_t nchunks;
    uint32_t free_head;
    uint32_t backlog_head;      /* requests waiting for room in the rings */
    uint32_t backlog_tail;
    uint32_t inflight;          /* SQEs prepared and not yet reaped */
    uint32_t max_inflight;      /* CQ ring size: the CQ cannot overflow */
    uint32_t bad_cqes;          /* CQEs that matched no command */
};

/* ---- properties ---- */

static const struct blkio_property nvme_props[] = {
    BLKIO_PROP("fd", PROP_INT, ST_ALL, ST_CREATED, fd,
               blkio_prop_set_nonneg_int),
    BLKIO_PROP("path", PROP_STR, ST_ALL, ST_CREATED, path, NULL),
    BLKIO_PROP("num-entries", PROP_INT, ST_AFTER_CONNECT, ST_CONNECTED,
               num_entries, blkio_prop_set_positive_int),
    BLKIO_PROP("zoned", PROP_INT, ST_AFTER_CONNECT, 0, zoned, NULL),
    BLKIO_PROP("max_active_zones", PROP_INT, ST_AFTER_CONNECT, 0,
               max_active_zones, NULL),
    BLKIO_PROP("max_open_zones", PROP_INT, ST_AFTER_CONNECT, 0,
               max_open_zones, NULL),
    BLKIO_PROP("zone_size", PROP_UINT64, ST_AFTER_CONNECT, 0, zone_size,
               NULL),
    BLKIO_PROP("nr_zones", PROP_UINT64, ST_AFTER_CONNECT, 0, nr_zones, NULL),
    BLKIO_PROP("append_support", PROP_BOOL, ST_AFTER_CONNECT, 0,
               append_support, NULL),
    BLKIO_PROP("zone_append_max_bytes", PROP_UINT64, ST_AFTER_CONNECT, 0,
               zone_append_max_bytes, NULL),
};

/* ---- connect ---- */

static int nvme_create(struct blkio *b)
{
    struct nvme_state *s = calloc(1, sizeof(*s));

    if (!s)
        return blkio_set_error(-ENOMEM, "out of memory creating nvme-io_uring "
                               "instance");
    b->priv = s;
    b->num_entries = 128;
    b->can_add_queues = true;
    return 0;
}

/* Admin passthrough needs CAP_SYS_ADMIN; say so up front rather than
 * failing later with a bare EACCES from an ioctl. */
static int nvme_check_cap(void)
{
    struct __user_cap_header_struct hdr = {
        .version = _LINUX_CAPABILITY_VERSION_3,
        .pid = 0,
    };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

    if (syscall(SYS_capget, &hdr, data) < 0)
        return blkio_set_error(-errno, "capget: %m");
    if (!(data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective &
          CAP_TO_MASK(CAP_SYS_ADMIN)))
        return blkio_set_error(-EPERM, "nvme-io_uring needs the "
                               "CAP_SYS_ADMIN capability");
    return 0;
}

/* Admin Identify through the namespace's character device.  Returns 0, a
 * negative errno, or a positive NVMe status (the caller decides whether
 * that is fatal). */
static int nvme_identify(int fd, uint32_t nsid, uint8_t cns, uint8_t csi,
                         void *buf)
{
    struct nvme_admin_cmd cmd = {
        .opcode = NVME_ADMIN_IDENTIFY,
        .nsid = nsid,
        .addr = (uint64_t)(uintptr_t)buf,
        .data_len = 4096,
        .cdw10 = cns,
        .cdw11 = (uint32_t)csi << 24,
    };
    int ret;

    memset(buf, 0, 4096);
    ret = ioctl(fd, NVME_IOCTL_ADMIN_CMD, &cmd);
    return ret < 0 ? -errno : ret;
}

/* Read /sys/block/nvmeXnY/queue/ATTR for the block device that shares the
 * namespace with character device ngXnY.  Returns -1 if there is none (a
 * namespace the block layer does not support has only the char device). */
static long long nvme_sysfs_queue_attr(int fd, const char *attr)
{
    char link[PATH_MAX], target[PATH_MAX], path[PATH_MAX];
    const char *name;
    struct stat st;
    unsigned ctrl, ns;
    long long v = -1;
    ssize_t n;
    FILE *f;

    if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode))
        return -1;
    snprintf(link, sizeof(link), "/sys/dev/char/%u:%u", major(st.st_rdev),
             minor(st.st_rdev));
    n = readlink(link, target, sizeof(target) - 1);
    if (n < 0)
        return -1;
    target[n] = '\0';
    name = strrchr(target, '/');
    name = name ? name + 1 : target;
    if (sscanf(name, "ng%un%u", &ctrl, &ns) != 2)
        return -1;
    snprintf(path, sizeof(path), "/sys/block/nvme%un%u/queue/%s", ctrl, ns,
             attr);
    f = fopen(path, "re");
    if (!f)
        return -1;
    if (fscanf(f, "%lld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* The namespace's command set, from its identification descriptors.  A
 * controller too old to list them only has the NVM command set. */
static uint32_t nvme_ns_csi(int fd, uint32_t nsid, uint8_t *buf)
{
    if (nvme_identify(fd, nsid, NVME_CNS_NS_DESC_LIST, 0, buf) != 0)
        return NVME_CSI_NVM;
    for (size_t off = 0; off + 4 <= 4096;) {
        uint8_t nidt = buf[off], nidl = buf[off + 1];

        if (nidt == 0)
            break;
        if (nidt == NVME_NIDT_CSI && nidl >= 1 && off + 4 < 4096)
            return buf[off + 4];
        off += 4u + nidl;
    }
    return NVME_CSI_NVM;
}

static int nvme_probe(struct blkio *b, int fd)
{
    struct nvme_state *s = b->priv;
    uint8_t *id;
    uint8_t flbas, lbaf_index, mdts, vwc, dlfeat, nsfeat;
    uint32_t lbaf, lba_size;
    uint64_t nsze, max_xfer;
    long long hw_kb, segs, io_poll;
    int ret;

    if (posix_memalign((void **)&id, 4096, 4096) != 0)
        return blkio_set_error(-ENOMEM, "out of memory for identify data");

    ret = ioctl(fd, NVME_IOCTL_ID);
    if (ret <= 0) {
        ret = blkio_set_error(ret < 0 ? -errno : -ENOTTY,
                              "NVME_IOCTL_ID on '%s' failed: %s (is it an "
                              "NVMe namespace character device?)",
                              b->path ? b->path : "fd",
                              ret < 0 ? strerror(errno) : "no namespace");
        goto out;
    }
    s->nsid = (uint32_t)ret;

    /* Command set: NVM, or ZNS (which builds on NVM and keeps its reads
     * and writes).  Anything else is not a block device. */
    s->csi = nvme_ns_csi(fd, s->nsid, id);
    if (s->csi != NVME_CSI_NVM && s->csi != NVME_CSI_ZNS) {
        ret = blkio_set_error(-ENOTSUP, "namespace %u uses I/O command set "
                              "%u, but nvme-io_uring needs the NVM command "
                              "set (0) or zoned namespaces (2)", s->nsid,
                              s->csi);
        goto out;
    }

    ret = nvme_identify(fd, 0, NVME_CNS_CTRL, 0, id);
    if (ret != 0) {
        ret = blkio_set_error(ret < 0 ? ret : -EIO, "identify controller "
                              "failed: %s%d", ret < 0 ? "errno " : "nvme "
                              "status ", ret < 0 ? -ret : ret);
        goto out;
    }
    mdts = id[77];
    s->oncs = nvme_le16(id + 520);
    vwc = id[525];

    ret = nvme_identify(fd, s->nsid, NVME_CNS_NS, 0, id);
    if (ret != 0) {
        ret = blkio_set_error(ret < 0 ? ret : -EIO, "identify namespace %u "
                              "failed: %s%d", s->nsid, ret < 0 ? "errno " :
                              "nvme status ", ret < 0 ? -ret : ret);
        goto out;
    }
    nsze = nvme_le64(id + 0);
    nsfeat = id[24];
    flbas = id[26];
    dlfeat = id[33];
    /* FLBAS bits 3:0 are the low bits of the format index, 6:5 the high */
    lbaf_index = (uint8_t)((flbas & 0xf) | ((flbas >> 5) & 0x3) << 4);
    lbaf = nvme_le32(id + 128 + 4u * lbaf_index);
    if ((lbaf & 0xffff) != 0) {
        ret = blkio_set_error(-ENOTSUP, "namespace %u is formatted with %u "
                              "bytes of metadata per block, which "
                              "nvme-io_uring does not support", s->nsid,
                              lbaf & 0xffff);
        goto out;
    }
    s->lba_shift = (lbaf >> 16) & 0xff;
    if (s->lba_shift < 9 || s->lba_shift > 20) {
        ret = blkio_set_error(-ENOTSUP, "namespace %u has an unsupported "
                              "LBA data size 2^%u", s->nsid, s->lba_shift);
        goto out;
    }
    lba_size = 1u << s->lba_shift;
    if (nsze == 0 || nsze > UINT64_MAX >> s->lba_shift) {
        ret = blkio_set_error(-ENOTSUP, "namespace %u reports an unusable "
                              "size of %llu blocks", s->nsid,
                              (unsigned long long)nsze);
        goto out;
    }

    b->capacity = nsze << s->lba_shift;
    b->request_alignment = (int)lba_size;
    /* The kernel maps user buffers for DMA directly when addresses and
     * lengths are multiples of 4 (NVMe's dword alignment) and bounces them
     * otherwise; ask for what keeps I/O zero-copy. */
    b->buf_alignment = 4;
    b->optimal_buf_alignment = (int)NVME_MIN_PAGE_SIZE;
    b->optimal_io_alignment = (int)lba_size;
    b->optimal_io_size = 0;
    if (nsfeat & (1u << 4)) {
        /* OPTPERF: NPWG (preferred write granularity) and NOWS are valid */
        uint32_t npwg = nvme_le16(id + 64) + 1u;
        uint32_t nows = nvme_le16(id + 72) + 1u;

        if (npwg > 1 && npwg <= ((unsigned)INT_MAX >> s->lba_shift))
            b->optimal_io_alignment = (int)(npwg << s->lba_shift);
        if (nows > 1 && nows <= ((unsigned)INT_MAX >> s->lba_shift) &&
            nows % (npwg ? npwg : 1) == 0)
            b->optimal_io_size = (int)(nows << s->lba_shift);
    }
    /* Deallocate from Write Zeroes only where deallocated blocks read back
     * as zeroes: DLFEAT read behaviour 001b and the DEAC-in-Write-Zeroes
     * bit, as Linux does. */
    s->deac = (dlfeat & 0x7) == 0x1 && (dlfeat & (1u << 3));

    /* Largest transfer: MDTS (2^n minimum pages, 0 = no limit), capped by
     * what the kernel will map for one passthrough command. */
    max_xfer = mdts ? (uint64_t)NVME_MIN_PAGE_SIZE << mdts : 0;
    hw_kb = nvme_sysfs_queue_attr(fd, "max_hw_sectors_kb");
    if (hw_kb > 0 && (max_xfer == 0 || (uint64_t)hw_kb * 1024 < max_xfer))
        max_xfer = (uint64_t)hw_kb * 1024;
    if (max_xfer == 0)
        max_xfer = 2u * 1024 * 1024;     /* unknown: stay conservative */
    if (max_xfer > (uint64_t)NVME_MAX_NLB << s->lba_shift)
        max_xfer = (uint64_t)NVME_MAX_NLB << s->lba_shift;
    if (max_xfer > (uint64_t)(INT_MAX & ~(lba_size - 1)))
        max_xfer = INT_MAX & ~(lba_size - 1);
    max_xfer &= ~(uint64_t)(lba_size - 1);
    b->max_transfer = (int)max_xfer;

    segs = nvme_sysfs_queue_attr(fd, "max_segments");
    b->max_segments = segs > 0 && segs < 1024 ? (int)segs : 1024;
    b->max_segment_len = 0;

    io_poll = nvme_sysfs_queue_attr(fd, "io_poll");
    b->supports_poll_queues = io_poll == 1;

    b->flush_needed = vwc & 1;
    b->supports_fua_natively = true;
    b->max_queues = INT_MAX;
    b->needs_mem_regions = false;
    b->needs_mem_region_fd = false;
    b->may_pin_mem_regions = false;
    b->max_mem_regions = UINT64_MAX;

    /* Limits from the NVM command set specific controller data.  A
     * controller that does not have it gets the command-format limits. */
    s->wz_max_blocks = NVME_MAX_NLB;
    s->dsm_max_blocks = UINT32_MAX;
    if (nvme_identify(fd, 0, NVME_CNS_CS_CTRL, NVME_CSI_NVM, id) == 0) {
        uint8_t wzsl = id[1];
        uint32_t dmrsl = nvme_le32(id + 4);

        if (wzsl) {
            uint64_t blocks = ((uint64_t)NVME_MIN_PAGE_SIZE << wzsl) >>
                              s->lba_shift;
            if (blocks && blocks < s->wz_max_blocks)
                s->wz_max_blocks = (uint32_t)blocks;
        }
        if (dmrsl)
            s->dsm_max_blocks = dmrsl;
    }
    if (s->oncs & NVME_ONCS_WRITE_ZEROES)
        b->max_write_zeroes_len = (uint64_t)s->wz_max_blocks << s->lba_shift;
    else
        b->max_write_zeroes_len = 0;
    if (s->oncs & NVME_ONCS_DSM) {
        b->max_discard_len = (uint64_t)s->dsm_max_blocks << s->lba_shift;
        b->discard_alignment = (int)lba_size;
    } else {
        b->max_discard_len = 0;
        b->discard_alignment = 0;
    }
    b->discard_alignment_offset = 0;

    /* Report zones: as many descriptors per command as one transfer holds */
    s->report_max_zones = (uint32_t)(max_xfer / NVME_ZONE_DESC_SIZE) - 1;

    b->zoned = 0;
    if (s->csi == NVME_CSI_ZNS) {
        uint32_t mar, mor;
        uint8_t zasl;

        ret = nvme_identify(fd, s->nsid, NVME_CNS_CS_NS, NVME_CSI_ZNS, id);
        if (ret != 0) {
            ret = blkio_set_error(ret < 0 ? ret : -EIO, "identify zoned "
                                  "namespace %u failed: %s%d", s->nsid,
                                  ret < 0 ? "errno " : "nvme status ",
                                  ret < 0 ? -ret : ret);
            goto out;
        }
        mar = nvme_le32(id + 4);
        mor = nvme_le32(id + 8);
        /* LBA format extensions start at byte 2816, 16 bytes each */
        s->zone_blocks = nvme_le64(id + 2816 + 16u * lbaf_index);
        if (s->zone_blocks == 0) {
            ret = blkio_set_error(-ENOTSUP, "zoned namespace %u reports a "
                                  "zone size of 0", s->nsid);
            goto out;
        }
        b->zoned = 2;   /* ZNS zones are sequential-write-required */
        b->zone_size = s->zone_blocks << s->lba_shift;
        b->nr_zones = nsze / s->zone_blocks;
        /* zero-based counts; all ones means no limit (reported as 0) */
        b->max_active_zones = mar == UINT32_MAX ? 0 :
                              (int)(mar < INT_MAX ? mar + 1 : INT_MAX);
        b->max_open_zones = mor == UINT32_MAX ? 0 :
                            (int)(mor < INT_MAX ? mor + 1 : INT_MAX);
        /* Zone Append is mandatory in ZNS; ZASL 0 means "as MDTS" */
        b->append_support = true;
        b->zone_append_max_bytes = (uint64_t)b->max_transfer;
        if (nvme_identify(fd, 0, NVME_CNS_CS_CTRL, NVME_CSI_ZNS, id) == 0) {
            zasl = id[0];
            if (zasl) {
                uint64_t zab = (uint64_t)NVME_MIN_PAGE_SIZE << zasl;
                if (zab < b->zone_append_max_bytes)
                    b->zone_append_max_bytes = zab;
            }
        }
    }
    ret = 0;
out:
    free(id);
    return ret;
}

static int nvme_connect(struct blkio *b)
{
    struct nvme_state *s = b->priv;
    bool opened = false;
    struct stat st;
    int fd = b->fd;
    int ret;

    if (b->path && b->path[0] && fd >= 0)
        return blkio_set_error(-EINVAL, "set either path or fd, not both "
                               "(path '%s', fd %d)", b->path, fd);
    if ((!b->path || !b->path[0]) && fd < 0)
        return blkio_set_error(-EINVAL, "nvme-io_uring needs the path or fd "
                               "property");

    ret = nvme_check_cap();
    if (ret < 0)
        return ret;

    if (fd < 0) {
        fd = open(b->path, (b->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (fd < 0)
            return blkio_set_error(-errno, "open '%s': %m", b->path);
        opened = true;
    }
    if (fstat(fd, &st) < 0) {
        ret = blkio_set_error(-errno, "fstat fd %d: %m", fd);
        goto err;
    }
    if (!S_ISCHR(st.st_mode)) {
        ret = blkio_set_error(-EINVAL, "'%s' is not a character device: "
                              "nvme-io_uring needs the namespace's generic "
                              "device (e.g. /dev/ng0n1)",
                              b->path ? b->path : "fd");
        goto err;
    }

    ret = nvme_probe(b, fd);
    if (ret < 0)
        goto err;

    b->fd = fd;
    s->owns_fd = true;  /* opened by us, or handed over by a good connect */
    return 0;

err:
    if (opened)
        close(fd);
    return ret;
}

static int nvme_start(struct blkio *b)
{
    struct nvme_state *s = b->priv;

    if (b->num_entries > NVME_MAX_ENTRIES)
        return blkio_set_error(-EINVAL, "num-entries %d exceeds io_uring's "
                               "maximum of %d", b->num_entries,
                               NVME_MAX_ENTRIES);

    /* Write zeroes without the command: write from one zero buffer that
     * every queue shares; the device only ever reads it. */
    if (!(s->oncs & NVME_ONCS_WRITE_ZEROES) && !b->read_only &&
        !s->zero_buf) {
        uint32_t len = (uint32_t)b->max_transfer;

        if (len > NVME_ZERO_BUF_MAX)
            len = NVME_ZERO_BUF_MAX;
        if (posix_memalign(&s->zero_buf, NVME_MIN_PAGE_SIZE, len) != 0)
            return blkio_set_error(-ENOMEM, "out of memory for the %u byte "
                                   "zero buffer", len);
        memset(s->zero_buf, 0, len);
        s->zero_buf_blocks = len >> s->lba_shift;
    }
    return 0;
}

static void nvme_destroy(struct blkio *b)
{
    struct nvme_state *s = b->priv;

    if (!s)
        return;
    if (s->owns_fd && b->fd >= 0) {
        close(b->fd);
        b->fd = -1;
    }
    free(s->zero_buf);
    free(s);
    b->priv = NULL;
}

/* ---- queues and slots ---- */

static inline struct nvme_slot *nvme_slot(struct nvme_queue *nq, uint32_t i)
{
    return &nq->chunks[i / NVME_SLOTS_PER_CHUNK][i % NVME_SLOTS_PER_CHUNK];
}

/* Add a chunk of free slots.  Happens while the queue warms up to its
 * peak depth, never per request in steady state. */
static int nvme_slots_grow(struct nvme_queue *nq)
{
    struct nvme_slot **nc, *chunk;
    uint32_t base = nq->nchunks * NVME_SLOTS_PER_CHUNK;

    if (nq->nchunks >= UINT32_MAX / NVME_SLOTS_PER_CHUNK - 1)
        return -ENOMEM;
    nc = realloc(nq->chunks, (nq->nchunks + 1) * sizeof(*nc));
    if (!nc)
        return -ENOMEM;
    nq->chunks = nc;
    chunk = calloc(NVME_SLOTS_PER_CHUNK, sizeof(*chunk));
    if (!chunk)
        return -ENOMEM;
    nq->chunks[nq->nchunks++] = chunk;
    for (uint32_t i = 0; i < NVME_SLOTS_PER_CHUNK; i++)
        chunk[i].next = i + 1 < NVME_SLOTS_PER_CHUNK ? base + i + 1
                                                     : nq->free_head;
    nq->free_head = base;
    return 0;
}

static int nvme_slot_alloc(struct nvme_queue *nq, uint32_t *idx)
{
    if (BLKIO_UNLIKELY(nq->free_head == NVME_SLOT_NONE) &&
        nvme_slots_grow(nq) < 0)
        return -ENOMEM;
    *idx = nq->free_head;
    nq->free_head = nvme_slot(nq, *idx)->next;
    return 0;
}

static void nvme_slot_free(struct nvme_queue *nq, uint32_t idx)
{
    struct nvme_slot *sl = nvme_slot(nq, idx);

    sl->next = nq->free_head;
    nq->free_head = idx;
}

static void nvme_queue_free(struct nvme_queue *nq)
{
    for (uint32_t c = 0; c < nq->nchunks; c++) {
        for (uint32_t i = 0; i < NVME_SLOTS_PER_CHUNK; i++)
            free(nq->chunks[c][i].report_buf);
        free(nq->chunks[c]);
    }
    free(nq->chunks);
    free(nq);
}

static int nvme_queue_init(struct blkioq *q)
{
    struct blkio *b = q->b;
    struct nvme_queue *nq = calloc(1, sizeof(*nq));
    struct io_uring_params p = {
        .flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32,
    };
    int ret;

    if (!nq)
        return blkio_set_error(-ENOMEM, "out of memory creating queue %d",
                               q->index);
    nq->q = q;
    nq->free_head = NVME_SLOT_NONE;
    nq->backlog_head = NVME_SLOT_NONE;
    nq->backlog_tail = NVME_SLOT_NONE;
    if (q->poll)
        p.flags |= IORING_SETUP_IOPOLL;

    ret = io_uring_queue_init_params((unsigned)b->num_entries, &nq->ring, &p);
    if (ret < 0) {
        blkio_set_error(ret, "io_uring_queue_init with %d entries "
                        "(SQE128|CQE32%s) for queue %d: %s", b->num_entries,
                        q->poll ? "|IOPOLL" : "", q->index, strerror(-ret));
        free(nq);
        return ret;
    }
    nq->max_inflight = p.cq_entries;
    ret = io_uring_register_files(&nq->ring, &b->fd, 1);
    if (ret < 0) {
        blkio_set_error(ret, "io_uring_register_files for queue %d: %s",
                        q->index, strerror(-ret));
        goto err;
    }
    if (q->completion_fd >= 0) {
        ret = io_uring_register_eventfd(&nq->ring, q->completion_fd);
        if (ret < 0) {
            blkio_set_error(ret, "io_uring_register_eventfd for queue %d: "
                            "%s", q->index, strerror(-ret));
            goto err;
        }
    }
    /* Slots for a full CQ up front: growing later is for callers that
     * keep more requests queued than the rings take. */
    while (nq->nchunks * NVME_SLOTS_PER_CHUNK < nq->max_inflight) {
        ret = nvme_slots_grow(nq);
        if (ret < 0) {
            blkio_set_error(ret, "out of memory for queue %d slots",
                            q->index);
            goto err;
        }
    }
    q->priv = nq;
    return 0;

err:
    io_uring_queue_exit(&nq->ring);
    nvme_queue_free(nq);
    return ret;
}

static void nvme_queue_destroy(struct blkioq *q)
{
    struct nvme_queue *nq = q->priv;

    if (!nq)
        return;
    q->priv = NULL;
    /* Closing the ring does not wait for commands on the device, which
     * may still read a slot's DSM range or write a report buffer: wait
     * for them.  A device that never answers gets the memory leaked
     * rather than freed under it. */
    if (uring_drain(&nq->ring, nq->inflight, q->poll, false) > 0) {
        io_uring_queue_exit(&nq->ring);
        return;
    }
    io_uring_queue_exit(&nq->ring);
    nvme_queue_free(nq);
}

static void nvme_set_completion_fd_enabled(struct blkioq *q, bool enable)
{
    struct nvme_queue *nq = q->priv;

    if (nq)
        uring_set_eventfd_enabled(&nq->ring, enable);
}

/* ---- command submission ---- */

/* An SQE, or NULL when the SQ is full even after handing what is there
 * to the kernel (that syscall does not wait for the device). */
static struct io_uring_sqe *nvme_get_sqe(struct nvme_queue *nq)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&nq->ring);

    if (BLKIO_UNLIKELY(!sqe)) {
        if (io_uring_submit(&nq->ring) < 0)
            return NULL;
        sqe = io_uring_get_sqe(&nq->ring);
    }
    return sqe;
}

static inline void nvme_cmd_lba(struct nvme_uring_cmd *cmd, uint64_t slba)
{
    cmd->cdw10 = (uint32_t)slba;
    cmd->cdw11 = (uint32_t)(slba >> 32);
}

/* Fill sqe with the next command of slot idx (its only one, for most
 * requests) and advance the slot past it. */
static void nvme_prep(struct nvme_queue *nq, uint32_t idx,
                      struct io_uring_sqe *sqe)
{
    struct nvme_state *s = nq->q->b->priv;
    struct nvme_slot *sl = nvme_slot(nq, idx);
    struct nvme_uring_cmd *cmd;
    uint32_t n = 0;

    /* 128-byte SQE: the NVMe command fills the 80-byte cmd area */
    memset(sqe, 0, 2 * sizeof(*sqe));
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->flags = IOSQE_FIXED_FILE;
    sqe->fd = 0;
    sqe->cmd_op = sl->vec ? NVME_URING_CMD_IO_VEC : NVME_URING_CMD_IO;
    sqe->user_data = idx;
    cmd = (struct nvme_uring_cmd *)sqe->cmd;
    cmd->nsid = s->nsid;

    switch (sl->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
        n = (uint32_t)sl->nlb_left;     /* max-transfer fits one command */
        cmd->opcode = sl->op == BLKIO_OP_READ ? NVME_CMD_READ
                                              : NVME_CMD_WRITE;
        cmd->addr = sl->addr;
        cmd->data_len = sl->data_len;
        cmd->cdw12 = n - 1;
        if (sl->flags & BLKIO_REQ_FUA)
            cmd->cdw12 |= NVME_RW_FUA;
        nvme_cmd_lba(cmd, sl->lba);
        break;
    case BLKIO_OP_FLUSH:
        cmd->opcode = NVME_CMD_FLUSH;
        break;
    case BLKIO_OP_WRITE_ZEROES:
        if (s->oncs & NVME_ONCS_WRITE_ZEROES) {
            n = sl->nlb_left < s->wz_max_blocks ? (uint32_t)sl->nlb_left
                                                : s->wz_max_blocks;
            cmd->opcode = NVME_CMD_WRITE_ZEROES;
            cmd->cdw12 = n - 1;
            if (!(sl->flags & BLKIO_REQ_NO_UNMAP) && s->deac)
                cmd->cdw12 |= NVME_WZ_DEAC;
        } else {
            /* fallback: plain writes from the shared zero buffer */
            n = sl->nlb_left < s->zero_buf_blocks ? (uint32_t)sl->nlb_left
                                                  : s->zero_buf_blocks;
            cmd->opcode = NVME_CMD_WRITE;
            cmd->addr = (uint64_t)(uintptr_t)s->zero_buf;
            cmd->data_len = n << s->lba_shift;
            cmd->cdw12 = n - 1;
        }
        /* FUA on every command: the request is acknowledged only after
         * the last one, and all of them must be durable by then. */
        if (sl->flags & BLKIO_REQ_FUA)
            cmd->cdw12 |= NVME_RW_FUA;
        nvme_cmd_lba(cmd, sl->lba);
        break;
    case BLKIO_OP_DISCARD:
        n = sl->nlb_left < s->dsm_max_blocks ? (uint32_t)sl->nlb_left
                                             : s->dsm_max_blocks;
        sl->dsm.cattr = 0;
        sl->dsm.nlb = nvme_cpu_to_le32(n);
        sl->dsm.slba = nvme_cpu_to_le64(sl->lba);
        cmd->opcode = NVME_CMD_DSM;
        cmd->addr = (uint64_t)(uintptr_t)&sl->dsm;
        cmd->data_len = sizeof(sl->dsm);
        cmd->cdw10 = 0;                 /* one range, zero-based */
        cmd->cdw11 = NVME_DSM_AD;
        break;
    case BLKIO_OP_REPORT_ZONES: {
        uint32_t want = sl->nr_zones - sl->zones_done;

        if (want > s->report_max_zones)
            want = s->report_max_zones;
        sl->report_len = (want + 1) * NVME_ZONE_DESC_SIZE;
        cmd->opcode = NVME_CMD_ZONE_MGMT_RECV;
        cmd->addr = (uint64_t)(uintptr_t)sl->report_buf;
        cmd->data_len = sl->report_len;
        nvme_cmd_lba(cmd, sl->lba);
        cmd->cdw12 = sl->report_len / 4 - 1;    /* NUMD, zero-based */
        cmd->cdw13 = NVME_ZRA_REPORT | NVME_ZRA_PARTIAL;
        break;
    }
    default:    /* zone management send */
        cmd->opcode = NVME_CMD_ZONE_MGMT_SEND;
        if (!(sl->zsa & NVME_ZSA_SELECT_ALL))
            nvme_cmd_lba(cmd, sl->lba);
        cmd->cdw13 = sl->zsa;
        break;
    }
    sl->lba += n;
    sl->nlb_left -= n;
}

static void nvme_backlog_push(struct nvme_queue *nq, uint32_t idx)
{
    nvme_slot(nq, idx)->next = NVME_SLOT_NONE;
    if (nq->backlog_tail == NVME_SLOT_NONE)
        nq->backlog_head = idx;
    else
        nvme_slot(nq, nq->backlog_tail)->next = idx;
    nq->backlog_tail = idx;
}

/*
 * Hand slot idx's next command to the SQ, or put the slot on the backlog
 * when the SQ is full or the CQ could overflow (the kernel would then hold
 * CQEs in memory it may fail to allocate, and on older kernels refuse
 * submissions).  Never fails, never waits.
 */
static void nvme_issue(struct nvme_queue *nq, uint32_t idx, bool from_backlog)
{
    struct io_uring_sqe *sqe;

    /* Keep request order: nothing overtakes the backlog. */
    if ((!from_backlog && nq->backlog_head != NVME_SLOT_NONE) ||
        nq->inflight >= nq->max_inflight)
        goto backlog;
    sqe = nvme_get_sqe(nq);
    if (!sqe)
        goto backlog;
    nvme_prep(nq, idx, sqe);
    nvme_slot(nq, idx)->in_flight = true;
    nq->inflight++;
    return;

backlog:
    nvme_backlog_push(nq, idx);
}

/* Move backlogged requests into the SQ while there is room. */
static void nvme_backlog_drain(struct nvme_queue *nq)
{
    while (nq->backlog_head != NVME_SLOT_NONE &&
           nq->inflight < nq->max_inflight &&
           io_uring_sq_space_left(&nq->ring) > 0) {
        uint32_t idx = nq->backlog_head;

        nq->backlog_head = nvme_slot(nq, idx)->next;
        if (nq->backlog_head == NVME_SLOT_NONE)
            nq->backlog_tail = NVME_SLOT_NONE;
        nvme_issue(nq, idx, true);
    }
}

static int nvme_queue_request(struct blkioq *q,
                              const struct blkio_request *req)
{
    struct nvme_queue *nq = q->priv;
    struct blkio *b = q->b;
    struct nvme_state *s = b->priv;
    struct nvme_slot *sl;
    uint32_t idx, zsa = 0;

    /* Requests that need no command at all, or cannot have one.  The
     * device will not signal the completion fd for these:
     * blkioq_fail() does. */
    switch (req->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
        if (req->iovcnt > b->max_segments) {
            blkioq_fail(q, req->user_data, -EINVAL,
                        "iovcnt exceeds max-segments");
            return 0;
        }
        /* fall through */
    case BLKIO_OP_WRITE_ZEROES:
    case BLKIO_OP_DISCARD:
        if (req->len == 0) {
            blkioq_fail(q, req->user_data, 0, NULL);
            return 0;
        }
        break;
    case BLKIO_OP_REPORT_ZONES:
        if (req->nr_zones == 0) {
            blkioq_fail(q, req->user_data, 0, NULL);
            return 0;
        }
        if (!req->zones) {
            blkioq_fail(q, req->user_data, -EINVAL,
                        "report zones: zones array is NULL");
            return 0;
        }
        if (req->start >= b->capacity) {
            blkioq_fail(q, req->user_data, -EINVAL,
                        "report zones: offset is beyond capacity");
            return 0;
        }
        break;
    case BLKIO_OP_OPEN_ZONE:
    case BLKIO_OP_CLOSE_ZONE:
    case BLKIO_OP_FINISH_ZONE:
    case BLKIO_OP_RESET_ZONE:
        if (req->start % b->zone_size || req->start >= b->capacity) {
            blkioq_fail(q, req->user_data, -EINVAL,
                        "zone offset is not the start of a zone");
            return 0;
        }
        break;
    default:
        break;
    }

    if (req->op == BLKIO_OP_DISCARD && !(s->oncs & NVME_ONCS_DSM)) {
        blkioq_fail(q, req->user_data, -ENOTSUP,
                    "the controller does not support Dataset Management "
                    "(discard)");
        return 0;
    }
    if (req->op == BLKIO_OP_WRITE_ZEROES &&
        !(s->oncs & NVME_ONCS_WRITE_ZEROES) &&
        ((req->flags & BLKIO_REQ_NO_FALLBACK) || !s->zero_buf)) {
        blkioq_fail(q, req->user_data, -ENOTSUP,
                    "the controller does not support Write Zeroes and "
                    "BLKIO_REQ_NO_FALLBACK is set");
        return 0;
    }

    switch (req->op) {
    case BLKIO_OP_OPEN_ZONE:         zsa = NVME_ZSA_OPEN; break;
    case BLKIO_OP_CLOSE_ZONE:        zsa = NVME_ZSA_CLOSE; break;
    case BLKIO_OP_FINISH_ZONE:       zsa = NVME_ZSA_FINISH; break;
    case BLKIO_OP_RESET_ZONE:        zsa = NVME_ZSA_RESET; break;
    case BLKIO_OP_OPEN_ALL_ZONES:
        zsa = NVME_ZSA_OPEN | NVME_ZSA_SELECT_ALL; break;
    case BLKIO_OP_CLOSE_ALL_ZONES:
        zsa = NVME_ZSA_CLOSE | NVME_ZSA_SELECT_ALL; break;
    case BLKIO_OP_FINISH_ALL_ZONES:
        zsa = NVME_ZSA_FINISH | NVME_ZSA_SELECT_ALL; break;
    case BLKIO_OP_RESET_ALL_ZONES:
        zsa = NVME_ZSA_RESET | NVME_ZSA_SELECT_ALL; break;
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
    case BLKIO_OP_FLUSH:
    case BLKIO_OP_WRITE_ZEROES:
    case BLKIO_OP_DISCARD:
    case BLKIO_OP_REPORT_ZONES:
        break;
    default:
        return -ENOTSUP;
    }

    if (nvme_slot_alloc(nq, &idx) < 0)
        return -ENOMEM;
    sl = nvme_slot(nq, idx);
    sl->user_data = req->user_data;
    sl->op = req->op;
    sl->flags = req->flags;
    sl->lba = req->start >> s->lba_shift;
    sl->nlb_left = 0;
    sl->vec = false;
    sl->zsa = zsa;

    switch (req->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
        sl->nlb_left = req->len >> s->lba_shift;
        sl->vec = req->iovcnt > 1;
        if (sl->vec) {
            /* The caller keeps the iovec array alive until completion */
            sl->addr = (uint64_t)(uintptr_t)req->iov;
            sl->data_len = (uint32_t)req->iovcnt;
        } else {
            /* req->iov may point into the caller's stack: copy it out */
            sl->addr = (uint64_t)(uintptr_t)req->iov[0].iov_base;
            sl->data_len = (uint32_t)req->iov[0].iov_len;
        }
        break;
    case BLKIO_OP_WRITE_ZEROES:
    case BLKIO_OP_DISCARD:
        sl->nlb_left = req->len >> s->lba_shift;
        break;
    case BLKIO_OP_REPORT_ZONES: {
        uint32_t want = req->nr_zones < s->report_max_zones
                            ? req->nr_zones : s->report_max_zones;

        /* Management path, not I/O: one buffer per report is fine */
        sl->lba = (req->start >> s->lba_shift) / s->zone_blocks *
                  s->zone_blocks;
        sl->zones = req->zones;
        sl->nr_zones = req->nr_zones;
        sl->zones_done = 0;
        free(sl->report_buf);
        sl->report_buf = aligned_alloc(NVME_MIN_PAGE_SIZE,
                                       ((want + 1) * NVME_ZONE_DESC_SIZE +
                                        NVME_MIN_PAGE_SIZE - 1) &
                                       ~(NVME_MIN_PAGE_SIZE - 1));
        if (!sl->report_buf) {
            nvme_slot_free(nq, idx);
            return -ENOMEM;
        }
        break;
    }
    default:
        break;
    }

    nvme_issue(nq, idx, false);
    return 0;
}

/* ---- completion ---- */

/*
 * NVMe status (SCT << 8 | SC, as the kernel reports it in cqe->res) to an
 * errno a caller can act on, plus a message naming the status.
 */
static int nvme_status_errno(int status, const char **msg)
{
    switch (status & 0x7ff) {   /* drop the DNR, More and CRD bits */
    /* generic command status */
    case 0x001: *msg = "nvme status 0x001: invalid command opcode";
        return -ENOTSUP;
    case 0x002: *msg = "nvme status 0x002: invalid field in command";
        return -EINVAL;
    case 0x004: *msg = "nvme status 0x004: data transfer error";
        return -EIO;
    case 0x005: *msg = "nvme status 0x005: commands aborted due to power loss";
        return -EIO;
    case 0x006: *msg = "nvme status 0x006: internal error";
        return -EIO;
    case 0x007: *msg = "nvme status 0x007: command abort requested";
        return -ECANCELED;
    case 0x00b: *msg = "nvme status 0x00b: invalid namespace or format";
        return -ENODEV;
    case 0x00f: *msg = "nvme status 0x00f: data SGL length invalid";
        return -EINVAL;
    case 0x013: *msg = "nvme status 0x013: PRP offset invalid";
        return -EINVAL;
    case 0x015: *msg = "nvme status 0x015: operation denied";
        return -EPERM;
    case 0x016: *msg = "nvme status 0x016: SGL offset invalid";
        return -EINVAL;
    case 0x020: *msg = "nvme status 0x020: namespace is write protected";
        return -EROFS;
    case 0x021: *msg = "nvme status 0x021: command interrupted";
        return -EAGAIN;
    case 0x022: *msg = "nvme status 0x022: transient transport error";
        return -EAGAIN;
    case 0x080: *msg = "nvme status 0x080: LBA out of range";
        return -ERANGE;
    case 0x081: *msg = "nvme status 0x081: capacity exceeded";
        return -ENOSPC;
    case 0x082: *msg = "nvme status 0x082: namespace not ready";
        return -EAGAIN;
    case 0x083: *msg = "nvme status 0x083: reservation conflict";
        return -EBADE;
    case 0x084: *msg = "nvme status 0x084: format in progress";
        return -EAGAIN;
    /* command specific status */
    case 0x180: *msg = "nvme status 0x180: conflicting attributes";
        return -EINVAL;
    case 0x181: *msg = "nvme status 0x181: invalid protection information";
        return -EILSEQ;
    case 0x182: *msg = "nvme status 0x182: attempted write to read only "
                       "range";
        return -EROFS;
    case 0x183: *msg = "nvme status 0x183: invalid command for this "
                       "controller (ONCS)";
        return -ENOTSUP;
    case 0x1b8: *msg = "nvme status 0x1b8: zone boundary error";
        return -EIO;
    case 0x1b9: *msg = "nvme status 0x1b9: zone is full";
        return -EIO;
    case 0x1ba: *msg = "nvme status 0x1ba: zone is read only";
        return -EROFS;
    case 0x1bb: *msg = "nvme status 0x1bb: zone is offline";
        return -EIO;
    case 0x1bc: *msg = "nvme status 0x1bc: zone invalid write (not at the "
                       "write pointer)";
        return -EIO;
    case 0x1bd: *msg = "nvme status 0x1bd: too many active zones";
        return -EOVERFLOW;
    case 0x1be: *msg = "nvme status 0x1be: too many open zones";
        return -ETOOMANYREFS;
    case 0x1bf: *msg = "nvme status 0x1bf: invalid zone state transition";
        return -EIO;
    /* media and data integrity errors */
    case 0x280: *msg = "nvme status 0x280: write fault";
        return -EIO;
    case 0x281: *msg = "nvme status 0x281: unrecovered read error";
        return -EIO;
    case 0x282: *msg = "nvme status 0x282: end-to-end guard check error";
        return -EILSEQ;
    case 0x283: *msg = "nvme status 0x283: end-to-end application tag "
                       "check error";
        return -EILSEQ;
    case 0x284: *msg = "nvme status 0x284: end-to-end reference tag check "
                       "error";
        return -EILSEQ;
    case 0x285: *msg = "nvme status 0x285: compare failure";
        return -EILSEQ;
    case 0x286: *msg = "nvme status 0x286: access denied";
        return -EACCES;
    case 0x287: *msg = "nvme status 0x287: deallocated or unwritten "
                       "logical block";
        return -ENODATA;
    default:
        break;
    }
    switch ((status >> 8) & 0x7) {
    case 0: *msg = "nvme command failed with a generic status not known "
                   "to libblkio";
        break;
    case 1: *msg = "nvme command failed with a command specific status not "
                   "known to libblkio";
        break;
    case 2: *msg = "nvme command failed with a media or data integrity "
                   "error";
        break;
    case 3: *msg = "nvme command failed with a path related error";
        break;
    case 7: *msg = "nvme command failed with a vendor specific status";
        break;
    default: *msg = "nvme command failed with a reserved status code type";
        break;
    }
    return -EIO;
}

/*
 * Turn one report's descriptors into struct blkio_zone.  The report is the
 * device's word and is checked before any of it reaches the caller: the
 * descriptor count must fit the buffer we gave, each descriptor must be the
 * next zone (ZNS zones are contiguous and equally sized), inside the
 * namespace, of a known type and state, with its capacity and write pointer
 * inside the zone.  Returns how many zones were converted (the next report
 * starts after the last one), or -EIO with *msg.
 */
static int nvme_report_convert(const struct blkio *b,
                               const struct nvme_state *s,
                               struct nvme_slot *sl, const char **msg)
{
    const uint8_t *buf = sl->report_buf;
    uint64_t nr = nvme_le64(buf);
    uint64_t end = b->nr_zones * s->zone_blocks;
    uint32_t room = sl->report_len / NVME_ZONE_DESC_SIZE - 1;
    uint32_t i;

    if (nr > room) {
        *msg = "report zones: the device reported more zones than fit the "
               "report buffer";
        return -EIO;
    }
    if (nr > sl->nr_zones - sl->zones_done)
        nr = sl->nr_zones - sl->zones_done;
    for (i = 0; i < nr; i++) {
        const uint8_t *d = buf + NVME_ZONE_DESC_SIZE * (i + 1);
        struct blkio_zone *z = &sl->zones[sl->zones_done + i];
        uint64_t zslba = nvme_le64(d + 16);
        uint64_t zcap = nvme_le64(d + 8);
        uint64_t wp = nvme_le64(d + 24);
        uint8_t type = d[0] & 0xf, state = d[1] >> 4;

        if (zslba != sl->lba || zslba >= end) {
            *msg = "report zones: the device reported a zone that is not "
                   "the next one or lies beyond the namespace";
            return -EIO;
        }
        if (type != BLKIO_ZONE_TYPE_SEQWRITE_REQ) {
            *msg = "report zones: the device reported an unknown zone type";
            return -EIO;
        }
        if (zcap > s->zone_blocks) {
            *msg = "report zones: the device reported a zone capacity "
                   "larger than the zone size";
            return -EIO;
        }
        /* NVMe zone types and states use the numbers blkio.h uses */
        switch (state) {
        case BLKIO_ZONE_STATE_EMPTY:
        case BLKIO_ZONE_STATE_IMP_OPEN:
        case BLKIO_ZONE_STATE_EXP_OPEN:
        case BLKIO_ZONE_STATE_CLOSED:
            if (wp < zslba || wp - zslba > zcap) {
                *msg = "report zones: the device reported a write pointer "
                       "outside the zone's capacity";
                return -EIO;
            }
            break;
        case BLKIO_ZONE_STATE_FULL:
        case BLKIO_ZONE_STATE_READONLY:
        case BLKIO_ZONE_STATE_OFFLINE:
            /* The write pointer is not valid in these states; a full zone
             * has it at the end of the zone (blkioq_finish_zone()). */
            wp = zslba + s->zone_blocks;
            break;
        default:
            *msg = "report zones: the device reported an unknown zone "
                   "state";
            return -EIO;
        }

        memset(z, 0, sizeof(*z));
        z->start = zslba << s->lba_shift;
        z->len = s->zone_blocks << s->lba_shift;
        z->capacity = zcap << s->lba_shift;
        z->write_pointer = wp << s->lba_shift;
        z->zone_type = type;
        z->zone_state = state;
        z->reset = (d[2] & NVME_ZA_RZR) ? 1 : 0;
        sl->lba = zslba + s->zone_blocks;
    }
    sl->zones_done += i;
    return (int)i;
}

/* One CQE.  Its user_data is ours only if it names a slot with a command
 * in flight: anything else is counted and dropped, never taken as a
 * request's result. */
static void nvme_complete_cqe(struct nvme_queue *nq,
                              const struct io_uring_cqe *cqe)
{
    struct blkio *b = nq->q->b;
    struct nvme_state *s = b->priv;
    uint64_t ud = cqe->user_data;
    struct nvme_slot *sl;
    const char *msg = NULL;
    uint32_t idx;
    int ret = 0;

    if (BLKIO_UNLIKELY(ud >= (uint64_t)nq->nchunks * NVME_SLOTS_PER_CHUNK ||
                       !nvme_slot(nq, (uint32_t)ud)->in_flight)) {
        nq->bad_cqes++;
        return;
    }
    idx = (uint32_t)ud;
    sl = nvme_slot(nq, idx);
    sl->in_flight = false;
    nq->inflight--;

    if (BLKIO_UNLIKELY(cqe->res < 0)) {
        ret = cqe->res;
        msg = "nvme passthrough command failed in the kernel (see ret)";
    } else if (BLKIO_UNLIKELY(cqe->res > 0)) {
        ret = nvme_status_errno(cqe->res, &msg);
    } else if (sl->op == BLKIO_OP_REPORT_ZONES) {
        int got = nvme_report_convert(b, s, sl, &msg);

        if (got < 0) {
            ret = got;
        } else if (got > 0 && sl->zones_done < sl->nr_zones &&
                   sl->lba < b->nr_zones * s->zone_blocks) {
            nvme_issue(nq, idx, false);
            return;
        } else {
            ret = (int)(sl->zones_done < INT_MAX ? sl->zones_done : INT_MAX);
        }
    } else if (sl->nlb_left > 0) {
        /* chained request: its next command */
        nvme_issue(nq, idx, false);
        return;
    }

    if (sl->report_buf) {
        free(sl->report_buf);
        sl->report_buf = NULL;
    }
    blkioq_complete(nq->q, sl->user_data, ret, msg);
    nvme_slot_free(nq, idx);
}

/* Move every posted CQE into the completion ring (or into a chained
 * request's next command), then refill the SQ from the backlog. */
static void nvme_reap(struct blkioq *q)
{
    struct nvme_queue *nq = q->priv;
    struct io_uring_cqe *cqe;
    unsigned head, n;

    do {
        n = 0;
        io_uring_for_each_cqe(&nq->ring, head, cqe) {
            n++;
            nvme_complete_cqe(nq, cqe);
        }
        io_uring_cq_advance(&nq->ring, n);
        nvme_backlog_drain(nq);
    } while (n);
}

static int nvme_process(struct blkioq *q, int min,
                        const struct timespec *deadline, const sigset_t *sig)
{
    struct nvme_queue *nq = q->priv;
    int ret = uring_process(q, &nq->ring, nvme_reap, &nq->inflight, min,
                            deadline, sig);

    if (BLKIO_UNLIKELY(nq->bad_cqes)) {
        uint32_t n = nq->bad_cqes;

        nq->bad_cqes = 0;
        return blkio_set_error(-EIO, "nvme-io_uring queue %d: dropped %u "
                               "completions that matched no command in "
                               "flight", q->index, n);
    }
    return ret;
}

const struct blkio_driver blkio_driver_nvme_io_uring = {
    .name = "nvme-io_uring",
    .props = nvme_props,
    .nprops = sizeof(nvme_props) / sizeof(nvme_props[0]),
    .create = nvme_create,
    .connect = nvme_connect,
    .start = nvme_start,
    .destroy = nvme_destroy,
    .queue_init = nvme_queue_init,
    .queue_destroy = nvme_queue_destroy,
    .queue_request = nvme_queue_request,
    .process = nvme_process,
    .set_completion_fd_enabled = nvme_set_completion_fd_enabled,
};
