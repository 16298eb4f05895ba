/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the public structs and constants have the layout and values
 * of libblkio 1.x (x86_64), so programs built against its header work with
 * this library.  Mostly compile-time checks; main() only reports.
 */
#include <assert.h>
#include <stddef.h>

#include "core-util.h"

/* struct blkio_mem_region: len comes before iova (unlike the manual). */
static_assert(sizeof(struct blkio_mem_region) == 40, "blkio_mem_region size");
static_assert(offsetof(struct blkio_mem_region, addr) == 0, "addr");
static_assert(offsetof(struct blkio_mem_region, len) == 8, "len");
static_assert(offsetof(struct blkio_mem_region, iova) == 16, "iova");
static_assert(offsetof(struct blkio_mem_region, fd_offset) == 24, "fd_offset");
static_assert(offsetof(struct blkio_mem_region, fd) == 32, "fd");
static_assert(offsetof(struct blkio_mem_region, flags) == 36, "flags");

static_assert(sizeof(struct blkio_completion) == 32, "blkio_completion size");
static_assert(offsetof(struct blkio_completion, user_data) == 0, "user_data");
static_assert(offsetof(struct blkio_completion, error_msg) == 8, "error_msg");
static_assert(offsetof(struct blkio_completion, ret) == 16, "ret");
static_assert(offsetof(struct blkio_completion, reserved_) == 20, "reserved_");

static_assert(sizeof(struct blkio_zone) == 64, "blkio_zone size");
static_assert(offsetof(struct blkio_zone, start) == 0, "start");
static_assert(offsetof(struct blkio_zone, len) == 8, "zone len");
static_assert(offsetof(struct blkio_zone, capacity) == 16, "capacity");
static_assert(offsetof(struct blkio_zone, write_pointer) == 24, "write_pointer");
static_assert(offsetof(struct blkio_zone, zone_type) == 32, "zone_type");
static_assert(offsetof(struct blkio_zone, zone_state) == 33, "zone_state");
static_assert(offsetof(struct blkio_zone, reset) == 34, "reset");
static_assert(offsetof(struct blkio_zone, reserved_) == 35, "zone reserved_");

static_assert(BLKIO_REQ_FUA == 1u, "FUA");
static_assert(BLKIO_REQ_NO_UNMAP == 2u, "NO_UNMAP");
static_assert(BLKIO_REQ_NO_FALLBACK == 4u, "NO_FALLBACK");

static_assert(BLKIO_ZONE_TYPE_CONVENTIONAL == 0x1, "conventional");
static_assert(BLKIO_ZONE_TYPE_SEQWRITE_REQ == 0x2, "seqwrite req");
static_assert(BLKIO_ZONE_TYPE_SEQWRITE_PREF == 0x3, "seqwrite pref");
static_assert(BLKIO_ZONE_STATE_EMPTY == 0x1, "empty");
static_assert(BLKIO_ZONE_STATE_IMP_OPEN == 0x2, "imp open");
static_assert(BLKIO_ZONE_STATE_EXP_OPEN == 0x3, "exp open");
static_assert(BLKIO_ZONE_STATE_CLOSED == 0x4, "closed");
static_assert(BLKIO_ZONE_STATE_READONLY == 0xD, "readonly");
static_assert(BLKIO_ZONE_STATE_FULL == 0xE, "full");
static_assert(BLKIO_ZONE_STATE_OFFLINE == 0xF, "offline");

/* The const-ness of the released prototypes: assigning to pointers of the
 * exact types fails to compile (with -Werror) if a signature drifts. */
static void (*const cu_write_fn)(struct blkioq *, uint64_t, const void *,
                                 size_t, void *, uint32_t) = blkioq_write;
static void (*const cu_readv_fn)(struct blkioq *, uint64_t,
                                 const struct iovec *, int, void *,
                                 uint32_t) = blkioq_readv;
static void (*const cu_writev_fn)(struct blkioq *, uint64_t, struct iovec *,
                                  int, void *, uint32_t) = blkioq_writev;
static void (*const cu_free_fn)(struct blkio *,
                                const struct blkio_mem_region *) =
    blkio_free_mem_region;

int main(void)
{
    CHECK(cu_write_fn && cu_readv_fn && cu_writev_fn && cu_free_fn);
    printf("struct layouts and constants match libblkio 1.x\n");
    return T_EXIT_PASS;
}
