/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * fuzz-nvme-zone-report.c - the nvme-io_uring driver's handling of what a
 * completion brings back (white box: the driver source is compiled in, the
 * rest of the library comes from the test build of it): Zone Management
 * Receive report data, one command after another, and NVMe status values.
 * A zoned namespace of the input's geometry asks for up to 32 zones with a
 * buffer of up to 16 descriptors per command; the device's answer to each
 * is a correct report with every field bent by the input.
 *
 * The oracle: every zone the driver hands out lies inside the namespace,
 * starts where the previous one ended, has its capacity and write pointer
 * inside the zone; never more zones than asked or than the buffer held;
 * every status maps to a negative errno with a message.
 */
#include "../../lib/drivers/nvme-io-uring.c"

#include <stdio.h>
#include <stdlib.h>

#include "fuzz-input.h"

static void __attribute__((noreturn)) zr_bug(const char *what)
{
    fprintf(stderr, "fuzz-nvme-zone-report: %s\n", what);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* Check the zones converted by the last report (from index `from`). */
static void zr_check(const struct blkio *b, const struct nvme_state *s,
                     const struct blkio_zone *z, uint32_t from, uint32_t to)
{
    uint64_t zone_len = s->zone_blocks << s->lba_shift;

    for (uint32_t i = from; i < to; i++) {
        if (z[i].len != zone_len || z[i].start % zone_len ||
            z[i].start >= b->capacity || z[i].capacity > zone_len ||
            z[i].write_pointer < z[i].start ||
            z[i].write_pointer - z[i].start > zone_len)
            zr_bug("a zone outside the namespace or its own bounds");
        if (i > 0 && z[i].start != z[i - 1].start + zone_len)
            zr_bug("zones not contiguous");
    }
}

static void zr_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The device's answer to one report command starting at zone lba: a
 * correct report (as many zones as fit, each the next one, empty), each
 * field bent by the input (zero bytes keep it correct). */
static void zr_report(struct fz *in, uint8_t *buf, uint32_t len,
                      uint64_t lba, uint64_t zone_blocks)
{
    uint32_t room = len / NVME_ZONE_DESC_SIZE - 1;

    memset(buf, 0, len);
    zr_put64(buf, room ^ fz_u64(in));
    for (uint32_t i = 0; i < room; i++) {
        uint8_t *d = buf + NVME_ZONE_DESC_SIZE * (i + 1);
        uint64_t zslba = (lba + i * zone_blocks) ^ fz_u64(in);

        d[NVME_ZD_ZT] = BLKIO_ZONE_TYPE_SEQWRITE_REQ ^ fz_u8(in);
        d[NVME_ZD_ZS] = (uint8_t)(BLKIO_ZONE_STATE_EMPTY << 4) ^ fz_u8(in);
        d[NVME_ZD_ZA] = fz_u8(in);
        zr_put64(d + NVME_ZD_ZCAP, zone_blocks ^ fz_u64(in));
        zr_put64(d + NVME_ZD_ZSLBA, zslba);
        zr_put64(d + NVME_ZD_WP, zslba ^ fz_u64(in));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fz in = { data, size };
    struct nvme_state s = { .lba_shift = 9 + fz_u8(&in) % 4,
                            .zone_blocks = 1 + fz_u16(&in) };
    struct blkio b = { .priv = &s, .nr_zones = 1 + fz_u8(&in) % 64 };
    struct blkio_zone zones[32];
    struct nvme_slot sl = { .op = BLKIO_OP_REPORT_ZONES, .zones = zones };
    uint32_t room = 1 + fz_u8(&in) % 16;
    const char *msg = NULL;
    int ret, status = fz_u16(&in);

    ret = nvme_status_errno(status, &msg);
    if (ret >= 0 || ret < -4095 || !msg)
        zr_bug("an NVMe status that is not a negative errno with a message");

    b.capacity = (b.nr_zones * s.zone_blocks) << s.lba_shift;
    sl.nr_zones = 1 + fz_u8(&in) % 32;
    sl.lba = (fz_u8(&in) % b.nr_zones) * s.zone_blocks;
    sl.report_len = (room + 1) * NVME_ZONE_DESC_SIZE;
    sl.report_buf = malloc(sl.report_len);
    if (!sl.report_buf)
        abort();
    /* One report per command until the driver has all or stops. */
    for (int cmd = 0; cmd < 8 && sl.zones_done < sl.nr_zones; cmd++) {
        uint32_t before = sl.zones_done;

        zr_report(&in, sl.report_buf, sl.report_len, sl.lba, s.zone_blocks);
        ret = nvme_report_convert(&b, &s, &sl, &msg);
        if (ret < 0 && !msg)
            zr_bug("a report error without a message");
        if (ret < 0 || ret == 0)
            break;
        if ((uint32_t)ret > room || sl.zones_done > sl.nr_zones ||
            sl.zones_done != before + (uint32_t)ret)
            zr_bug("more zones than the buffer held or than asked for");
        zr_check(&b, &s, zones, before, sl.zones_done);
    }
    free(sl.report_buf);
    return 0;
}
