/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: virtio-blk-vhost-vdpa on a device whose IOVA range does not
 * cover user addresses, as a vDPA device behind a platform IOMMU with a
 * 39-bit address width reports (Debian's kernel has no such device:
 * VDUSE takes any address).  The device is played here, on the host: its
 * ioctls through tests/fuzz/fake-ioctl.c, its IOTLB messages by write()
 * below, and its virtqueue by serve(), which reaches our memory only
 * through the IOTLB it was given.  Every IOTLB update must lie inside the
 * range, every address in the rings and descriptors must be mapped,
 * writes must read back, and unmapping and destroying must invalidate
 * every mapping.  The same runs with a range covering every address,
 * where IOVAs are the virtual addresses.  Before, start failed with
 * -ERANGE on the 39-bit device.
 */
#include <endian.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/vhost.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_ring.h>

#include "blkio.h"
#include "../common/test-util.h"
#include "../fuzz/fake-ioctl.h"

#define DISK_SIZE   (1u << 20)
#define RING_NUM    256u
#define MAX_MAPS    64

#define DEV_FEATURES                                                       \
    ((1ull << VIRTIO_F_VERSION_1) | (1ull << VIRTIO_F_ACCESS_PLATFORM) |   \
     (1ull << VIRTIO_RING_F_INDIRECT_DESC) |                               \
     (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |    \
     (1ull << VIRTIO_BLK_F_FLUSH))

struct map {
    uint64_t iova, size, uaddr;
};

/* The device's state. */
static struct {
    uint64_t first, last;       /* the IOVA range it reports */
    uint8_t status;
    struct map maps[MAX_MAPS];
    unsigned nmaps;
    unsigned updates;           /* IOTLB updates seen */
    bool identity;              /* every update had iova == uaddr */
    uint64_t desc, avail, used; /* virtqueue 0's IOVAs */
    int call_fd;
    uint16_t last_avail;
    uint8_t disk[DISK_SIZE];
} dev;

/* The device's view of [iova, iova + len): our memory, or a failed test. */
static void *dev_ptr(uint64_t iova, uint64_t len)
{
    for (unsigned i = 0; i < dev.nmaps; i++) {
        const struct map *m = &dev.maps[i];

        if (iova >= m->iova && len <= m->size &&
            iova - m->iova <= m->size - len)
            return (void *)(uintptr_t)(m->uaddr + (iova - m->iova));
    }
    T_FAIL("device got unmapped IOVA 0x%llx (%llu bytes)",
           (unsigned long long)iova, (unsigned long long)len);
}

static void iotlb_msg(const struct vhost_msg_v2 *msg)
{
    const struct vhost_iotlb_msg *t = &msg->iotlb;

    CHECK(msg->type == VHOST_IOTLB_MSG_V2);
    if (t->type == VHOST_IOTLB_UPDATE) {
        if (t->iova < dev.first || t->size == 0 ||
            t->size - 1 > dev.last - t->iova)
            T_FAIL("IOTLB update 0x%llx (%llu bytes) outside the range "
                   "0x%llx-0x%llx", (unsigned long long)t->iova,
                   (unsigned long long)t->size,
                   (unsigned long long)dev.first,
                   (unsigned long long)dev.last);
        CHECK(dev.nmaps < MAX_MAPS);
        dev.maps[dev.nmaps++] = (struct map){ t->iova, t->size, t->uaddr };
        dev.updates++;
        dev.identity &= t->iova == t->uaddr;
    } else if (t->type == VHOST_IOTLB_INVALIDATE) {
        for (unsigned i = 0; i < dev.nmaps; i++) {
            if (dev.maps[i].iova == t->iova && dev.maps[i].size == t->size) {
                dev.maps[i] = dev.maps[--dev.nmaps];
                return;
            }
        }
        T_FAIL("IOTLB invalidation of unmapped IOVA 0x%llx",
               (unsigned long long)t->iova);
    }
}

/* The library's IOTLB messages go to the fake device; the rest (kicks,
 * completion fds, output) to the kernel. */
ssize_t write(int fd, const void *buf, size_t n)
{
    if (fake_is_dev(fd)) {
        CHECK(n == sizeof(struct vhost_msg_v2));
        iotlb_msg(buf);
        return (ssize_t)n;
    }
    return syscall(SYS_write, fd, buf, n);
}

static void dev_config(struct vhost_vdpa_config *c)
{
    struct virtio_blk_config cfg = {
        .capacity = htole64(DISK_SIZE / 512),
        .seg_max = htole32(64),
        .blk_size = htole32(512),
    };

    memset(c->buf, 0, c->len);
    memcpy(c->buf, &cfg, c->len < sizeof(cfg) ? c->len : sizeof(cfg));
}

int fake_dev_ioctl(unsigned long req, void *arg)
{
    switch (req) {
    case VHOST_VDPA_GET_DEVICE_ID: *(uint32_t *)arg = VIRTIO_ID_BLOCK; break;
    case VHOST_GET_BACKEND_FEATURES:
        *(uint64_t *)arg = (1ull << VHOST_BACKEND_F_IOTLB_MSG_V2) |
                           (1ull << VHOST_BACKEND_F_IOTLB_BATCH);
        break;
    case VHOST_VDPA_GET_IOVA_RANGE:
        ((struct vhost_vdpa_iova_range *)arg)->first = dev.first;
        ((struct vhost_vdpa_iova_range *)arg)->last = dev.last;
        break;
    case VHOST_VDPA_GET_CONFIG_SIZE:
        *(uint32_t *)arg = sizeof(struct virtio_blk_config);
        break;
    case VHOST_VDPA_GET_VQS_COUNT: *(uint32_t *)arg = 1; break;
    case VHOST_VDPA_GET_VRING_NUM: *(uint16_t *)arg = RING_NUM; break;
    case VHOST_GET_FEATURES: *(uint64_t *)arg = DEV_FEATURES; break;
    case VHOST_VDPA_GET_STATUS: *(uint8_t *)arg = dev.status; break;
    case VHOST_VDPA_SET_STATUS: dev.status = *(uint8_t *)arg; break;
    case VHOST_VDPA_GET_CONFIG: dev_config(arg); break;
    case VHOST_SET_VRING_ADDR: {
        const struct vhost_vring_addr *a = arg;

        dev.desc = a->desc_user_addr;
        dev.avail = a->avail_user_addr;
        dev.used = a->used_user_addr;
        dev.last_avail = 0;
        break;
    }
    case VHOST_SET_VRING_CALL:
        dev.call_fd = ((struct vhost_vring_file *)arg)->fd;
        break;
    case VHOST_GET_VRING_BASE:
        ((struct vhost_vring_state *)arg)->num = 0;
        break;
    default:                    /* SET_OWNER, other SET_*: accepted */
        break;
    }
    return 0;
}

/* The descriptors of one request, indirect tables followed. */
static unsigned chain(uint16_t head, struct vring_desc *out, unsigned max)
{
    struct vring_desc *table = dev_ptr(dev.desc, RING_NUM * sizeof(*table));
    unsigned n = 0, limit = RING_NUM;
    uint16_t i = head;

    if (le16toh(table[head].flags) & VRING_DESC_F_INDIRECT) {
        uint32_t len = le32toh(table[head].len);

        CHECK(len % sizeof(*table) == 0 && len > 0);
        table = dev_ptr(le64toh(table[head].addr), len);
        limit = len / sizeof(*table);
        i = 0;
    }
    for (;;) {
        CHECK(i < limit && n < max);
        out[n++] = table[i];
        if (!(le16toh(table[i].flags) & VRING_DESC_F_NEXT))
            return n;
        i = le16toh(table[i].next);
    }
}

/* One virtio-blk request: header, data, status byte. */
static uint32_t handle(const struct vring_desc *d, unsigned n)
{
    const struct virtio_blk_outhdr *h;
    uint64_t off;
    uint32_t written = 1;
    uint8_t *status;

    CHECK(n >= 2 && le32toh(d[0].len) == sizeof(*h));
    h = dev_ptr(le64toh(d[0].addr), sizeof(*h));
    status = dev_ptr(le64toh(d[n - 1].addr), 1);
    off = le64toh(h->sector) * 512;
    *status = VIRTIO_BLK_S_OK;
    for (unsigned i = 1; i + 1 < n; i++) {
        uint32_t len = le32toh(d[i].len);
        void *p = dev_ptr(le64toh(d[i].addr), len);

        CHECK(off <= DISK_SIZE && len <= DISK_SIZE - off);
        if (le32toh(h->type) == VIRTIO_BLK_T_IN) {
            memcpy(p, dev.disk + off, len);
            written += len;
        } else if (le32toh(h->type) == VIRTIO_BLK_T_OUT) {
            memcpy(dev.disk + off, p, len);
        } else {
            *status = VIRTIO_BLK_S_UNSUPP;
        }
        off += len;
    }
    return written;
}

/* Complete everything the driver made available, then signal. */
static unsigned serve(void)
{
    struct vring_avail *avail =
        dev_ptr(dev.avail, sizeof(*avail) + RING_NUM * sizeof(uint16_t));
    struct vring_used *used =
        dev_ptr(dev.used, sizeof(*used) + RING_NUM * sizeof(used->ring[0]));
    uint16_t end = le16toh(__atomic_load_n(&avail->idx, __ATOMIC_ACQUIRE));
    uint16_t uidx = le16toh(used->idx);
    unsigned done = 0;
    uint64_t one = 1;

    for (; dev.last_avail != end; dev.last_avail++, done++) {
        uint16_t head = le16toh(avail->ring[dev.last_avail % RING_NUM]);
        struct vring_desc d[72];
        unsigned n = chain(head, d, 72);

        used->ring[uidx % RING_NUM].id = htole32(head);
        used->ring[uidx % RING_NUM].len = htole32(handle(d, n));
        uidx++;
    }
    __atomic_store_n(&used->idx, htole16(uidx), __ATOMIC_RELEASE);
    if (done)
        CHECK(syscall(SYS_write, dev.call_fd, &one, sizeof(one)) == 8);
    return done;
}

/* Submit what is queued, let the device serve it, reap one completion. */
static int run_one(struct blkioq *q)
{
    struct blkio_completion c;
    struct timespec t = { 5, 0 };

    CHECK(blkioq_do_io(q, NULL, 0, 0, NULL) == 0);
    CHECK(serve() == 1);
    CHECK(blkioq_do_io(q, &c, 1, 1, &t) == 1);
    return c.ret;
}

static void run(uint64_t first, uint64_t last, bool want_identity)
{
    struct blkio_mem_region r;
    struct blkio *b;
    struct blkioq *q;
    struct iovec iov[2];
    uint8_t *buf;

    memset(&dev, 0, sizeof(dev));
    dev.first = first;
    dev.last = last;
    dev.identity = true;
    dev.call_fd = -1;

    CHECK_RET(blkio_create("virtio-blk-vhost-vdpa", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", FAKE_DEV_PATH), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(blkio_set_int(b, "num-queues", 1), 0);
    if (blkio_start(b) < 0)
        T_FAIL("start on IOVA range 0x%llx-0x%llx: %s",
               (unsigned long long)first, (unsigned long long)last,
               blkio_get_error_msg());
    CHECK(dev.nmaps == 1);              /* the rings */
    CHECK_RET(blkio_alloc_mem_region(b, &r, 65536), 0);
    CHECK_RET(blkio_map_mem_region(b, &r), 0);
    CHECK(dev.nmaps == 2);
    CHECK(dev.identity == want_identity);
    q = blkio_get_queue(b, 0);
    CHECK(q != NULL);

    buf = r.addr;
    for (unsigned i = 0; i < 8192; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    blkioq_write(q, 4096, buf, 8192, NULL, 0);
    CHECK_RET(run_one(q), 0);
    CHECK(memcmp(dev.disk + 4096, buf, 8192) == 0);

    /* Read back in two pieces, into the other half of the region. */
    iov[0] = (struct iovec){ buf + 32768, 512 };
    iov[1] = (struct iovec){ buf + 40960, 8192 - 512 };
    blkioq_readv(q, 4096, iov, 2, NULL, 0);
    CHECK_RET(run_one(q), 0);
    CHECK(memcmp(buf + 32768, buf, 512) == 0);
    CHECK(memcmp(buf + 40960, buf + 512, 8192 - 512) == 0);

    blkioq_flush(q, NULL, 0);
    CHECK_RET(run_one(q), 0);

    blkio_unmap_mem_region(b, &r);
    CHECK(dev.nmaps == 1);
    blkio_free_mem_region(b, &r);
    blkio_destroy(&b);
    CHECK(dev.nmaps == 0);              /* the rings went too */
    CHECK(dev.identity == want_identity);
    printf("IOVA range 0x%llx-0x%llx: %u mappings, %s, data read back\n",
           (unsigned long long)first, (unsigned long long)last, dev.updates,
           want_identity ? "IOVA = virtual address" : "IOVAs in the range");
}

int main(void)
{
    /* A platform IOMMU at 39 bits, with the first MiB reserved. */
    run(1u << 20, (1ull << 39) - 1, false);
    /* VDUSE-like: every address. */
    run(0, UINT64_MAX, true);
    return 0;
}
