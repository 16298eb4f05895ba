/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: white-box test of the generic virtio-blk driver against a
 * fake in-process device that misbehaves on purpose: status never
 * written, I/O error and unsupported status, used lengths too large, used
 * ids out of range or not in flight, used idx running ahead, invalid
 * config values.  Each must turn into -EIO/-ENOTSUP completions or
 * connect errors, never a crash or a hang (run it under valgrind/ASan).
 * Also checks that requests are split to the device's seg_max, with and
 * without indirect descriptors, the status handshake every transport gets
 * from virtio.c (order of the status bits, transport features, a device
 * refusing FEATURES_OK), that a connect after a lost one works, that
 * stopping queues keeps the caller's error message, and, for a transport
 * whose device sees other addresses than ours (vfio-pci's IOVAs), that
 * every address handed to the device is translated and buffers outside
 * mapped regions are refused.
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "internal.h"
#include "virtio/virtio-blk.h"
#include "../common/test-util.h"

enum misbehave {
    DEV_OK, DEV_NO_STATUS, DEV_IOERR, DEV_UNSUPP, DEV_BAD_LEN, DEV_BAD_ID,
    DEV_DOUBLE, DEV_STALE, DEV_IDX_AHEAD, DEV_SILENT,
};

/* The fake device. */
static struct {
    enum misbehave mode;
    uint64_t features;
    uint8_t config[60];
    struct virtio_vq_info vq;
    uint16_t last_avail;
    uint16_t used_idx;
    unsigned max_segs_seen;
    unsigned requests;
    uint8_t status;
    uint8_t status_log[16];     /* every status written, in order */
    unsigned nstatus;
    uint64_t features_set;
    bool refuse_features_ok;
    bool lose_on_get_features; /* the connection drops during connect */
    bool remap;                 /* device addresses = ours + delta */
    uint64_t delta;
    struct blkio *b;
} dev;

/* Our pointer for an address the device was given. */
#define DEVP(a) ((void *)(uintptr_t)((uint64_t)(a) - dev.delta))

static int fake_get_status(void *t, uint8_t *status)
{
    (void)t;
    *status = dev.status;
    return 0;
}

static int fake_set_status(void *t, uint8_t status)
{
    (void)t;
    if (dev.nstatus < sizeof(dev.status_log))
        dev.status_log[dev.nstatus++] = status;
    if (dev.refuse_features_ok)
        status &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
    dev.status = status;
    return 0;
}

static int fake_get_features(void *t, uint64_t *f)
{
    (void)t;
    if (dev.lose_on_get_features) {
        virtio_blk_mark_dead(dev.b);
        return blkio_set_error(-ECONNRESET, "fake connection lost");
    }
    *f = dev.features;
    return 0;
}

static int fake_set_features(void *t, uint64_t f)
{
    (void)t;
    CHECK((f & ~dev.features) == 0);
    CHECK(!(dev.status & VIRTIO_CONFIG_S_FEATURES_OK));
    dev.features_set = f;
    return 0;
}

static int fake_read_config(void *t, void *buf, uint32_t len)
{
    (void)t;
    memcpy(buf, dev.config, len < sizeof(dev.config) ? len : sizeof(dev.config));
    return 0;
}

static int fake_max_queues(void *t) { (void)t; return 0; }
static uint64_t fake_max_mem_regions(void *t) { (void)t; return 8; }
static int fake_start(void *t, const struct blkio_mem_region *r,
                      unsigned nvqs, unsigned nirqs, uint64_t *addr)
{
    (void)t;
    *addr = (uint64_t)(uintptr_t)r->addr + dev.delta;
    CHECK(nvqs == 1 && nirqs == 1);
    return 0;
}

static int fake_setup_queue(void *t, const struct virtio_vq_info *info)
{
    (void)t;
    CHECK(!(dev.status & VIRTIO_CONFIG_S_DRIVER_OK));
    dev.vq = *info;
    dev.last_avail = 0;
    dev.used_idx = 0;
    return 0;
}

/* Like the real transports, stopping may talk to the device and fail. */
static void fake_stop_queue(void *t, unsigned index)
{
    (void)t; (void)index;
    blkio_set_error(-EIO, "fake stop_queue noise");
}
static int fake_hangup_fd(void *t) { (void)t; return -1; }
static void fake_destroy(void *t) { (void)t; }
static int fake_map(void *t, const struct blkio_mem_region *r, uint64_t *addr)
{
    (void)t;
    *addr = (uint64_t)(uintptr_t)r->addr + dev.delta;
    return 0;
}
static void fake_unmap(void *t, const struct blkio_mem_region *r)
{
    (void)t; (void)r;
}

static void used_push(struct vring_used *used, unsigned num, uint32_t id,
                      uint32_t len)
{
    used->ring[dev.used_idx % num].id = htole32(id);
    used->ring[dev.used_idx % num].len = htole32(len);
    dev.used_idx++;
}

/* Process everything available, misbehaving as told. */
static void fake_kick(void *t, unsigned index)
{
    struct vring_desc *desc = DEVP(dev.vq.desc_addr);
    struct vring_avail *avail = DEVP(dev.vq.avail_addr);
    struct vring_used *used = DEVP(dev.vq.used_addr);
    unsigned num = dev.vq.num;
    uint16_t aidx = le16toh(avail->idx);

    (void)t;
    CHECK(index == 0);
    while (dev.last_avail != aidx) {
        uint16_t head = le16toh(avail->ring[dev.last_avail % num]);
        struct vring_desc *tab = desc;
        unsigned i = head, n = 0, segs, limit = num;
        struct vring_desc *d[1100];
        uint32_t in = 0;
        uint8_t *status;
        struct virtio_blk_outhdr *hdr;

        dev.last_avail++;
        dev.requests++;
        if (le16toh(desc[head].flags) & VRING_DESC_F_INDIRECT) {
            tab = DEVP(le64toh(desc[head].addr));
            limit = le32toh(desc[head].len) / sizeof(*tab);
            i = 0;
        }
        for (;;) {
            CHECK(i < limit && n < 1100);
            d[n++] = &tab[i];
            if (!(le16toh(tab[i].flags) & VRING_DESC_F_NEXT))
                break;
            i = le16toh(tab[i].next);
        }
        CHECK(n >= 2);
        segs = n - 2;
        if (segs > dev.max_segs_seen)
            dev.max_segs_seen = segs;
        hdr = DEVP(le64toh(d[0]->addr));
        status = DEVP(le64toh(d[n - 1]->addr));
        for (unsigned k = 1; k + 1 < n; k++) {
            if (le16toh(d[k]->flags) & VRING_DESC_F_WRITE) {
                memset(DEVP(le64toh(d[k]->addr)), 0x5a,
                       le32toh(d[k]->len));
                in += le32toh(d[k]->len);
            }
        }
        /* The device honours seg_max: more is an I/O error. */
        {
            uint32_t seg_max = 0;
            memcpy(&seg_max, dev.config + 12, 4);
            seg_max = le32toh(seg_max);
            if (le32toh(hdr->type) != VIRTIO_BLK_T_FLUSH && segs > seg_max) {
                *status = VIRTIO_BLK_S_IOERR;
                used_push(used, num, head, in + 1);
                continue;
            }
        }
        switch (dev.mode) {
        case DEV_OK: *status = VIRTIO_BLK_S_OK; break;
        case DEV_IOERR: *status = VIRTIO_BLK_S_IOERR; break;
        case DEV_UNSUPP: *status = VIRTIO_BLK_S_UNSUPP; break;
        case DEV_NO_STATUS: break;
        case DEV_SILENT: continue;    /* never completes */
        default: *status = VIRTIO_BLK_S_OK; break;
        }
        switch (dev.mode) {
        case DEV_BAD_LEN: used_push(used, num, head, in + 1 + 4096); break;
        case DEV_BAD_ID: used_push(used, num, num + 7, in + 1); break;
        case DEV_STALE:     /* in range, but not a head in flight */
            used_push(used, num, (head + 1) % num, in + 1);
            break;
        case DEV_DOUBLE:
            used_push(used, num, head, in + 1);
            used_push(used, num, head, in + 1);
            break;
        default: used_push(used, num, head, in + 1); break;
        }
    }
    /* Event index: ask to be kicked for the next available entry. */
    {
        uint16_t ev = htole16(dev.last_avail);
        memcpy((uint8_t *)used + 4 + 8 * (size_t)num, &ev, sizeof(ev));
    }
    /* Publish used entries, then signal the call fd. */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    used->idx = htole16(dev.mode == DEV_IDX_AHEAD ? dev.used_idx + 100
                                                  : dev.used_idx);
    if (dev.vq.call_fd >= 0) {
        uint64_t one = 1;
        CHECK(write(dev.vq.call_fd, &one, 8) == 8);
    }
}

#define FAKE_OPS                                                             \
    .get_status = fake_get_status, .set_status = fake_set_status,            \
    .get_features = fake_get_features, .set_features = fake_set_features,    \
    .read_config = fake_read_config, .max_queues = fake_max_queues,          \
    .max_mem_regions = fake_max_mem_regions, .start = fake_start,            \
    .setup_queue = fake_setup_queue, .stop_queue = fake_stop_queue,          \
    .kick = fake_kick, .map_region = fake_map, .unmap_region = fake_unmap,   \
    .hangup_fd = fake_hangup_fd, .destroy = fake_destroy

static const struct virtio_transport_ops fake_ops = {
    .name = "fake",
    .transport_features = 1ull << VIRTIO_F_ORDER_PLATFORM,
    FAKE_OPS,
};

static bool fake_remaps(void *t)
{
    (void)t;
    return true;
}

/* The same device behind a transport that remaps addresses. */
static const struct virtio_transport_ops fake_remap_ops = {
    .name = "fake-remap",
    .remaps = fake_remaps,
    FAKE_OPS,
};

static void set_cfg32(size_t off, uint32_t v)
{
    v = htole32(v);
    memcpy(dev.config + off, &v, 4);
}

static void default_device(bool indirect)
{
    uint64_t cap = htole64(2048);

    memset(&dev, 0, sizeof(dev));
    dev.features = (1ull << VIRTIO_F_VERSION_1) |
                   (1ull << VIRTIO_BLK_F_SEG_MAX) |
                   (1ull << VIRTIO_BLK_F_BLK_SIZE) |
                   (1ull << VIRTIO_BLK_F_FLUSH) |
                   (1ull << VIRTIO_RING_F_EVENT_IDX);
    if (indirect)
        dev.features |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
    memcpy(dev.config, &cap, 8);
    set_cfg32(12, 4);       /* seg_max */
    set_cfg32(20, 512);     /* blk_size */
}

struct inst {
    struct blkio b;
    struct blkioq q;
};

static void inst_create(struct inst *in)
{
    memset(in, 0, sizeof(*in));
    in->b.num_queues = 1;
    in->b.fd = -1;
    dev.b = &in->b;
    CHECK(virtio_blk_create(&in->b, dev.remap ? &fake_remap_ops : &fake_ops,
                            &dev) == 0);
}

static int inst_connect_start(struct inst *in)
{
    int ret = virtio_blk_connect(&in->b);

    if (ret < 0) {
        virtio_blk_destroy(&in->b);
        return ret;
    }
    in->b.queue_size = 8;
    CHECK(virtio_blk_start(&in->b) == 0);
    in->q.b = &in->b;
    in->q.completion_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    in->q.cring = calloc(256, sizeof(*in->q.cring));
    in->q.cring_mask = 255;
    CHECK(virtio_blk_queue_init(&in->q) == 0);
    return 0;
}

static int open_inst(struct inst *in)
{
    inst_create(in);
    return inst_connect_start(in);
}

static void close_inst(struct inst *in)
{
    virtio_blk_queue_destroy(&in->q);
    close(in->q.completion_fd);
    free(in->q.cring);
    virtio_blk_destroy(&in->b);
}

/* Queue a read of iovcnt pieces and return its completion result. */
static int one_read(struct inst *in, uint8_t *buf, int iovcnt)
{
    struct iovec iov[64];
    struct blkio_request req = {
        .op = BLKIO_OP_READ, .start = 0, .iov = iov, .iovcnt = iovcnt,
    };
    struct timespec dl;
    uint32_t before = in->q.cring_tail;
    int ret;

    for (int i = 0; i < iovcnt; i++)
        iov[i] = (struct iovec){ buf + i * 512, 512 };
    req.len = (uint64_t)iovcnt * 512;
    ret = virtio_blk_queue_request(&in->q, &req);
    if (ret < 0)
        return ret;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += 2;
    ret = virtio_blk_process(&in->q, (int)blkioq_ring_count(&in->q) + 1,
                             &dl, NULL);
    if (ret < 0)
        return ret;
    CHECK(in->q.cring_tail == before + 1);
    ret = in->q.cring[before & in->q.cring_mask].ret;
    in->q.cring_head = in->q.cring_tail;
    return ret;
}

static void scenario(enum misbehave mode, int expect, bool broken_after,
                     bool indirect)
{
    static uint8_t buf[64 * 512];
    struct inst in;

    default_device(indirect);
    CHECK(open_inst(&in) == 0);
    /* A good request first: the ring works. */
    memset(buf, 0, sizeof(buf));
    CHECK(one_read(&in, buf, 1) == 0);
    CHECK(buf[0] == 0x5a);
    dev.mode = mode;
    {
        int r = one_read(&in, buf, 1);
        if (r != expect)
            T_FAIL("mode %d: got %d (%s), expected %d", mode, r, strerror(-r),
                   expect);
    }
    dev.mode = DEV_OK;
    {
        int r = one_read(&in, buf, 1);
        if (broken_after ? r == 0 : r != 0)
            T_FAIL("mode %d: request after the misbehaviour returned %d",
                   mode, r);
    }
    close_inst(&in);
}

/* The events the completion fd holds (0 when it is not readable). */
static uint64_t cfd_take(int fd)
{
    uint64_t v;

    return read(fd, &v, sizeof(v)) == (ssize_t)sizeof(v) ? v : 0;
}

/*
 * An event loop on a queue that broke: the failed request comes back
 * once, and then empty calls must leave the completion fd quiet, or a
 * loop that waits on it spins for ever.  Broken by a used idx past what
 * is in flight (never reaped), or (dead) by a device that published a
 * completion and hung up before it was reaped.
 */
static void quiet_after_break(bool dead)
{
    static uint8_t buf[512];
    struct iovec iov = { buf, 512 };
    struct blkio_request req = {
        .op = BLKIO_OP_READ, .iov = &iov, .iovcnt = 1, .len = 512,
    };
    struct inst in;
    unsigned failed = 0;

    default_device(true);
    CHECK(open_inst(&in) == 0);
    in.q.completion_fd_enabled = true;
    CHECK(!virtio_blk_set_completion_fd_enabled(&in.q, true));
    dev.mode = dead ? DEV_SILENT : DEV_IDX_AHEAD;
    CHECK(virtio_blk_queue_request(&in.q, &req) == 0);
    CHECK(virtio_blk_process(&in.q, 0, NULL, NULL) == 0);
    if (dead) {
        /* Completed behind our back, then gone. */
        struct vring_used *used = DEVP(dev.vq.used_addr);
        struct vring_avail *avail = DEVP(dev.vq.avail_addr);

        used_push(used, dev.vq.num, le16toh(avail->ring[0]), 513);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        used->idx = htole16(dev.used_idx);
        virtio_blk_mark_dead(&in.b);
        CHECK(virtio_blk_process(&in.q, 0, NULL, NULL) == 0);
    }
    failed += blkioq_ring_count(&in.q);
    in.q.cring_head = in.q.cring_tail;
    cfd_take(in.q.completion_fd);
    for (int i = 0; i < 5; i++) {
        CHECK(virtio_blk_process(&in.q, 0, NULL, NULL) == 0);
        failed += blkioq_ring_count(&in.q);
        in.q.cring_head = in.q.cring_tail;
        if (cfd_take(in.q.completion_fd))
            T_FAIL("%s: empty call %d signalled the completion fd",
                   dead ? "dead device" : "broken ring", i);
    }
    CHECK(failed == 1);
    CHECK(!virtio_blk_set_completion_fd_enabled(&in.q, true));
    dev.mode = DEV_OK;
    close_inst(&in);
}

#define ST_A VIRTIO_CONFIG_S_ACKNOWLEDGE
#define ST_D VIRTIO_CONFIG_S_DRIVER
#define ST_F VIRTIO_CONFIG_S_FEATURES_OK
#define ST_OK VIRTIO_CONFIG_S_DRIVER_OK

/* The handshake virtio.c runs for every transport, and its teardown. */
static void handshake(void)
{
    static const uint8_t want[] = {
        0, ST_A, ST_A | ST_D, ST_A | ST_D | ST_F, ST_A | ST_D | ST_F | ST_OK,
    };
    static uint8_t buf[512];
    struct inst in;

    default_device(true);
    dev.features |= (1ull << VIRTIO_F_ORDER_PLATFORM) |
                    (1ull << VIRTIO_F_ACCESS_PLATFORM);
    CHECK(open_inst(&in) == 0);
    CHECK(dev.nstatus == sizeof(want));
    CHECK(memcmp(dev.status_log, want, sizeof(want)) == 0);
    /* Transport features are taken, others the transport lacks are not. */
    CHECK(dev.features_set & (1ull << VIRTIO_F_ORDER_PLATFORM));
    CHECK(!(dev.features_set & (1ull << VIRTIO_F_ACCESS_PLATFORM)));
    /* Stopping the last queue resets the device and keeps the message a
     * failed call left for the caller. */
    blkio_set_error(-EINVAL, "an earlier failure");
    virtio_blk_queue_destroy(&in.q);
    CHECK(dev.status == 0);
    if (strcmp(blkio_get_error_msg(), "an earlier failure") != 0)
        T_FAIL("stopping a queue replaced the error message with \"%s\"",
               blkio_get_error_msg());
    close_inst(&in);

    /* A device that does not keep FEATURES_OK is refused. */
    default_device(true);
    dev.refuse_features_ok = true;
    CHECK(open_inst(&in) == -EIO);
    CHECK(strstr(blkio_get_error_msg(), "FEATURES_OK") != NULL);

    /* The connection drops during a connect; the next connect works and
     * so do its requests. */
    default_device(true);
    inst_create(&in);
    dev.lose_on_get_features = true;
    CHECK(virtio_blk_connect(&in.b) == -ECONNRESET);
    dev.lose_on_get_features = false;
    CHECK(inst_connect_start(&in) == 0);
    memset(buf, 0, sizeof(buf));
    CHECK(one_read(&in, buf, 1) == 0);
    CHECK(buf[0] == 0x5a);
    close_inst(&in);
}

/* Device addresses are not ours: rings, headers and buffers are all
 * translated (the fake device would touch wild memory otherwise), and a
 * buffer outside the mapped regions never reaches it. */
static void remap(void)
{
    static uint8_t buf[2 * 4096] __attribute__((aligned(4096)));
    struct blkio_mem_region r = { .addr = buf, .len = 4096, .fd = -1 };
    struct inst in;

    for (int ind = 0; ind < 2; ind++) {
        default_device(ind);
        dev.remap = true;
        dev.delta = 1ull << 44;
        CHECK(open_inst(&in) == 0);
        CHECK(virtio_blk_map_mem_region(&in.b, &r) == 0);
        memset(buf, 0, sizeof(buf));
        CHECK(one_read(&in, buf, 3) == 0);
        CHECK(buf[0] == 0x5a && buf[3 * 512 - 1] == 0x5a);
        CHECK(one_read(&in, buf + 4096, 1) == -EFAULT);
        CHECK(buf[4096] == 0);
        virtio_blk_unmap_mem_region(&in.b, &r);
        CHECK(one_read(&in, buf, 1) == -EFAULT);
        CHECK(dev.requests == 1);
        close_inst(&in);
    }
}

int main(void)
{
    struct inst in;
    static uint8_t buf[64 * 512];

    for (int ind = 0; ind < 2; ind++) {
        scenario(DEV_OK, 0, false, ind);
        scenario(DEV_NO_STATUS, -EIO, false, ind);
        scenario(DEV_IOERR, -EIO, false, ind);
        scenario(DEV_UNSUPP, -ENOTSUP, false, ind);
        scenario(DEV_BAD_LEN, -EIO, false, ind);
        scenario(DEV_BAD_ID, -EIO, true, ind);
        scenario(DEV_IDX_AHEAD, -EIO, true, ind);
        /* More used entries than requests in flight. */
        scenario(DEV_DOUBLE, -EIO, true, ind);
        scenario(DEV_STALE, -EIO, true, ind);

        /* Splitting to seg_max (4): 37 segments, 8 ring entries. */
        default_device(ind);
        CHECK(open_inst(&in) == 0);
        CHECK(one_read(&in, buf, 37) == 0);
        CHECK(dev.max_segs_seen <= 4 && dev.max_segs_seen > 0);
        CHECK(dev.requests == 10);
        CHECK(buf[37 * 512 - 1] == 0x5a);

        /* A device that never answers: the deadline, not a hang. */
        dev.mode = DEV_SILENT;
        {
            struct iovec iov = { buf, 512 };
            struct blkio_request req = {
                .op = BLKIO_OP_READ, .iov = &iov, .iovcnt = 1, .len = 512,
            };
            struct timespec dl;

            CHECK(virtio_blk_queue_request(&in.q, &req) == 0);
            clock_gettime(CLOCK_MONOTONIC, &dl);
            dl.tv_nsec += 100 * 1000 * 1000;
            if (dl.tv_nsec >= 1000000000) {
                dl.tv_nsec -= 1000000000;
                dl.tv_sec++;
            }
            CHECK(virtio_blk_process(&in.q, 1, &dl, NULL) == -ETIME);
        }
        close_inst(&in);
    }

    /* Config values that cannot be right. */
    default_device(true);
    set_cfg32(20, 100);                 /* blk_size not a power of two */
    CHECK(open_inst(&in) == -EIO);
    default_device(true);
    {
        uint64_t cap = htole64(UINT64_MAX / 256);
        memcpy(dev.config, &cap, 8);
    }
    CHECK(open_inst(&in) == -EIO);
    default_device(true);
    dev.features |= 1ull << VIRTIO_BLK_F_MQ;   /* num_queues left 0 */
    CHECK(open_inst(&in) == -EIO);
    default_device(true);
    dev.features &= ~(1ull << VIRTIO_F_VERSION_1);
    CHECK(open_inst(&in) == -ENOTSUP);

    quiet_after_break(false);
    quiet_after_break(true);
    handshake();
    remap();
    printf("untrusted device behaviour handled\n");
    return 0;
}
