/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nvme-io_uring, connect: open the namespace's generic character device,
 * read the controller and namespace with admin Identify commands
 * (NVME_IOCTL_ADMIN_CMD on the same device) and turn what they say into
 * properties.  Identify data is the device's word: sizes and shifts are
 * range-checked before use.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/nvme_ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "nvme-io-uring.h"

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

/* The message for an Identify that failed: ret is a negative errno or a
 * positive NVMe status.  Returns a negative errno. */
static int nvme_identify_failed(int ret, const char *what, uint32_t nsid)
{
    return blkio_set_error(ret < 0 ? ret : -EIO, "identify %s (nsid %u) "
                           "failed: %s%d", what, nsid,
                           ret < 0 ? "errno " : "nvme status ",
                           ret < 0 ? -ret : ret);
}

/* The namespace ID behind fd and its command set: NVM, or ZNS (which
 * builds on NVM and keeps its reads and writes).  Anything else is not a
 * block device. */
static int nvme_probe_nsid(struct blkio *b, int fd, uint8_t *id)
{
    struct nvme_state *s = b->priv;
    int ret = ioctl(fd, NVME_IOCTL_ID);

    if (ret <= 0)
        return blkio_set_error(ret < 0 ? -errno : -ENOTTY,
                               "NVME_IOCTL_ID on '%s' failed: %s (is it an "
                               "NVMe namespace character device?)",
                               b->path ? b->path : "fd",
                               ret < 0 ? strerror(errno) : "no namespace");
    s->nsid = (uint32_t)ret;
    s->csi = nvme_ns_csi(fd, s->nsid, id);
    if (s->csi != NVME_CSI_NVM && s->csi != NVME_CSI_ZNS)
        return blkio_set_error(-ENOTSUP, "namespace %u uses I/O command set "
                               "%u, but nvme-io_uring needs the NVM command "
                               "set (0) or zoned namespaces (2)", s->nsid,
                               s->csi);
    return 0;
}

/*
 * Identify Namespace: size, block size (no metadata), preferred I/O sizes
 * and whether Write Zeroes may deallocate.  Returns the LBA format index
 * (for the ZNS extensions), or a negative errno.
 */
static int nvme_probe_format(struct blkio *b, int fd, uint8_t *id)
{
    struct nvme_state *s = b->priv;
    uint8_t flbas, nlbaf, lbaf_index, dlfeat;
    uint32_t lbaf, lba_size;
    uint64_t nsze;
    int ret = nvme_identify(fd, s->nsid, NVME_CNS_NS, 0, id);

    if (ret != 0)
        return nvme_identify_failed(ret, "namespace", s->nsid);
    nsze = nvme_le64(id + NVME_ID_NS_NSZE);
    flbas = id[NVME_ID_NS_FLBAS];
    nlbaf = id[NVME_ID_NS_NLBAF];
    dlfeat = id[NVME_ID_NS_DLFEAT];
    /* FLBAS bits 3:0 are the low bits of the format index, 6:5 the high
     * ones, which count only with more than 16 formats (NLBAF is zero-
     * based); an index beyond NLBAF names no format. */
    lbaf_index = flbas & 0xf;
    if (nlbaf >= 16)
        lbaf_index |= (uint8_t)(((flbas >> 5) & 0x3) << 4);
    if (lbaf_index > nlbaf)
        return blkio_set_error(-EIO, "namespace %u uses LBA format %u, but "
                               "reports only %u", s->nsid, lbaf_index,
                               nlbaf + 1u);
    lbaf = nvme_le32(id + NVME_ID_NS_LBAF + 4u * lbaf_index);
    if ((lbaf & 0xffff) != 0)
        return blkio_set_error(-ENOTSUP, "namespace %u is formatted with %u "
                               "bytes of metadata per block, which "
                               "nvme-io_uring does not support", s->nsid,
                               lbaf & 0xffff);
    s->lba_shift = (lbaf >> 16) & 0xff;
    if (s->lba_shift < 9 || s->lba_shift > 20)
        return blkio_set_error(-ENOTSUP, "namespace %u has an unsupported "
                               "LBA data size 2^%u", s->nsid, s->lba_shift);
    lba_size = 1u << s->lba_shift;
    if (nsze == 0 || nsze > UINT64_MAX >> s->lba_shift)
        return blkio_set_error(-ENOTSUP, "namespace %u reports an unusable "
                               "size of %llu blocks", s->nsid,
                               (unsigned long long)nsze);

    b->capacity = nsze << s->lba_shift;
    b->request_alignment = (int)lba_size;
    b->optimal_io_alignment = (int)lba_size;
    b->optimal_io_size = 0;
    if (id[NVME_ID_NS_NSFEAT] & NVME_NSFEAT_OPTPERF) {
        uint32_t npwg = nvme_le16(id + NVME_ID_NS_NPWG) + 1u;
        uint32_t nows = nvme_le16(id + NVME_ID_NS_NOWS) + 1u;

        if (npwg > 1 && npwg <= ((unsigned)INT_MAX >> s->lba_shift))
            b->optimal_io_alignment = (int)(npwg << s->lba_shift);
        if (nows > 1 && nows <= ((unsigned)INT_MAX >> s->lba_shift) &&
            nows % npwg == 0)
            b->optimal_io_size = (int)(nows << s->lba_shift);
    }
    /* Deallocate from Write Zeroes only where deallocated blocks read back
     * as zeroes: DLFEAT read behaviour 001b and the DEAC-in-Write-Zeroes
     * bit, as Linux does. */
    s->deac = (dlfeat & 0x7) == 0x1 && (dlfeat & (1u << 3));
    return lbaf_index;
}

