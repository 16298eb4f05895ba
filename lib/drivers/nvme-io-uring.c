/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nvme-io_uring: NVMe commands sent straight to a namespace's generic
 * character device (/dev/ngXnY) with io_uring passthrough
 * (IORING_OP_URING_CMD, NVME_URING_CMD_IO).
 *
 * Connect (nvme-probe.c) reads the controller and namespace with admin
 * Identify commands and turns what they say into properties.  Each queue
 * is one io_uring (uring-common.c) with 128-byte SQEs (the NVMe command
 * lives in the SQE) and 32-byte CQEs, the device file registered as fixed
 * file 0, and a pool of request slots that never moves in memory, because
 * the kernel may read a slot's DSM range or the iovec copy long after
 * submission (when it punts a command to its workers).  This file turns
 * requests into NVMe commands and their completions back into results.
 *
 * A request that needs more than one NVMe command (write zeroes, discard
 * or report zones longer than one command allows, or write zeroes done by
 * writing a zero buffer) is run as a chain: the next command is issued when
 * the previous one completes.  That is slower than fanning out, but keeps
 * one command per slot in flight and writes zoned namespaces strictly in
 * order, which sequential-write-required zones demand.
 */
#include <errno.h>
#include <limits.h>
#include <linux/nvme_ioctl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvme-io-uring.h"

/* Zero buffer for write zeroes on controllers without Write Zeroes. */
#define NVME_ZERO_BUF_MAX     (1024u * 1024u)

/* ---- properties ---- */

static const struct blkio_property nvme_props[] = {
    /* Any value, as in libblkio 1.5: a negative one means "not set". */
    BLKIO_PROP("fd", PROP_INT, ST_ALL, ST_CREATED, fd, NULL),
    BLKIO_PROP("path", PROP_STR, ST_ALL, ST_CREATED, path, NULL),
    URING_FIXED_BUFFERS_PROP,
    /* Zoned namespaces: 0 (not zoned) until connect says otherwise. */
    BLKIO_PROP("zoned", PROP_INT, ST_ALL, 0, zoned, NULL),
    BLKIO_PROP("max-active-zones", PROP_INT, ST_ALL, 0, max_active_zones,
               NULL),
    BLKIO_PROP("max-open-zones", PROP_INT, ST_ALL, 0, max_open_zones, NULL),
    BLKIO_PROP("zone-size", PROP_UINT64, ST_ALL, 0, zone_size, NULL),
    BLKIO_PROP("nr-zones", PROP_UINT64, ST_ALL, 0, nr_zones, NULL),
    BLKIO_PROP("append-support", PROP_BOOL, ST_ALL, 0, append_support, NULL),
    BLKIO_PROP("zone-append-max-bytes", PROP_UINT64, ST_ALL, 0,
               zone_append_max_bytes, NULL),
    URING_CREATED_PROPS,
};

/* ---- life cycle ---- */

static int nvme_create(struct blkio *b)
{
    int ret = uring_create_defaults(b, sizeof(struct nvme_state));
    struct nvme_state *s = b->priv;

    if (ret < 0)
        return ret;
    uring_fixed_table_init(&s->fixed);
    /* Linux 6.1 takes fixed buffers for passthrough commands; 5.19 and
     * 6.0 refuse any uring_cmd flag with EINVAL. */
    s->cmd_fixed = uring_kernel_at_least(6, 1);
    /* NVMe Write has FUA */
    b->supports_fua_natively = true;
    return 0;
}

