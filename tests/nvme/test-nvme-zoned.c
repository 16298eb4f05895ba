/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: nvme-io_uring on a zoned (ZNS) namespace: report zones,
 * zone state transitions for one zone and for all zones, sequential writes
 * at the write pointer, and writes the device refuses (not at the write
 * pointer, into a full zone) failing with the device's status named.
 * Usage: test-nvme-zoned [/dev/ngXnY] (default $BLKIO_VM_NVME_ZONED).
 */
#include "nvme-util.h"

static struct blkioq *q;
static uint64_t zone_size, nr_zones;

static void report(uint64_t off, struct blkio_zone *z, uint32_t n,
                   int expected)
{
    memset(z, 0xee, sizeof(*z) * n);
    blkioq_report_zones(q, off, z, n, NULL, 0);
    CHECK_RET(t_wait(q, NULL), expected);
}

static void zone_op(void (*op)(struct blkioq *, uint64_t, void *, uint32_t),
                    uint64_t zone, int expected)
{
    op(q, zone * zone_size, NULL, 0);
    CHECK_RET(t_wait(q, NULL), expected);
}

static void all_op(void (*op)(struct blkioq *, void *, uint32_t))
{
    op(q, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
}

static uint8_t zone_state(uint64_t zone)
{
    struct blkio_zone z;

    report(zone * zone_size, &z, 1, 1);
    CHECK_EQ_U64(z.start, zone * zone_size);
    return z.zone_state;
}

#define CHECK_STATE(zone, st)                                               \
    do {                                                                     \
        uint8_t s_ = zone_state(zone);                                       \
        if (s_ != (st))                                                      \
            T_FAIL("zone %llu is in state 0x%x, expected %s (0x%x)",         \
                   (unsigned long long)(zone), s_, #st, (st));               \
    } while (0)

int main(int argc, char **argv)
{
    const char *dev = nt_device(argc, argv, "BLKIO_VM_NVME_ZONED", NULL);
    struct blkio *b;
    struct blkio_zone *zones, z;
    uint32_t ra;
    uint8_t *buf, *rbuf;
    const char *msg;

    if (geteuid() != 0)
        t_skip("nvme-io_uring needs CAP_SYS_ADMIN (run as root)");
    b = nt_open(dev, false, 1, 0);
    q = blkio_get_queue(b, 0);
    if (t_get_int(b, "zoned") != 2)
        T_FAIL("%s: zoned is %d, expected 2 (host-managed)", dev,
               t_get_int(b, "zoned"));
    zone_size = t_get_u64(b, "zone-size");
    nr_zones = t_get_u64(b, "nr-zones");
    ra = (uint32_t)t_get_int(b, "request-alignment");
    CHECK(zone_size > 0 && nr_zones >= 4);
    CHECK_EQ_U64(nr_zones * zone_size, t_get_u64(b, "capacity"));
    buf = nt_alloc(zone_size);
    rbuf = nt_alloc(zone_size);
    zones = calloc(nr_zones + 1, sizeof(*zones));
    CHECK(zones);

    /* reset all, then every zone is empty with its write pointer at start */
    all_op(blkioq_reset_all_zones);
    report(0, zones, (uint32_t)nr_zones + 1, (int)nr_zones);
    for (uint64_t i = 0; i < nr_zones; i++) {
        CHECK_EQ_U64(zones[i].start, i * zone_size);
        CHECK_EQ_U64(zones[i].len, zone_size);
        CHECK(zones[i].capacity > 0 && zones[i].capacity <= zone_size);
        CHECK_EQ_U64(zones[i].write_pointer, i * zone_size);
        CHECK_RET(zones[i].zone_type, BLKIO_ZONE_TYPE_SEQWRITE_REQ);
        CHECK_RET(zones[i].zone_state, BLKIO_ZONE_STATE_EMPTY);
        CHECK_RET(zones[i].reset, 0);
    }
    /* an offset inside a zone rounds down; a short array is filled */
    report(3 * zone_size + ra, zones, 2, 2);
    CHECK_EQ_U64(zones[0].start, 3 * zone_size);
    CHECK_EQ_U64(zones[1].start, 4 * zone_size);
    /* the last zone, asking for more than there are */
    report((nr_zones - 1) * zone_size, zones, 4, 1);
    report(t_get_u64(b, "capacity"), zones, 1, -EINVAL);

    /* sequential writes at the write pointer: implicitly opened */
    t_fill_pattern(buf, 2 * 4096, 0, 5);
    blkioq_write(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    blkioq_write(q, 4096, buf + 4096, 4096, NULL, BLKIO_REQ_FUA);
    CHECK_RET(t_wait(q, NULL), 0);
    report(0, &z, 1, 1);
    CHECK_RET(z.zone_state, BLKIO_ZONE_STATE_IMP_OPEN);
    CHECK_EQ_U64(z.write_pointer, 8192);
    blkioq_read(q, 0, rbuf, 8192, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    CHECK(t_verify_pattern(rbuf, 8192, 0, 5));

    /* a write away from the write pointer: the device says no */
    blkioq_write(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(t_wait(q, &msg), -EIO);
    printf("write not at the write pointer: %s\n", msg);
    CHECK(strstr(msg, "nvme status") != NULL);
    blkioq_write(q, zone_size + 4096, buf, 4096, NULL, 0);
    CHECK_RET(t_wait(q, &msg), -EIO);

    /* explicit transitions of single zones */
    zone_op(blkioq_close_zone, 0, 0);
    CHECK_STATE(0, BLKIO_ZONE_STATE_CLOSED);
    zone_op(blkioq_open_zone, 1, 0);
    CHECK_STATE(1, BLKIO_ZONE_STATE_EXP_OPEN);
    zone_op(blkioq_finish_zone, 1, 0);
    CHECK_STATE(1, BLKIO_ZONE_STATE_FULL);
    blkioq_write(q, zone_size, buf, 4096, NULL, 0);       /* zone is full */
    CHECK_RET(t_wait(q, &msg), -EIO);
    printf("write into a full zone: %s\n", msg);
    zone_op(blkioq_reset_zone, 1, 0);
    CHECK_STATE(1, BLKIO_ZONE_STATE_EMPTY);
    /* zone management needs the start of a zone */
    blkioq_open_zone(q, zone_size + ra, NULL, 0);
    CHECK_RET(t_wait(q, &msg), -EINVAL);
    CHECK(strstr(msg, "start of a zone") != NULL);

    /* writing on after a close continues at the write pointer */
    blkioq_write(q, 8192, buf, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    report(0, &z, 1, 1);
    CHECK_EQ_U64(z.write_pointer, 12288);

    /* all-zone transitions */
    zone_op(blkioq_close_zone, 0, 0);
    zone_op(blkioq_open_zone, 2, 0);
    all_op(blkioq_close_all_zones);
    CHECK_STATE(0, BLKIO_ZONE_STATE_CLOSED);
    CHECK_STATE(2, BLKIO_ZONE_STATE_CLOSED);
    all_op(blkioq_open_all_zones);
    CHECK_STATE(0, BLKIO_ZONE_STATE_EXP_OPEN);
    CHECK_STATE(2, BLKIO_ZONE_STATE_EXP_OPEN);
    CHECK_STATE(3, BLKIO_ZONE_STATE_EMPTY);
    all_op(blkioq_finish_all_zones);
    CHECK_STATE(0, BLKIO_ZONE_STATE_FULL);
    CHECK_STATE(2, BLKIO_ZONE_STATE_FULL);
    CHECK_STATE(3, BLKIO_ZONE_STATE_EMPTY);
    all_op(blkioq_reset_all_zones);
    report(0, zones, (uint32_t)nr_zones, (int)nr_zones);
    for (uint64_t i = 0; i < nr_zones; i++)
        CHECK_RET(zones[i].zone_state, BLKIO_ZONE_STATE_EMPTY);

    /* fill a whole zone in max-transfer pieces: it becomes full */
    {
        uint64_t zcap = zones[3].capacity, off = 0;
        uint64_t mt = (uint64_t)t_get_int(b, "max-transfer");

        t_fill_pattern(buf, zcap, 3 * zone_size, 6);
        while (off < zcap) {
            uint64_t l = zcap - off < mt ? zcap - off : mt;
            blkioq_write(q, 3 * zone_size + off, buf + off, l, NULL, 0);
            CHECK_RET(t_wait(q, NULL), 0);
            off += l;
        }
        CHECK_STATE(3, BLKIO_ZONE_STATE_FULL);
        for (off = 0; off < zcap; off += mt) {
            uint64_t l = zcap - off < mt ? zcap - off : mt;
            blkioq_read(q, 3 * zone_size + off, rbuf + off, l, NULL, 0);
            CHECK_RET(t_wait(q, NULL), 0);
        }
        CHECK(t_verify_pattern(rbuf, zcap, 3 * zone_size, 6));
    }
    /* write zeroes is a write too: at the write pointer of zone 4 */
    blkioq_write_zeroes(q, 4 * zone_size, 8192, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    report(4 * zone_size, &z, 1, 1);
    CHECK_EQ_U64(z.write_pointer, 4 * zone_size + 8192);
    all_op(blkioq_reset_all_zones);

    free(zones);
    free(rbuf);
    free(buf);
    blkio_destroy(&b);
    return 0;
}