/* Largest transfer: MDTS (2^n minimum pages, 0 = no limit), capped by
 * what the kernel will map for one passthrough command and by the
 * command's block count. */
static uint64_t nvme_max_transfer(int fd, uint8_t mdts, unsigned lba_shift)
{
    uint64_t lba_size = 1ull << lba_shift;
    /* 2^n pages with n from the device: beyond 2^64 bytes, no limit. */
    uint64_t max_xfer = mdts && mdts < 52 ?
                        (uint64_t)NVME_MIN_PAGE_SIZE << mdts : 0;
    long long hw_kb = nvme_sysfs_queue_attr(fd, "max_hw_sectors_kb");

    if (hw_kb > 0 && (max_xfer == 0 || (uint64_t)hw_kb * 1024 < max_xfer))
        max_xfer = (uint64_t)hw_kb * 1024;
    if (max_xfer == 0)
        max_xfer = 2u * 1024 * 1024;     /* unknown: stay conservative */
    if (max_xfer > (uint64_t)NVME_MAX_NLB << lba_shift)
        max_xfer = (uint64_t)NVME_MAX_NLB << lba_shift;
    if (max_xfer > (uint64_t)(INT_MAX & ~(lba_size - 1)))
        max_xfer = INT_MAX & ~(lba_size - 1);
    return max_xfer & ~(lba_size - 1);
}

/* Write Zeroes and DSM limits from the NVM command set specific
 * controller data.  A controller that does not have it gets the
 * command-format limits. */
static void nvme_probe_zero_discard(struct blkio *b, int fd, uint8_t *id)
{
    struct nvme_state *s = b->priv;

    s->wz_max_blocks = NVME_MAX_NLB;
    s->dsm_max_blocks = UINT32_MAX;
    if (nvme_identify(fd, 0, NVME_CNS_CS_CTRL, NVME_CSI_NVM, id) == 0) {
        uint8_t wzsl = id[NVME_ID_NVM_CTRL_WZSL];
        uint32_t dmrsl = nvme_le32(id + NVME_ID_NVM_CTRL_DMRSL);

        if (wzsl && wzsl < 52) {
            uint64_t blocks = ((uint64_t)NVME_MIN_PAGE_SIZE << wzsl) >>
                              s->lba_shift;
            if (blocks && blocks < s->wz_max_blocks)
                s->wz_max_blocks = (uint32_t)blocks;
        }
        if (dmrsl)
            s->dsm_max_blocks = dmrsl;
    }
    b->max_write_zeroes_len = (s->oncs & NVME_ONCS_WRITE_ZEROES) ?
        (uint64_t)s->wz_max_blocks << s->lba_shift : 0;
    if (s->oncs & NVME_ONCS_DSM) {
        /* A request longer than DMRSL runs as a chain of DSM commands:
         * what one request takes is what its 32-bit block count holds, as
         * libblkio says. */
        b->max_discard_len = (uint64_t)UINT32_MAX << s->lba_shift;
        b->discard_alignment = 1 << s->lba_shift;
    } else {
        b->max_discard_len = 0;
        b->discard_alignment = 0;
    }
    b->discard_alignment_offset = 0;
}

/* The properties that follow from Identify Controller (mdts, vwc) and the
 * kernel's view of the namespace's queue; id is scratch space. */
static int nvme_probe_limits(struct blkio *b, int fd, uint8_t *id,
                             uint8_t mdts, uint8_t vwc)
{
    struct nvme_state *s = b->priv;
    long long segs, io_poll;
    uint64_t max_xfer = nvme_max_transfer(fd, mdts, s->lba_shift);

    /* A limit below one block leaves no request that fits it (and 0 would
     * read as "no limit"). */
    if (max_xfer == 0)
        return blkio_set_error(-ENOTSUP, "namespace %u: the largest transfer "
                               "(MDTS %u, or the kernel's max_hw_sectors_kb) "
                               "is smaller than one %u-byte block", s->nsid,
                               mdts, 1u << s->lba_shift);
    b->max_transfer = (int)max_xfer;
    /* The kernel maps user buffers for DMA directly when addresses and
     * lengths are multiples of 4 (NVMe's dword alignment) and bounces them
     * otherwise; ask for what keeps I/O zero-copy. */
    b->buf_alignment = 4;
    b->mem_region_alignment = 4;        /* a multiple of buf-alignment */
    b->optimal_buf_alignment = (int)NVME_MIN_PAGE_SIZE;
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
    /* Fixed buffers pin the regions' pages. */
    b->may_pin_mem_regions = b->fixed_buffers;
    b->max_mem_regions = UINT64_MAX;
    /* Report zones: as many descriptors per command as one transfer
     * holds */
    s->report_max_zones = (uint32_t)(max_xfer / NVME_ZONE_DESC_SIZE) - 1;
    nvme_probe_zero_discard(b, fd, id);
    return 0;
}

