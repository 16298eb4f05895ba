/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * fuzz-nvme-identify.c - libblkio's nvme-io_uring driver, through the
 * public API, against an NVMe namespace the fuzzer plays at the ioctl
 * level (fake-ioctl.c): the namespace ID and every admin Identify the
 * driver sends at connect (controller, namespace, namespace descriptors,
 * command-set specific controller and namespace, NVM or zoned) come from
 * the input, as do their statuses.  After a successful connect the
 * properties must be sane; then start, one read, one zone report and one
 * zone reset (the fake device is /dev/null underneath: io_uring fails
 * them, which exercises the driver's completion of failed commands).
 *
 * Needs CAP_SYS_ADMIN (the driver checks it first); without it every
 * input stops at connect.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/ioctl.h>
#include <linux/nvme_ioctl.h>

#include "blkio.h"
#include "fake-ioctl.h"
#include "fuzz-input.h"

static struct fz in;
static uint8_t csi;             /* the namespace's command set: 0 or 2 */

static void put16(uint8_t *p, uint16_t v) { p[0] = v; p[1] = v >> 8; }
static void put32(uint8_t *p, uint32_t v)
{
    put16(p, (uint16_t)v);
    put16(p + 2, (uint16_t)(v >> 16));
}
static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

/* A correct answer to Identify (CNS, CSI), from the NVMe base and ZNS
 * specifications' layouts: a 2048-block namespace of 512-byte blocks,
 * zones of 256 blocks when zoned. */
static void identify(uint8_t cns, uint8_t cs, uint8_t *d)
{
    memset(d, 0, 4096);
    switch (cns) {
    case 0x00:                          /* namespace */
        put64(d + 0, 2048);             /* NSZE */
        put64(d + 8, 2048);             /* NCAP */
        d[24] = 1u << 4;                /* NSFEAT: NPWG/NOWS valid */
        d[33] = 0x09;                   /* DLFEAT: zeroes, DEAC */
        put16(d + 64, 7);               /* NPWG: 8 blocks */
        put16(d + 72, 15);              /* NOWS: 16 blocks */
        put32(d + 128, 9u << 16);       /* LBAF0: 512 bytes */
        break;
    case 0x01:                          /* controller */
        d[77] = 5;                      /* MDTS: 128 KiB */
        put16(d + 520, (1u << 2) | (1u << 3));  /* ONCS: DSM, WZ */
        d[525] = 1;                     /* VWC */
        break;
    case 0x03:                          /* namespace descriptors */
        d[0] = 0x04;                    /* NIDT: command set */
        d[1] = 1;
        d[4] = csi;
        break;
    case 0x05:                          /* I/O command set namespace */
        if (cs == 0x02) {
            put32(d + 4, 13);           /* MAR */
            put32(d + 8, 13);           /* MOR */
            put64(d + 2816, 256);       /* LBAFE0: zone size */
        }
        break;
    case 0x06:                          /* I/O command set controller */
        if (cs == 0x02)
            d[0] = 3;                   /* ZASL */
        else
            d[1] = 3;                   /* WZSL */
        break;
    }
}

int fake_dev_ioctl(unsigned long req, void *arg)
{
    uint8_t act = fz_u8(&in);

    if (act >= 0xf0) {
        errno = act & 1 ? EIO : ENOTTY;
        return -1;
    }
    if (req == (unsigned long)NVME_IOCTL_ID)
        return act >= 0xe0 ? (int)fz_u32(&in) : 1;
    if (req == NVME_IOCTL_ADMIN_CMD) {
        struct nvme_admin_cmd *cmd = arg;
        uint8_t *d = (uint8_t *)(uintptr_t)cmd->addr;

        if (cmd->opcode != 0x06 || cmd->data_len != 4096 || !d)
            abort();            /* the driver only sends Identify here */
        identify((uint8_t)cmd->cdw10, (uint8_t)(cmd->cdw11 >> 24), d);
        fz_scribble(&in, d, 4096, 16);
        /* a non-zero act in this range: an NVMe status instead */
        return act >= 0xd0 ? (int)(fz_u16(&in) & 0x7ff) : 0;
    }
    errno = ENOTTY;
    return -1;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* What connect must have made sane, whatever the device said. */
static void drv_check(struct blkio *b)
{
    int ra = 0, mt = 0, zoned = 0;
    uint64_t cap = 0, u;
    bool append = false;

    if (blkio_get_int(b, "request-alignment", &ra) < 0 || ra < 512 ||
        (ra & (ra - 1)) || blkio_get_uint64(b, "capacity", &cap) < 0 ||
        cap == 0 || cap % (unsigned)ra ||
        blkio_get_int(b, "max-transfer", &mt) < 0 || mt <= 0 || mt % ra) {
        fprintf(stderr, "fuzz-nvme-identify: bad limits: alignment %d, "
                "capacity %llu, max-transfer %d\n", ra,
                (unsigned long long)cap, mt);
        abort();
    }
    blkio_get_uint64(b, "max-discard-len", &u);
    blkio_get_uint64(b, "max-write-zeroes-len", &u);
    /* A zone is at least one block and at most the namespace (a size
     * that wrapped to 0 made every zone operation divide by zero). */
    if (blkio_get_int(b, "zoned", &zoned) == 0 && zoned &&
        (blkio_get_uint64(b, "zone-size", &u) < 0 || u == 0 || u > cap ||
         u % (unsigned)ra)) {
        fprintf(stderr, "fuzz-nvme-identify: bad zone size %llu (capacity "
                "%llu)\n", (unsigned long long)u, (unsigned long long)cap);
        abort();
    }
    /* Zone Append, where offered, takes at least one block. */
    if (zoned && blkio_get_bool(b, "append-support", &append) == 0 &&
        append &&
        (blkio_get_uint64(b, "zone-append-max-bytes", &u) < 0 ||
         u < (unsigned)ra)) {
        fprintf(stderr, "fuzz-nvme-identify: zone append of at most %llu "
                "bytes with %d-byte blocks\n", (unsigned long long)u, ra);
        abort();
    }
}

static void drv_io(struct blkio *b)
{
    static char buf[4096] __attribute__((aligned(4096)));
    struct blkio_zone zones[4];
    struct blkio_completion c[4];
    struct timespec t = { 0, 20 * 1000 * 1000 };
    struct blkioq *q;
    int zoned = 0;

    if (blkio_start(b) < 0)
        return;
    q = blkio_get_queue(b, 0);
    if (!q)
        abort();
    blkioq_read(q, 0, buf, sizeof(buf), (void *)1, 0);
    blkio_get_int(b, "zoned", &zoned);
    if (zoned) {
        blkioq_report_zones(q, 0, zones, 4, (void *)2, 0);
        blkioq_reset_zone(q, 0, (void *)3, 0);
    }
    if (blkioq_do_io(q, c, 0, 4, &t) > 1 + 2 * (zoned != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in = (struct fz){ data, size };
    csi = fz_u8(&in) & 1 ? 0x02 : 0x00;
    fake_dev_run("nvme-io_uring", drv_check, drv_io);
    return 0;
}
