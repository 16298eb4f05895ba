/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nvme-io-uring.h - the nvme-io_uring driver's state, shared by
 * nvme-io-uring.c (life cycle, queues, the I/O path), nvme-probe.c
 * (connect: Identify data to properties) and nvme-status.c (NVMe status to
 * errno).
 */
#ifndef BLKIO_NVME_IO_URING_H
#define BLKIO_NVME_IO_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "nvme-spec.h"
#include "uring-common.h"

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
    uint64_t page_size;         /* CPU page: the kernel's mapping unit */
    uint64_t rw_whole_max;      /* see struct nvme_queue */
    struct uring_fixed_table fixed;     /* mapped regions: fixed buffers */
    bool cmd_fixed;             /* the kernel takes IORING_URING_CMD_FIXED */
};

/* One request, from queueing to blkioq_complete().  Everything a command
 * needs is copied in at queueing, so that a request can wait on the
 * backlog; chained requests advance lba/nlb_left one command at a time. */
struct nvme_slot {
    struct uring_slot hdr;      /* first: the shared ring code's part */
    void *user_data;
    enum blkio_op op;
    uint32_t flags;
    bool vec;                   /* read/write: addr is an iovec array */
    uint32_t data_len;          /* read/write: iovec count (vec only) */
    uint64_t addr;              /* read/write: iovec array, or the rest
                                 * of the buffer (advanced per command) */
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
    struct uring_queue uq;      /* first: ring, slots, backlog */
    /* What the I/O path reads per request, next to the ring (copied from
     * struct nvme_state when the queue is set up): */
    uint32_t nsid;
    unsigned lba_shift;
    uint64_t rw_whole_max;      /* a single buffer up to this many bytes
                                 * goes in one command wherever it starts
                                 * (nvme_prep_rw_buffer()) */
};

static inline struct nvme_slot *nvme_slot(struct nvme_queue *nq,
                                          uint32_t idx)
{
    return (struct nvme_slot *)uring_slot(&nq->uq, idx);
}

/* driver->connect() (nvme-probe.c). */
int nvme_connect(struct blkio *b);

/* One entry of the NVMe status table (nvme-status.c). */
struct nvme_status_entry {
    uint16_t status;            /* SCT << 8 | SC */
    int16_t err;                /* negative errno */
    const char *msg;            /* "nvme status 0x...: what it means" */
};

extern const struct nvme_status_entry nvme_status_table[];
extern const size_t nvme_status_table_len;

/*
 * An NVMe status (SCT << 8 | SC, with the DNR, More and CRD bits as the
 * kernel reports it in cqe->res) to a negative errno a caller can act on,
 * and a message naming the status.  Statuses not in the table give -EIO
 * and a message naming their status code type.
 */
int nvme_status_errno(int status, const char **msg);

#endif /* BLKIO_NVME_IO_URING_H */
