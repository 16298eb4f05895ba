/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nvme-spec.h - the parts of the NVMe specifications the nvme-io_uring
 * driver uses: admin and I/O opcodes, Identify data offsets, command
 * fields, and little-endian accessors for data the device wrote.
 */
#ifndef BLKIO_NVME_SPEC_H
#define BLKIO_NVME_SPEC_H

#include <endian.h>
#include <stdint.h>

/* NVM Express Base 2.0, NVM and ZNS command sets. */

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

/* Identify data: byte offsets of the fields the driver reads. */
#define NVME_ID_CTRL_MDTS     77    /* max data transfer, 2^n min pages */
#define NVME_ID_CTRL_ONCS     520   /* optional NVM commands, le16 */
#define NVME_ID_CTRL_VWC      525   /* volatile write cache */
#define NVME_ID_NS_NSZE       0     /* size in blocks, le64 */
#define NVME_ID_NS_NSFEAT     24
#define NVME_ID_NS_NLBAF      25    /* number of LBA formats, zero-based */
#define NVME_ID_NS_FLBAS      26    /* formatted LBA size */
#define NVME_ID_NS_DLFEAT     33    /* deallocate features */
#define NVME_ID_NS_NPWG       64    /* preferred write granularity, le16 */
#define NVME_ID_NS_NOWS       72    /* optimal write size, le16 */
#define NVME_ID_NS_LBAF       128   /* LBA formats, le32 each */
#define NVME_ID_NVM_CTRL_WZSL 1     /* write zeroes size limit */
#define NVME_ID_NVM_CTRL_DMRSL 4    /* DSM range size limit, le32 */
#define NVME_ID_ZNS_NS_MAR    4     /* max active resources, le32 */
#define NVME_ID_ZNS_NS_MOR    8     /* max open resources, le32 */
#define NVME_ID_ZNS_NS_LBAFE  2816  /* LBA format extensions, 16 bytes each */
#define NVME_ID_ZNS_CTRL_ZASL 0     /* zone append size limit */

#define NVME_NSFEAT_OPTPERF   (1u << 4)   /* NPWG and NOWS are valid */

/* Zone descriptor fields (after the 64-byte report header). */
#define NVME_ZD_ZT            0     /* zone type, bits 3:0 */
#define NVME_ZD_ZS            1     /* zone state, bits 7:4 */
#define NVME_ZD_ZA            2     /* zone attributes */
#define NVME_ZD_ZCAP          8     /* le64 */
#define NVME_ZD_ZSLBA         16    /* le64 */
#define NVME_ZD_WP            24    /* le64 */

/* The NVMe spec sizes these in units of the controller's minimum memory
 * page size, CAP.MPSMIN, which lives in a register the character device
 * cannot read.  Linux on x86_64 refuses controllers whose MPSMIN exceeds
 * 4 KiB, so any controller we can talk to here uses 4 KiB. */
#define NVME_MIN_PAGE_SIZE    4096u

/* Commands carry a 16-bit zero-based block count. */
#define NVME_MAX_NLB          65536u

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

#endif /* BLKIO_NVME_SPEC_H */