static int nvme_start(struct blkio *b)
{
    struct nvme_state *s = b->priv;
    int ret = uring_check_num_entries(b);
    long page = sysconf(_SC_PAGESIZE);

    if (ret < 0)
        return ret;
    /* The unit the kernel maps user buffers in (nvme_prep_rw_buffer()) */
    s->page_size = page > 0 && (page & (page - 1)) == 0 ? (uint64_t)page
                                                        : NVME_MIN_PAGE_SIZE;
    /* A buffer of at most max-segments - 1 pages' bytes spans at most
     * max-segments pages wherever it starts: one command, no split. */
    s->rw_whole_max = UINT64_MAX;
    if (b->max_segments > 0)
        s->rw_whole_max = ((uint64_t)(b->max_segments - 1) * s->page_size) &
                          ~(((uint64_t)1 << s->lba_shift) - 1);
    /* The zone report buffer goes out whole too: no more descriptors
     * than such a buffer holds (the kernel refuses a command of more
     * segments than max_segments, -EINVAL). */
    {
        uint64_t descs = s->rw_whole_max / NVME_ZONE_DESC_SIZE;

        if (descs < (uint64_t)s->report_max_zones + 1)
            s->report_max_zones = descs > 1 ? (uint32_t)descs - 1 : 1;
    }

    /* Write zeroes without the command: write from one zero buffer that
     * every queue shares; the device only ever reads it. */
    if (!(s->oncs & NVME_ONCS_WRITE_ZEROES) && !b->read_only &&
        !s->zero_buf) {
        uint32_t len = (uint32_t)b->max_transfer;

        if (len > NVME_ZERO_BUF_MAX)
            len = NVME_ZERO_BUF_MAX;
        /* One command each, like a read or write placed whole. */
        if (len > s->rw_whole_max &&
            s->rw_whole_max >= ((uint64_t)1 << s->lba_shift))
            len = (uint32_t)s->rw_whole_max;
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
    uring_fixed_table_destroy(&s->fixed);
    free(s);
    b->priv = NULL;
}

/* driver->map_mem_region(): the rings take the region as a fixed buffer
 * where they can; never fails (passthrough needs no regions). */
static int nvme_map_mem_region(struct blkio *b,
                               const struct blkio_mem_region *region)
{
    struct nvme_state *s = b->priv;

    if (s->cmd_fixed)
        uring_fixed_map(b, &s->fixed, region);
    return 0;
}

static void nvme_unmap_mem_region(struct blkio *b,
                                  const struct blkio_mem_region *region)
{
    struct nvme_state *s = b->priv;

    if (s->cmd_fixed)
        uring_fixed_unmap(b, &s->fixed, region);
}

/* ---- queues ---- */

static const struct uring_ops nvme_ring_ops;

static int nvme_queue_init(struct blkioq *q)
{
    struct nvme_state *s = q->b->priv;
    struct uring_queue_config cfg = {
        .ops = &nvme_ring_ops,
        .slot_size = sizeof(struct nvme_slot),
        .setup_flags = IORING_SETUP_SQE128 | IORING_SETUP_CQE32,
        .need_fixed_file = true,
        .fixed = &s->fixed,
    };
    struct nvme_queue *nq = calloc(1, sizeof(*nq));
    bool fixed_file;
    int ret;

    if (!nq)
        return blkio_set_error(-ENOMEM, "out of memory creating queue %d",
                               q->index);
    ret = uring_queue_init(&nq->uq, q, &cfg, &fixed_file);
    if (ret < 0) {
        free(nq);
        return ret;
    }
    nq->nsid = s->nsid;
    nq->lba_shift = s->lba_shift;
    nq->rw_whole_max = s->rw_whole_max;
    q->priv = nq;
    return 0;
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
    if (!uring_queue_exit(&nq->uq, false))
        return;
    /* Report buffers of requests that never reached the device */
    for (uint32_t i = 0; i < uring_nslots(&nq->uq); i++)
        free(nvme_slot(nq, i)->report_buf);
    uring_queue_free_slots(&nq->uq);
    free(nq);
}

static bool nvme_set_completion_fd_enabled(struct blkioq *q, bool enable)
{
    struct nvme_queue *nq = q->priv;

    return nq && uring_set_eventfd_enabled(&nq->uq.ring, enable);
}

/* ---- command submission ---- */

static inline void nvme_cmd_lba(struct nvme_uring_cmd *cmd, uint64_t slba)
{
    cmd->cdw10 = (uint32_t)slba;
    cmd->cdw11 = (uint32_t)(slba >> 32);
}

/* The next Write Zeroes command of a write zeroes request, or a plain
 * Write from the shared zero buffer where the controller lacks it.
 * Returns the blocks it covers. */
static uint32_t nvme_prep_write_zeroes(const struct nvme_state *s,
                                       const struct nvme_slot *sl,
                                       struct nvme_uring_cmd *cmd)
{
    uint32_t n;

    if (s->oncs & NVME_ONCS_WRITE_ZEROES) {
        n = sl->nlb_left < s->wz_max_blocks ? (uint32_t)sl->nlb_left
                                            : s->wz_max_blocks;
        cmd->opcode = NVME_CMD_WRITE_ZEROES;
        cmd->cdw12 = n - 1;
        if (!(sl->flags & BLKIO_REQ_NO_UNMAP) && s->deac)
            cmd->cdw12 |= NVME_WZ_DEAC;
    } else {
        n = sl->nlb_left < s->zero_buf_blocks ? (uint32_t)sl->nlb_left
                                              : s->zero_buf_blocks;
        cmd->opcode = NVME_CMD_WRITE;
        cmd->addr = (uint64_t)(uintptr_t)s->zero_buf;
        cmd->data_len = n << s->lba_shift;
        cmd->cdw12 = n - 1;
    }
    /* FUA on every command: the request is acknowledged only after the
     * last one, and all of them must be durable by then. */
    if (sl->flags & BLKIO_REQ_FUA)
        cmd->cdw12 |= NVME_RW_FUA;
    nvme_cmd_lba(cmd, sl->lba);
    return n;
}

/* The next DSM (deallocate) command of a discard; its one range lives in
 * the slot, which the device reads. */
static uint32_t nvme_prep_discard(const struct nvme_state *s,
                                  struct nvme_slot *sl,
                                  struct nvme_uring_cmd *cmd)
{
    uint32_t n = sl->nlb_left < s->dsm_max_blocks ? (uint32_t)sl->nlb_left
                                                  : s->dsm_max_blocks;

    sl->dsm.cattr = 0;
    sl->dsm.nlb = nvme_cpu_to_le32(n);
    sl->dsm.slba = nvme_cpu_to_le64(sl->lba);
    cmd->opcode = NVME_CMD_DSM;
    cmd->addr = (uint64_t)(uintptr_t)&sl->dsm;
    cmd->data_len = sizeof(sl->dsm);
    cmd->cdw10 = 0;                 /* one range, zero-based */
    cmd->cdw11 = NVME_DSM_AD;
    return n;
}

/* The next Zone Management Receive of a report zones request: as many
 * descriptors as are still wanted and fit one command. */
static void nvme_prep_report(const struct nvme_state *s, struct nvme_slot *sl,
                             struct nvme_uring_cmd *cmd)
{
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
}

/* Pages [p, p + len) touches: the segments it can take at worst. */
static uint64_t nvme_pages_spanned(uint64_t p, uint64_t len, uint64_t page)
{
    return len ? (p + len - 1) / page - p / page + 1 : 0;
}

/*
 * The next command of an iovec request: as many of the remaining elements
 * as together touch at most max-segments pages, cut where the bytes so
 * far are whole blocks.  The kernel would refuse (EINVAL) more segments
 * than that whenever the pages are not physically contiguous.  Elements
 * whose boundaries never fall on a block, or one element that alone
 * touches more pages, go in one command as before: cutting inside an
 * element would need a copy of the array.  The commands point into the
 * caller's array, which it keeps until the request completes.
 */
static uint32_t nvme_vec_cut(const struct blkio *b, struct nvme_slot *sl,
                             struct nvme_uring_cmd *cmd)
{
    const struct nvme_state *s = b->priv;
    const struct iovec *iov = (const struct iovec *)(uintptr_t)sl->addr;
    uint64_t block_mask = ((uint64_t)1 << s->lba_shift) - 1;
    uint64_t pages = 0, bytes = 0, cut_bytes = 0;
    uint32_t cut = 0;

    for (uint32_t i = 0; i < sl->data_len && b->max_segments > 0; i++) {
        pages += nvme_pages_spanned((uint64_t)(uintptr_t)iov[i].iov_base,
                                    iov[i].iov_len, s->page_size);
        if (pages > (uint64_t)b->max_segments)
            break;
        bytes += iov[i].iov_len;
        if ((bytes & block_mask) == 0) {
            cut = i + 1;
            cut_bytes = bytes;
        }
    }
    if (cut == 0 || cut == sl->data_len || cut_bytes == 0) {
        cmd->data_len = sl->data_len;
        return (uint32_t)sl->nlb_left;
    }
    cmd->data_len = cut;
    sl->addr += cut * sizeof(*iov);
    sl->data_len -= cut;
    return (uint32_t)(cut_bytes >> s->lba_shift);
}

/*
 * The buffer of the next Read or Write command of a request; returns the
 * blocks it covers.  max-transfer fits one command, but the kernel maps a
 * user buffer page by page and refuses (EINVAL) a command whose pages make
 * more segments than the queue's max_segments: a max-transfer buffer that
 * starts inside a page (buf-alignment is 4) spans one page more than
 * max-transfer has, and its pages merge into fewer segments only where
 * they happen to be physically contiguous.  So a single buffer is sent as
 * commands of at most max-segments pages each, a chain like write zeroes.
 * An iovec array is cut the same way, between elements (nvme_vec_cut()).
 */
static uint32_t nvme_prep_rw_buffer(const struct blkio *b,
                                    struct nvme_slot *sl,
                                    struct nvme_uring_cmd *cmd)
{
    const struct nvme_state *s = b->priv;
    uint64_t len = sl->nlb_left << s->lba_shift;
    uint64_t room;

    cmd->addr = sl->addr;
    if (sl->vec)
        return nvme_vec_cut(b, sl, cmd);
    if (b->max_segments > 0 && s->page_size > 0) {
        room = (uint64_t)b->max_segments * s->page_size -
               (sl->addr & (s->page_size - 1));
        room &= ~(((uint64_t)1 << s->lba_shift) - 1);
        if (len > room && room > 0)
            len = room;
    }
    cmd->data_len = (uint32_t)len;
    sl->addr += len;
    return (uint32_t)(len >> s->lba_shift);
}

/* Zero a 128-byte SQE (the NVMe command fills its 80-byte cmd area) with
 * eight 16-byte stores: a memset() of it compiles to `rep stos`, whose
 * start-up costs more than the stores. */
static inline __attribute__((always_inline)) void
nvme_sqe_zero(struct io_uring_sqe *sqe)
{
    typedef uint64_t nvme_v2u64
        __attribute__((vector_size(16), aligned(8), may_alias));
    nvme_v2u64 *p = (nvme_v2u64 *)sqe;
    const nvme_v2u64 z = { 0, 0 };

    p[0] = z; p[1] = z; p[2] = z; p[3] = z;
    p[4] = z; p[5] = z; p[6] = z; p[7] = z;
}

/* A buffer inside a mapped region goes as the ring's fixed buffer: the
 * kernel need not pin its pages. */
static inline __attribute__((always_inline)) void
nvme_sqe_fixed(struct uring_queue *uq, struct io_uring_sqe *sqe,
               uint64_t addr, uint64_t len)
{
    int bi = uring_fixed_index(uq, (void *)(uintptr_t)addr, len);

    if (bi >= 0) {
        sqe->uring_cmd_flags = IORING_URING_CMD_FIXED;
        sqe->buf_index = (uint16_t)bi;
    }
}

/* nvme_prep() for every command but a single-buffer read or write that
 * fits one command: fill sqe with the next command of slot idx and advance
 * the slot past it. */
static __attribute__((noinline)) void
nvme_prep_step(struct uring_queue *uq, uint32_t idx, struct io_uring_sqe *sqe)
{
    struct nvme_state *s = uq->q->b->priv;
    struct nvme_slot *sl = (struct nvme_slot *)uring_slot(uq, idx);
    struct nvme_uring_cmd *cmd;
    uint32_t n = 0;

    nvme_sqe_zero(sqe);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->flags = IOSQE_FIXED_FILE;
    sqe->fd = 0;
    sqe->cmd_op = sl->vec ? NVME_URING_CMD_IO_VEC : NVME_URING_CMD_IO;
    cmd = (struct nvme_uring_cmd *)sqe->cmd;
    cmd->nsid = s->nsid;

    switch (sl->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
        n = nvme_prep_rw_buffer(uq->q->b, sl, cmd);
        if (!sl->vec)
            nvme_sqe_fixed(uq, sqe, cmd->addr, cmd->data_len);
        cmd->opcode = sl->op == BLKIO_OP_READ ? NVME_CMD_READ
                                              : NVME_CMD_WRITE;
        cmd->cdw12 = n - 1;
        if (sl->flags & BLKIO_REQ_FUA)
            cmd->cdw12 |= NVME_RW_FUA;
        nvme_cmd_lba(cmd, sl->lba);
        break;
    case BLKIO_OP_FLUSH:
        cmd->opcode = NVME_CMD_FLUSH;
        break;
    case BLKIO_OP_WRITE_ZEROES:
        n = nvme_prep_write_zeroes(s, sl, cmd);
        break;
    case BLKIO_OP_DISCARD:
        n = nvme_prep_discard(s, sl, cmd);
        break;
    case BLKIO_OP_REPORT_ZONES:
        nvme_prep_report(s, sl, cmd);
        break;
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

/* Fill sqe with the one command of slot idx, a single-buffer read or
 * write of at most rw_whole_max bytes (the caller has checked). */
static inline __attribute__((always_inline)) void
nvme_prep_rw_whole(struct uring_queue *uq, uint32_t idx,
                   struct io_uring_sqe *sqe)
{
    struct nvme_queue *nq = (struct nvme_queue *)uq;
    struct nvme_slot *sl = nvme_slot(nq, idx);
    struct nvme_uring_cmd *cmd;
    uint64_t len = sl->nlb_left << nq->lba_shift;

    nvme_sqe_zero(sqe);
    sqe->opcode = IORING_OP_URING_CMD;
    sqe->flags = IOSQE_FIXED_FILE;
    sqe->cmd_op = NVME_URING_CMD_IO;
    nvme_sqe_fixed(uq, sqe, sl->addr, len);
    cmd = (struct nvme_uring_cmd *)sqe->cmd;
    cmd->opcode = sl->op == BLKIO_OP_READ ? NVME_CMD_READ : NVME_CMD_WRITE;
    cmd->nsid = nq->nsid;
    cmd->addr = sl->addr;
    cmd->data_len = (uint32_t)len;
    cmd->cdw12 = (uint32_t)sl->nlb_left - 1;
    if (sl->flags & BLKIO_REQ_FUA)
        cmd->cdw12 |= NVME_RW_FUA;
    nvme_cmd_lba(cmd, sl->lba);
    sl->addr += len;
    sl->lba += sl->nlb_left;
    sl->nlb_left = 0;
}

/* Fill sqe with the next command of slot idx (struct uring_ops): a
 * single-buffer read or write that fits one command (nearly every
 * request) without the general nvme_prep_step(). */
static void nvme_prep(struct uring_queue *uq, uint32_t idx,
                      struct io_uring_sqe *sqe)
{
    struct nvme_queue *nq = (struct nvme_queue *)uq;
    const struct nvme_slot *sl = nvme_slot(nq, idx);

    if (BLKIO_UNLIKELY(sl->op > BLKIO_OP_WRITE || sl->vec ||
                       (sl->nlb_left << nq->lba_shift) > nq->rw_whole_max))
        nvme_prep_step(uq, idx, sqe);
    else
        nvme_prep_rw_whole(uq, idx, sqe);
}

/*
 * Requests that need no command at all, or cannot have one: completed here
 * with blkioq_fail() (the device will not signal the completion fd for
 * them), and true returned.
 */
static bool nvme_request_done_early(struct blkioq *q,
                                    const struct blkio_request *req)
{
    const struct blkio *b = q->b;
    const struct nvme_state *s = b->priv;
    const char *msg = NULL;
    int ret = 0;

    switch (req->op) {
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
        if (req->iovcnt > b->max_segments) {
            ret = -EINVAL;
            msg = "iovcnt exceeds max-segments";
            break;
        }
        /* fall through */
    case BLKIO_OP_WRITE_ZEROES:
    case BLKIO_OP_DISCARD:
        if (req->len == 0) {
            /* No NVMe command covers 0 blocks (its count is zero-based):
             * -EINVAL, as from libblkio 1.5 */
            ret = -EINVAL;
            msg = "request of length 0";
            break;
        }
        if (req->op == BLKIO_OP_DISCARD && !(s->oncs & NVME_ONCS_DSM)) {
            ret = -ENOTSUP;
            msg = "the controller does not support Dataset Management "
                  "(discard)";
        } else if (req->op == BLKIO_OP_WRITE_ZEROES &&
                   !(s->oncs & NVME_ONCS_WRITE_ZEROES) &&
                   ((req->flags & BLKIO_REQ_NO_FALLBACK) || !s->zero_buf)) {
            ret = -ENOTSUP;
            msg = "the controller does not support Write Zeroes and "
                  "BLKIO_REQ_NO_FALLBACK is set";
        } else {
            return false;
        }
        break;
    case BLKIO_OP_REPORT_ZONES:
        if (req->nr_zones == 0)
            break;
        if (!req->zones) {
            ret = -EINVAL;
            msg = "report zones: zones array is NULL";
        } else if (req->start >= b->capacity) {
            ret = -EINVAL;
            msg = "report zones: offset is beyond capacity";
        } else {
            return false;
        }
        break;
    case BLKIO_OP_OPEN_ZONE:
    case BLKIO_OP_CLOSE_ZONE:
    case BLKIO_OP_FINISH_ZONE:
    case BLKIO_OP_RESET_ZONE:
        if (!(req->start % b->zone_size || req->start >= b->capacity))
            return false;
        ret = -EINVAL;
        msg = "zone offset is not the start of a zone";
        break;
    default:
        return false;
    }
    blkioq_fail(q, req->user_data, ret, msg);
    return true;
}

/* The Zone Management Send action of a zone operation; 0 for the other
 * operations, -1 for one the driver does not know. */
static int nvme_zone_action(enum blkio_op op)
{
    switch (op) {
    case BLKIO_OP_OPEN_ZONE:         return NVME_ZSA_OPEN;
    case BLKIO_OP_CLOSE_ZONE:        return NVME_ZSA_CLOSE;
    case BLKIO_OP_FINISH_ZONE:       return NVME_ZSA_FINISH;
    case BLKIO_OP_RESET_ZONE:        return NVME_ZSA_RESET;
    case BLKIO_OP_OPEN_ALL_ZONES:    return NVME_ZSA_OPEN | NVME_ZSA_SELECT_ALL;
    case BLKIO_OP_CLOSE_ALL_ZONES:   return NVME_ZSA_CLOSE | NVME_ZSA_SELECT_ALL;
    case BLKIO_OP_FINISH_ALL_ZONES:  return NVME_ZSA_FINISH | NVME_ZSA_SELECT_ALL;
    case BLKIO_OP_RESET_ALL_ZONES:   return NVME_ZSA_RESET | NVME_ZSA_SELECT_ALL;
    case BLKIO_OP_READ:
    case BLKIO_OP_WRITE:
    case BLKIO_OP_FLUSH:
    case BLKIO_OP_WRITE_ZEROES:
    case BLKIO_OP_DISCARD:
    case BLKIO_OP_REPORT_ZONES:
        return 0;
    default:
        return -1;
    }
}

/* A report zones slot: from the start of the zone holding req->start,
 * with a buffer for as many descriptors as one command returns.  This is
 * the management path, not I/O: one buffer per report is fine. */
static int nvme_fill_report(const struct nvme_state *s, struct nvme_slot *sl,
                            const struct blkio_request *req)
{
    uint32_t want = req->nr_zones < s->report_max_zones
                        ? req->nr_zones : s->report_max_zones;

    sl->lba = (req->start >> s->lba_shift) / s->zone_blocks * s->zone_blocks;
    sl->zones = req->zones;
    sl->nr_zones = req->nr_zones;
    sl->zones_done = 0;
    free(sl->report_buf);
    sl->report_buf = aligned_alloc(NVME_MIN_PAGE_SIZE,
                                   ((want + 1) * NVME_ZONE_DESC_SIZE +
                                    NVME_MIN_PAGE_SIZE - 1) &
                                   ~(NVME_MIN_PAGE_SIZE - 1));
    return sl->report_buf ? 0 : -ENOMEM;
}

/* A free slot (its index in *idx) with what every request keeps: the
 * caller's user_data, the operation, flags and first block; NULL when out
 * of memory. */
static inline __attribute__((always_inline)) struct nvme_slot *
nvme_slot_new(struct nvme_queue *nq, const struct blkio_request *req,
              uint32_t *idx)
{
    struct nvme_slot *sl;

    if (uring_slot_alloc(&nq->uq, idx) < 0)
        return NULL;
    sl = nvme_slot(nq, *idx);
    sl->user_data = req->user_data;
    sl->op = req->op;
    sl->flags = req->flags;
    sl->vec = false;
    sl->lba = req->start >> nq->lba_shift;
    return sl;
}

/* nvme_queue_request() for everything but a single-buffer read or write
 * that fits one command. */
static __attribute__((noinline)) int
nvme_queue_request_other(struct blkioq *q, const struct blkio_request *req)
{
    struct nvme_queue *nq = q->priv;
    struct nvme_state *s = q->b->priv;
    struct nvme_slot *sl;
    uint32_t idx;
    int zsa;

    if (nvme_request_done_early(q, req))
        return 0;
    zsa = nvme_zone_action(req->op);
    if (zsa < 0)
        return -ENOTSUP;
    sl = nvme_slot_new(nq, req, &idx);
    if (!sl)
        return -ENOMEM;
    sl->nlb_left = 0;
    sl->zsa = (uint32_t)zsa;

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
            sl->data_len = 0;
        }
        break;
    case BLKIO_OP_WRITE_ZEROES:
    case BLKIO_OP_DISCARD:
        sl->nlb_left = req->len >> s->lba_shift;
        break;
    case BLKIO_OP_REPORT_ZONES:
        if (nvme_fill_report(s, sl, req) < 0) {
            uring_slot_free(&nq->uq, idx);
            return -ENOMEM;
        }
        break;
    default:
        break;
    }

    uring_issue(&nq->uq, idx);
    return 0;
}

/* driver->queue_request(): a single-buffer read or write that fits one
 * command (nearly every request) takes the short way.  The core has
 * checked it against max-transfer and buf-alignment already. */
static int nvme_queue_request(struct blkioq *q,
                              const struct blkio_request *req)
{
    struct nvme_queue *nq = q->priv;
    struct nvme_slot *sl;
    uint32_t idx;

    if (BLKIO_UNLIKELY(req->op > BLKIO_OP_WRITE || req->iovcnt != 1 ||
                       req->len == 0 || req->len > nq->rw_whole_max))
        return nvme_queue_request_other(q, req);
    sl = nvme_slot_new(nq, req, &idx);
    if (!sl)
        return -ENOMEM;
    sl->nlb_left = req->len >> nq->lba_shift;
    /* req->iov may point into the caller's stack: copy it out */
    sl->addr = (uint64_t)(uintptr_t)req->iov[0].iov_base;
    /* Checked above: one command */
    uring_issue_direct(&nq->uq, idx, nvme_prep_rw_whole);
    return 0;
}

/* ---- completion ---- */

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

/* nvme_complete() for anything but the success of a request's last
 * command: errors, report zones, chained requests. */
static __attribute__((noinline)) void
nvme_complete_other(struct uring_queue *uq, uint32_t idx, int res)
{
    struct blkio *b = uq->q->b;
    struct nvme_state *s = b->priv;
    struct nvme_slot *sl = (struct nvme_slot *)uring_slot(uq, idx);
    const char *msg = NULL;
    int ret = 0;

    if (BLKIO_UNLIKELY(res < 0)) {
        ret = res;
        msg = "nvme passthrough command failed in the kernel (see ret)";
    } else if (BLKIO_UNLIKELY(res > 0)) {
        ret = nvme_status_errno(res, &msg);
    } else if (sl->op == BLKIO_OP_REPORT_ZONES) {
        int got = nvme_report_convert(b, s, sl, &msg);

        if (got < 0) {
            ret = got;
        } else if (got > 0 && sl->zones_done < sl->nr_zones &&
                   sl->lba < b->nr_zones * s->zone_blocks) {
            uring_issue(uq, idx);
            return;
        } else {
            ret = (int)(sl->zones_done < INT_MAX ? sl->zones_done : INT_MAX);
        }
    } else if (sl->nlb_left > 0) {
        /* chained request: its next command */
        uring_issue(uq, idx);
        return;
    }

    if (sl->report_buf) {
        free(sl->report_buf);
        sl->report_buf = NULL;
    }
    blkioq_complete(uq->q, sl->user_data, ret, msg);
    uring_slot_free(uq, idx);
}

/* struct uring_ops: the CQE of slot idx (uring_cqe_slot() has checked
 * that it names a command in flight) came back with res: a negative errno
 * from the kernel, a positive NVMe status, or 0.  Inline where
 * uring_process_with() names it. */
static inline __attribute__((always_inline)) void
nvme_complete(struct uring_queue *uq, uint32_t idx, int res)
{
    struct nvme_slot *sl = (struct nvme_slot *)uring_slot(uq, idx);

    if (BLKIO_LIKELY(res == 0 && sl->nlb_left == 0 &&
                     sl->op != BLKIO_OP_REPORT_ZONES)) {
        /* Only report zones has a report buffer. */
        blkioq_complete(uq->q, sl->user_data, 0, NULL);
        uring_slot_free(uq, idx);
        return;
    }
    nvme_complete_other(uq, idx, res);
}

static const struct uring_ops nvme_ring_ops = {
    .prep = nvme_prep,
    .complete = nvme_complete,
};

static int nvme_process(struct blkioq *q, int min,
                        const struct timespec *deadline, const sigset_t *sig)
{
    struct nvme_queue *nq = q->priv;

    return uring_process_with(&nq->uq, min, deadline, sig, nvme_complete);
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
    .map_mem_region = nvme_map_mem_region,
    .unmap_mem_region = nvme_unmap_mem_region,
};