/* Zoned namespace: zone size and count, open/active limits, Zone Append. */
static int nvme_probe_zns(struct blkio *b, int fd, uint8_t *id,
                          unsigned lbaf_index)
{
    struct nvme_state *s = b->priv;
    uint32_t mar, mor;
    int ret = nvme_identify(fd, s->nsid, NVME_CNS_CS_NS, NVME_CSI_ZNS, id);

    if (ret != 0)
        return nvme_identify_failed(ret, "zoned namespace", s->nsid);
    mar = nvme_le32(id + NVME_ID_ZNS_NS_MAR);
    mor = nvme_le32(id + NVME_ID_ZNS_NS_MOR);
    s->zone_blocks = nvme_le64(id + NVME_ID_ZNS_NS_LBAFE + 16u * lbaf_index);
    /* Checked against the namespace's size (which fits in 64 bits in
     * bytes), so the byte size cannot wrap to 0 and divide by zero. */
    if (s->zone_blocks == 0 || s->zone_blocks > b->capacity >> s->lba_shift)
        return blkio_set_error(-ENOTSUP, "zoned namespace %u reports a "
                               "zone size of %" PRIu64 " blocks (the "
                               "namespace has %" PRIu64 ")", s->nsid,
                               s->zone_blocks, b->capacity >> s->lba_shift);
    b->zoned = 2;   /* ZNS zones are sequential-write-required */
    b->zone_size = s->zone_blocks << s->lba_shift;
    b->nr_zones = (b->capacity >> s->lba_shift) / s->zone_blocks;
    /* zero-based counts; all ones means no limit (reported as 0) */
    b->max_active_zones = mar == UINT32_MAX ? 0 :
                          (int)(mar < INT_MAX ? mar + 1 : INT_MAX);
    b->max_open_zones = mor == UINT32_MAX ? 0 :
                        (int)(mor < INT_MAX ? mor + 1 : INT_MAX);
    /* Zone Append is mandatory in ZNS; ZASL 0 means "as MDTS" */
    b->append_support = true;
    b->zone_append_max_bytes = (uint64_t)b->max_transfer;
    if (nvme_identify(fd, 0, NVME_CNS_CS_CTRL, NVME_CSI_ZNS, id) == 0) {
        uint8_t zasl = id[NVME_ID_ZNS_CTRL_ZASL];

        if (zasl && zasl < 52) {
            uint64_t zab = (uint64_t)NVME_MIN_PAGE_SIZE << zasl;

            if (zab < b->zone_append_max_bytes)
                b->zone_append_max_bytes = zab;
        }
    }
    /* A limit below one block allows no append at all. */
    if (b->zone_append_max_bytes < (1ull << s->lba_shift)) {
        b->append_support = false;
        b->zone_append_max_bytes = 0;
    }
    return 0;
}

/* Everything connect learns from the device behind fd. */
static int nvme_probe(struct blkio *b, int fd)
{
    struct nvme_state *s = b->priv;
    uint8_t *id, mdts, vwc;
    int ret, lbaf_index;

    if (posix_memalign((void **)&id, 4096, 4096) != 0)
        return blkio_set_error(-ENOMEM, "out of memory for identify data");
    ret = nvme_probe_nsid(b, fd, id);
    if (ret < 0)
        goto out;
    ret = nvme_identify(fd, 0, NVME_CNS_CTRL, 0, id);
    if (ret != 0) {
        ret = nvme_identify_failed(ret, "controller", 0);
        goto out;
    }
    mdts = id[NVME_ID_CTRL_MDTS];
    s->oncs = nvme_le16(id + NVME_ID_CTRL_ONCS);
    vwc = id[NVME_ID_CTRL_VWC];

    lbaf_index = nvme_probe_format(b, fd, id);
    if (lbaf_index < 0) {
        ret = lbaf_index;
        goto out;
    }
    ret = nvme_probe_limits(b, fd, id, mdts, vwc);
    if (ret < 0)
        goto out;
    b->zoned = 0;
    ret = s->csi == NVME_CSI_ZNS ?
        nvme_probe_zns(b, fd, id, (unsigned)lbaf_index) : 0;
out:
    free(id);
    return ret;
}

int nvme_connect(struct blkio *b)
{
    struct nvme_state *s = b->priv;
    bool opened = false;
    struct stat st;
    int fd = b->fd;
    int ret;

    ret = uring_check_path_or_fd(b);
    if (ret < 0)
        return ret;
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

