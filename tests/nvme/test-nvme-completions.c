/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: nvme-io_uring treats CQEs as untrusted input (white box,
 * runs on the host): a CQE whose user_data names no slot with a command in
 * flight (out of range, a free slot, high bits set, a repeat) completes
 * nothing; NVMe status values map to the right errno and message; report
 * zones data that does not fit the buffer, skips zones or has values
 * outside the zone is an error, not zones; a full zone's write pointer is
 * its end.
 *
 * The driver source is compiled into this program with the core services
 * it calls replaced by recording stubs; CQEs go through the shared ring
 * code's check (uring_cqe_slot) to the driver's completion, as in
 * uring_reap().
 */
#include "../../lib/drivers/nvme-io-uring.c"

#include "nvme-util.h"

/* nvme-util.h's CHECK names the libblkio error, which is not linked here. */
#define TC_CHECK(c)                                                          \
    do {                                                                     \
        if (!(c))                                                            \
            T_FAIL("%s", #c);                                                \
    } while (0)

/* ---- core stubs ---- */

static struct blkio_completion tc_done[16];
static int tc_ndone;

int blkio_set_error(int neg_errno, const char *fmt, ...)
{
    (void)fmt;
    return neg_errno;
}

void blkio_clear_error(void)
{
}

void blkioq_complete(struct blkioq *q, void *user_data, int ret,
                     const char *error_msg)
{
    (void)q;
    if (tc_ndone == 16)
        T_FAIL("too many completions");
    tc_done[tc_ndone].user_data = user_data;
    tc_done[tc_ndone].ret = ret;
    tc_done[tc_ndone].error_msg = error_msg;
    tc_ndone++;
}

void blkioq_fail(struct blkioq *q, void *user_data, int ret, const char *msg)
{
    blkioq_complete(q, user_data, ret, msg);
}

void blkioq_notify(struct blkioq *q)
{
    (void)q;
}

int blkio_prop_set_positive_int(struct blkio *b,
                                const struct blkio_property *p,
                                const void *value)
{
    (void)b;
    (void)p;
    return *(const int *)value > 0 ? 0 : -EINVAL;
}

int blkio_prop_set_nonneg_int(struct blkio *b,
                              const struct blkio_property *p,
                              const void *value)
{
    (void)b;
    (void)p;
    return *(const int *)value >= 0 ? 0 : -EINVAL;
}

void blkio_deadline_remaining(const struct timespec *deadline,
                              struct timespec *left)
{
    *left = *deadline;
}

void blkio_pause(long ns, const struct timespec *deadline)
{
    (void)ns;
    (void)deadline;
}

/* ---- fixture ---- */

#define TC_LBA_SHIFT 12
#define TC_ZONE_BLOCKS 256ull
#define TC_NR_ZONES 16ull

static struct blkio tc_b;
static struct nvme_state tc_s;
static struct blkioq tc_q;
static struct nvme_queue tc_nq;

static void tc_setup(void)
{
    tc_s.nsid = 1;
    tc_s.lba_shift = TC_LBA_SHIFT;
    tc_s.zone_blocks = TC_ZONE_BLOCKS;
    tc_s.report_max_zones = 8;
    tc_b.priv = &tc_s;
    tc_b.nr_zones = TC_NR_ZONES;
    tc_b.zone_size = TC_ZONE_BLOCKS << TC_LBA_SHIFT;
    tc_b.capacity = TC_NR_ZONES * tc_b.zone_size;
    tc_q.b = &tc_b;
    tc_q.priv = &tc_nq;
    tc_q.completion_fd = -1;
    tc_nq.uq.q = &tc_q;
    tc_nq.uq.ops = &nvme_ring_ops;
    tc_nq.uq.slot_size = sizeof(struct nvme_slot);
    tc_nq.uq.free_head = URING_NONE;
    tc_nq.uq.backlog_head = URING_NONE;
    tc_nq.uq.backlog_tail = URING_NONE;
}

/* A slot as uring_issue() leaves it: one command in flight. */
static uint32_t tc_slot(enum blkio_op op, void *user_data)
{
    uint32_t idx;
    struct nvme_slot *sl;

    TC_CHECK(uring_slot_alloc(&tc_nq.uq, &idx) == 0);
    sl = nvme_slot(&tc_nq, idx);
    sl->op = op;
    sl->user_data = user_data;
    sl->nlb_left = 0;
    sl->hdr.in_flight = true;
    tc_nq.uq.inflight++;
    return idx;
}

static void tc_cqe(uint64_t user_data, int res)
{
    uint32_t idx;

    if (uring_cqe_slot(&tc_nq.uq, user_data, &idx))
        tc_nq.uq.ops->complete(&tc_nq.uq, idx, res);
}

/* ---- tests ---- */

static void test_foreign_cqes(void)
{
    uint32_t idx = tc_slot(BLKIO_OP_READ, (void *)0x11);
    uint32_t nslots = uring_nslots(&tc_nq.uq);

    tc_ndone = 0;
    tc_cqe((1ull << 32) | idx, 0);          /* high bits: not ours */
    tc_cqe(nslots, 0);                      /* past the last slot */
    tc_cqe(UINT64_MAX, 0);
    tc_cqe(idx + 1, 0);                     /* a free slot */
    TC_CHECK(tc_ndone == 0);
    TC_CHECK(tc_nq.uq.bad_cqes == 4);
    TC_CHECK(tc_nq.uq.inflight == 1);

    tc_cqe(idx, 0);                         /* the real one */
    TC_CHECK(tc_ndone == 1);
    TC_CHECK(tc_done[0].user_data == (void *)0x11 && tc_done[0].ret == 0);
    TC_CHECK(tc_nq.uq.inflight == 0);
    tc_cqe(idx, 0);                         /* a repeat completes nothing */
    TC_CHECK(tc_ndone == 1);
    TC_CHECK(tc_nq.uq.bad_cqes == 5);
    tc_nq.uq.bad_cqes = 0;
}

static void tc_status(int status, int want, const char *want_msg)
{
    uint32_t idx = tc_slot(BLKIO_OP_WRITE, (void *)0x22);

    tc_ndone = 0;
    tc_cqe(idx, status);
    TC_CHECK(tc_ndone == 1);
    if (tc_done[0].ret != want)
        T_FAIL("status 0x%x: ret %d, expected %d", status, tc_done[0].ret,
               want);
    if (!tc_done[0].error_msg || !strstr(tc_done[0].error_msg, want_msg))
        T_FAIL("status 0x%x: message \"%s\", expected it to contain "
               "\"%s\"", status, tc_done[0].error_msg ?
               tc_done[0].error_msg : "(null)", want_msg);
}

static void test_status(void)
{
    tc_status(0x020, -EROFS, "write protected");
    tc_status(0x4000 | 0x020, -EROFS, "write protected");   /* DNR */
    tc_status(0x015, -EPERM, "operation denied");
    tc_status(0x00f, -EINVAL, "SGL length");
    tc_status(0x016, -EINVAL, "SGL offset");
    tc_status(0x183, -ENOTSUP, "0x183");
    tc_status(0x2000 | 0x281, -EIO, "unrecovered read error");
    tc_status(0x1b9, -EIO, "zone is full");
    tc_status(0x7c0, -EIO, "vendor specific");
    tc_status(0x4c0, -EIO, "reserved");
    tc_status(-EINTR, -EINTR, "kernel");
}

static uint8_t *tc_report;
static struct blkio_zone tc_zones[8];

static void tc_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* A report slot for nr_zones zones from zone `first`, with a buffer of
 * `room` descriptors, as issued. */
static uint32_t tc_report_slot(uint32_t nr_zones, uint32_t first,
                               uint32_t room)
{
    uint32_t idx = tc_slot(BLKIO_OP_REPORT_ZONES, (void *)0x33);
    struct nvme_slot *sl = nvme_slot(&tc_nq, idx);

    tc_report = aligned_alloc(4096, 4096);
    TC_CHECK(tc_report);
    memset(tc_report, 0, 4096);
    memset(tc_zones, 0xee, sizeof(tc_zones));
    sl->report_buf = tc_report;
    sl->report_len = (room + 1) * NVME_ZONE_DESC_SIZE;
    sl->zones = tc_zones;
    sl->nr_zones = nr_zones;
    sl->zones_done = 0;
    sl->lba = first * TC_ZONE_BLOCKS;
    return idx;
}

static void tc_desc(int i, uint64_t zslba, uint64_t zcap, uint64_t wp,
                    uint8_t type, uint8_t state)
{
    uint8_t *d = tc_report + NVME_ZONE_DESC_SIZE * (i + 1);

    d[0] = type;
    d[1] = (uint8_t)(state << 4);
    tc_put64(d + 8, zcap);
    tc_put64(d + 16, zslba);
    tc_put64(d + 24, wp);
}

static void tc_expect_report(uint32_t idx, int want, const char *want_msg)
{
    tc_ndone = 0;
    tc_cqe(idx, 0);
    TC_CHECK(tc_ndone == 1);
    if (tc_done[0].ret != want)
        T_FAIL("report: ret %d, expected %d (%s)", tc_done[0].ret, want,
               tc_done[0].error_msg ? tc_done[0].error_msg : "no message");
    if (want_msg && (!tc_done[0].error_msg ||
                     !strstr(tc_done[0].error_msg, want_msg)))
        T_FAIL("report: message \"%s\", expected \"%s\"",
               tc_done[0].error_msg ? tc_done[0].error_msg : "(null)",
               want_msg);
    /* the driver freed the buffer with the request */
    TC_CHECK(nvme_slot(&tc_nq, idx)->report_buf == NULL);
}

static void test_report(void)
{
    const uint64_t zb = TC_ZONE_BLOCKS;
    uint32_t idx;

    /* a good report: empty, open, full zones from zone 2 */
    idx = tc_report_slot(3, 2, 3);
    tc_put64(tc_report, 3);
    tc_desc(0, 2 * zb, zb, 2 * zb, BLKIO_ZONE_TYPE_SEQWRITE_REQ,
            BLKIO_ZONE_STATE_EMPTY);
    tc_desc(1, 3 * zb, zb - 16, 3 * zb + 5, BLKIO_ZONE_TYPE_SEQWRITE_REQ,
            BLKIO_ZONE_STATE_IMP_OPEN);
    tc_desc(2, 4 * zb, zb - 16, UINT64_MAX, BLKIO_ZONE_TYPE_SEQWRITE_REQ,
            BLKIO_ZONE_STATE_FULL);
    tc_expect_report(idx, 3, NULL);
    TC_CHECK(tc_zones[0].start == (2 * zb) << TC_LBA_SHIFT);
    TC_CHECK(tc_zones[1].write_pointer == (3 * zb + 5) << TC_LBA_SHIFT);
    TC_CHECK(tc_zones[1].capacity == (zb - 16) << TC_LBA_SHIFT);
    TC_CHECK(tc_zones[2].write_pointer == (5 * zb) << TC_LBA_SHIFT);
    TC_CHECK(tc_zones[2].zone_state == BLKIO_ZONE_STATE_FULL);
    TC_CHECK(tc_zones[3].start == 0xeeeeeeeeeeeeeeeeull);  /* untouched */

    /* more descriptors than the buffer has room for */
    idx = tc_report_slot(2, 0, 2);
    tc_put64(tc_report, 1000);
    tc_expect_report(idx, -EIO, "more zones");

    /* a zone that is not the next one */
    idx = tc_report_slot(2, 0, 2);
    tc_put64(tc_report, 2);
    tc_desc(0, 0, zb, 0, 2, BLKIO_ZONE_STATE_EMPTY);
    tc_desc(1, 5 * zb, zb, 5 * zb, 2, BLKIO_ZONE_STATE_EMPTY);
    tc_expect_report(idx, -EIO, "not the next one");

    /* beyond the namespace */
    idx = tc_report_slot(2, (uint32_t)TC_NR_ZONES - 1, 2);
    tc_put64(tc_report, 2);
    tc_desc(0, (TC_NR_ZONES - 1) * zb, zb, (TC_NR_ZONES - 1) * zb, 2,
            BLKIO_ZONE_STATE_EMPTY);
    tc_desc(1, TC_NR_ZONES * zb, zb, TC_NR_ZONES * zb, 2,
            BLKIO_ZONE_STATE_EMPTY);
    tc_expect_report(idx, -EIO, "beyond the namespace");
    /* the zones before the bad one may have been written, but the
     * request as a whole failed */

    /* write pointer past the zone capacity */
    idx = tc_report_slot(1, 1, 1);
    tc_put64(tc_report, 1);
    tc_desc(0, zb, zb / 2, zb + zb / 2 + 1, 2, BLKIO_ZONE_STATE_CLOSED);
    tc_expect_report(idx, -EIO, "write pointer");

    /* write pointer before the zone */
    idx = tc_report_slot(1, 1, 1);
    tc_put64(tc_report, 1);
    tc_desc(0, zb, zb, 3, 2, BLKIO_ZONE_STATE_EXP_OPEN);
    tc_expect_report(idx, -EIO, "write pointer");

    /* capacity larger than the zone */
    idx = tc_report_slot(1, 1, 1);
    tc_put64(tc_report, 1);
    tc_desc(0, zb, zb + 1, zb, 2, BLKIO_ZONE_STATE_EMPTY);
    tc_expect_report(idx, -EIO, "capacity");

    /* unknown state and type */
    idx = tc_report_slot(1, 1, 1);
    tc_put64(tc_report, 1);
    tc_desc(0, zb, zb, zb, 2, 0x7);
    tc_expect_report(idx, -EIO, "zone state");
    idx = tc_report_slot(1, 1, 1);
    tc_put64(tc_report, 1);
    tc_desc(0, zb, zb, zb, 0x9, BLKIO_ZONE_STATE_EMPTY);
    tc_expect_report(idx, -EIO, "zone type");

    /* no zones at all: the report ends with what it has */
    idx = tc_report_slot(4, 1, 4);
    tc_put64(tc_report, 0);
    tc_expect_report(idx, 0, NULL);
}

int main(void)
{
    tc_setup();
    test_foreign_cqes();
    test_status();
    test_report();
    uring_queue_free_slots(&tc_nq.uq);
    return 0;
}
