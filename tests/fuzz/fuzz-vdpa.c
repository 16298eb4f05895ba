/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * fuzz-vdpa.c - libblkio's virtio-blk-vhost-vdpa driver, through the
 * public API, against a vhost-vdpa device the fuzzer plays at the ioctl
 * level (fake-ioctl.c): device id, backend features, IOVA range, config
 * size and contents, virtqueue count and size, status, features; any
 * ioctl may fail.  Connect, read the properties, start, map memory, queue
 * a few requests (the fake device never completes them: they are still in
 * flight at destroy).
 *
 * The oracle: no sanitizer report, sane limits after a successful
 * connect, every request completes at most once.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/vhost.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_ring.h>

#include "blkio.h"
#include "fake-ioctl.h"
#include "fuzz-input.h"

static struct fz in;
static uint8_t status;

#define VDPA_FEATURES                                                     \
    ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_ACCESS_PLATFORM) |  \
     (1ull << VIRTIO_RING_F_INDIRECT_DESC) |                              \
     (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_BLK_F_SEG_MAX) | \
     (1ull << VIRTIO_BLK_F_BLK_SIZE) | (1ull << VIRTIO_BLK_F_FLUSH) |     \
     (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_BLK_F_DISCARD) |         \
     (1ull << VIRTIO_BLK_F_WRITE_ZEROES))

static void vdpa_config(struct vhost_vdpa_config *c)
{
    struct virtio_blk_config cfg = {
        .capacity = 4096, .seg_max = 64, .blk_size = 512,
        .num_queues = 2, .max_discard_sectors = 4096,
        .max_discard_seg = 1, .discard_sector_alignment = 1,
        .max_write_zeroes_sectors = 4096, .max_write_zeroes_seg = 1,
    };

    fz_scribble(&in, &cfg, sizeof(cfg), 8);
    memset(c->buf, 0, c->len);
    memcpy(c->buf, &cfg, c->len < sizeof(cfg) ? c->len : sizeof(cfg));
}

/* A u64 answer: the right one, bent by the input. */
#define PUT(type, ptr, good) (*(type *)(ptr) = (type)((good) ^ fz_u64(&in)))

int fake_dev_ioctl(unsigned long req, void *arg)
{
    static const int errs[] = { EIO, EINVAL, ENOTTY, EFAULT, EBUSY };
    uint8_t act = fz_u8(&in);

    if (act >= 0xf0) {
        errno = errs[act % 5];
        return -1;
    }
    switch (req) {
    case VHOST_VDPA_GET_DEVICE_ID: PUT(uint32_t, arg, VIRTIO_ID_BLOCK); break;
    case VHOST_GET_BACKEND_FEATURES:
        PUT(uint64_t, arg, (1ull << VHOST_BACKEND_F_IOTLB_MSG_V2) |
                           (1ull << VHOST_BACKEND_F_IOTLB_BATCH));
        break;
    case VHOST_VDPA_GET_IOVA_RANGE: {
        struct vhost_vdpa_iova_range *r = arg;

        r->first = fz_u64(&in);
        r->last = ~0ull ^ fz_u64(&in);
        break;
    }
    case VHOST_VDPA_GET_CONFIG_SIZE: PUT(uint32_t, arg, 60); break;
    case VHOST_VDPA_GET_VQS_COUNT: PUT(uint32_t, arg, 2); break;
    case VHOST_VDPA_GET_VRING_NUM: PUT(uint16_t, arg, 256); break;
    case VHOST_GET_FEATURES: PUT(uint64_t, arg, VDPA_FEATURES); break;
    case VHOST_VDPA_GET_STATUS: PUT(uint8_t, arg, status); break;
    case VHOST_VDPA_SET_STATUS: status = *(uint8_t *)arg; break;
    case VHOST_VDPA_GET_CONFIG: vdpa_config(arg); break;
    case VHOST_GET_VRING_BASE: ((struct vhost_vring_state *)arg)->num = 0;
        break;
    default:                    /* SET_OWNER, SET_*: accepted */
        break;
    }
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void drv_check(struct blkio *b)
{
    int v;
    uint64_t u;

    blkio_get_uint64(b, "capacity", &u);
    blkio_get_uint64(b, "max-mem-regions", &u);
    blkio_get_int(b, "max-queue-size", &v);
    if (blkio_get_int(b, "request-alignment", &v) < 0 || v < 512 ||
        (v & (v - 1)) || blkio_get_int(b, "max-queues", &v) < 0 || v < 1) {
        fprintf(stderr, "fuzz-vdpa: bad limits after connect\n");
        abort();
    }
}

static void drv_io(struct blkio *b)
{
    struct blkio_mem_region r;
    struct blkio_completion c[4];
    struct timespec t = { 0, 1000 * 1000 };
    struct blkioq *q;

    blkio_set_int(b, "num-queues", 1);
    if (blkio_start(b) < 0 || blkio_alloc_mem_region(b, &r, 65536) < 0)
        return;
    if (blkio_map_mem_region(b, &r) < 0)
        return;         /* destroy frees the region */
    q = blkio_get_queue(b, 0);
    if (!q)
        abort();
    blkioq_read(q, 0, r.addr, 4096, (void *)1, 0);
    blkioq_write(q, 4096, (char *)r.addr + 4096, 4096, (void *)2,
                 BLKIO_REQ_FUA);
    blkioq_flush(q, (void *)3, 0);
    if (blkioq_do_io(q, c, 0, 4, &t) > 3)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in = (struct fz){ data, size };
    status = 0;
    fake_dev_run("virtio-blk-vhost-vdpa", drv_check, drv_io);
    return 0;
}
