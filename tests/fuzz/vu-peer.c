/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * vu-peer.c - a vhost-user-blk backend played by the fuzzer (see
 * vu-peer.h).  Protocol facts: QEMU docs/interop/vhost-user.rst, virtio
 * 1.2 section 2.7 (split virtqueues) and 5.2 (block device).
 */
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "vu-peer.h"

enum {
    VU_GET_FEATURES = 1, VU_SET_FEATURES = 2, VU_SET_OWNER = 3,
    VU_SET_MEM_TABLE = 5, VU_SET_VRING_NUM = 8, VU_SET_VRING_ADDR = 9,
    VU_SET_VRING_BASE = 10, VU_GET_VRING_BASE = 11, VU_SET_VRING_KICK = 12,
    VU_SET_VRING_CALL = 13, VU_GET_PROTOCOL_FEATURES = 15,
    VU_SET_PROTOCOL_FEATURES = 16, VU_GET_QUEUE_NUM = 17,
    VU_SET_VRING_ENABLE = 18, VU_GET_CONFIG = 24, VU_GET_MAX_MEM_SLOTS = 36,
    VU_ADD_MEM_REG = 37, VU_REM_MEM_REG = 38,
};

#define VU_VERSION      0x1u
#define VU_REPLY        (1u << 2)
#define VU_NEED_REPLY   (1u << 3)
#define VU_VRING_NOFD   (1ull << 8)
#define VU_MAX_FDS      8
#define VU_MAX_MSG      4096

#define PEER_MAX_REGIONS 16
#define PEER_MAX_VQS     8
#define PEER_MAX_SEGS    1024

/* A correct backend's offer: what qemu-storage-daemon offers, roughly. */
#define PEER_FEATURES                                                     \
    ((1ull << VIRTIO_F_VERSION_1) | (1ull << 30) |                        \
     (1ull << VIRTIO_RING_F_INDIRECT_DESC) |                              \
     (1ull << VIRTIO_RING_F_EVENT_IDX) | (1ull << VIRTIO_BLK_F_SIZE_MAX) | \
     (1ull << VIRTIO_BLK_F_SEG_MAX) | (1ull << VIRTIO_BLK_F_BLK_SIZE) |    \
     (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_TOPOLOGY) |      \
     (1ull << VIRTIO_BLK_F_MQ) | (1ull << VIRTIO_BLK_F_DISCARD) |          \
     (1ull << VIRTIO_BLK_F_WRITE_ZEROES))
/* MQ, REPLY_ACK, CONFIG, CONFIGURE_MEM_SLOTS */
#define PEER_PROTOCOL ((1ull << 0) | (1ull << 3) | (1ull << 9) | (1ull << 15))

struct vu_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
} __attribute__((packed));

struct vu_region {
    uint64_t gpa, size, uaddr, offset;
};

struct peer_region {
    uint64_t gpa, size;
    uint8_t *map;               /* mmap of offset + size bytes */
    size_t maplen;
    uint64_t offset;
};

struct peer_vq {
    unsigned num;
    uint64_t desc, avail, used;
    bool addr_set, enabled;
    int kick, call;
    uint16_t last_avail, used_idx;
};

struct vu_peer {
    pthread_t thread;
    int quit;                   /* eventfd: the driver side is done */
    int sock;
    struct fz in;
    struct vu_peer_opts opts;
    /*
     * The peer broke the protocol in a way that lets the front-end run
     * ahead of it: a reply out of turn (taken for the answer to a later
     * request, a GET_FEATURES barrier after a memory table update, say),
     * or a used ring the front-end cannot trust any more (it may give up
     * on the queue, fail its requests and release their memory while
     * buffers are still available to the peer).  Memory the peer cannot
     * find is then its own fault, not the front-end's.
     */
    bool desynced;
    struct peer_region reg[PEER_MAX_REGIONS];
    struct peer_vq vq[PEER_MAX_VQS];
};

static int peer_listen_fd = -1;
static char peer_dir[64], peer_sock_path[128];

static void peer_atexit(void)
{
    if (peer_sock_path[0])
        unlink(peer_sock_path);
    if (peer_dir[0])
        rmdir(peer_dir);
}

int vu_peer_listen(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    const char *tmp = getenv("TMPDIR");

    if (peer_listen_fd >= 0)
        return 0;
    snprintf(peer_dir, sizeof(peer_dir), "%s/fuzz-vu.XXXXXX",
             tmp && strlen(tmp) < 32 ? tmp : "/tmp");
    if (!mkdtemp(peer_dir))
        return -1;
    snprintf(peer_sock_path, sizeof(peer_sock_path), "%s/s", peer_dir);
    atexit(peer_atexit);
    strcpy(sa.sun_path, peer_sock_path);
    peer_listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (peer_listen_fd < 0 ||
        bind(peer_listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        listen(peer_listen_fd, 4) < 0)
        return -1;
    return 0;
}

const char *vu_peer_path(void)
{
    return peer_sock_path;
}

/* The front-end (the library under test) broke the protocol. */
static void __attribute__((noreturn)) peer_bug(const char *what)
{
    fprintf(stderr, "vu-peer: the front-end %s\n", what);
    abort();
}

/* ---- memory ---- */

static void peer_unmap_all(struct vu_peer *p)
{
    for (unsigned i = 0; i < PEER_MAX_REGIONS; i++) {
        if (p->reg[i].map)
            munmap(p->reg[i].map, p->reg[i].maplen);
        p->reg[i].map = NULL;
    }
}

static bool peer_map(struct vu_peer *p, const struct vu_region *r, int fd)
{
    for (unsigned i = 0; i < PEER_MAX_REGIONS; i++) {
        struct peer_region *pr = &p->reg[i];
        void *m;

        if (pr->map)
            continue;
        if (r->size == 0 || r->size > (1ull << 32) ||
            r->offset > (1ull << 32))
            peer_bug("sent a memory region of absurd size or offset");
        m = mmap(NULL, r->offset + r->size, PROT_READ | PROT_WRITE,
                 MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
            return false;
        *pr = (struct peer_region){ .gpa = r->gpa, .size = r->size,
                                    .map = m, .maplen = r->offset + r->size,
                                    .offset = r->offset };
        return true;
    }
    return false;
}

static void peer_unmap(struct vu_peer *p, const struct vu_region *r)
{
    for (unsigned i = 0; i < PEER_MAX_REGIONS; i++) {
        struct peer_region *pr = &p->reg[i];

        if (pr->map && pr->gpa == r->gpa && pr->size == r->size) {
            munmap(pr->map, pr->maplen);
            pr->map = NULL;
            return;
        }
    }
}

/* The peer's view of front-end address [addr, addr+len), or NULL. */
static void *peer_ptr(struct vu_peer *p, uint64_t addr, uint64_t len)
{
    for (unsigned i = 0; i < PEER_MAX_REGIONS; i++) {
        struct peer_region *pr = &p->reg[i];

        if (pr->map && addr >= pr->gpa && len <= pr->size &&
            addr - pr->gpa <= pr->size - len)
            return pr->map + pr->offset + (addr - pr->gpa);
    }
    return NULL;
}

/* ---- messages ---- */

static void peer_send(struct vu_peer *p, const void *buf, size_t len)
{
    if (p->sock >= 0 && send(p->sock, buf, len, MSG_NOSIGNAL) < 0)
        return;         /* the front-end went away: it will notice */
}

static void peer_close(struct vu_peer *p)
{
    if (p->sock >= 0)
        close(p->sock);
    p->sock = -1;
}

/*
 * Reply to `req` with a payload, bent by the fuzzer when asked: header
 * fields changed, the payload cut short (then hang up), or an extra
 * unsolicited reply after it.
 */
static void peer_reply(struct vu_peer *p, uint32_t req, uint8_t act,
                       const void *payload, uint32_t size)
{
    struct {
        struct vu_hdr h;
        uint8_t payload[VU_MAX_MSG];
    } m = { .h = { req, VU_VERSION | VU_REPLY, size } };

    memcpy(m.payload, payload, size);
    if (act == 26 || act == 30)
        p->desynced = true;
    switch (act) {
    case 26:            /* a header field is off */
        switch (fz_u8(&p->in) % 3) {
        case 0: m.h.request ^= fz_u32(&p->in) | 1; break;
        case 1: m.h.flags ^= fz_u32(&p->in) | 1; break;
        default: m.h.size ^= fz_u32(&p->in) | 1; break;
        }
        break;
    case 31:            /* cut short, then gone */
        peer_send(p, &m, sizeof(m.h) + fz_u8(&p->in) % (size + 1) / 2);
        peer_close(p);
        return;
    }
    peer_send(p, &m, sizeof(m.h) + size);
    if (act == 30) {    /* an answer to a question never asked */
        struct vu_hdr extra = { fz_u8(&p->in), VU_VERSION | VU_REPLY, 8 };
        uint64_t v = fz_u64(&p->in);

        peer_send(p, &extra, sizeof(extra));
        peer_send(p, &v, sizeof(v));
    }
}

static void peer_reply_u64(struct vu_peer *p, uint32_t req, uint8_t act,
                           uint64_t v)
{
    peer_reply(p, req, act, &v, sizeof(v));
}

/* The REPLY_ACK answer, when the front-end asked for one. */
static void peer_ack(struct vu_peer *p, const struct vu_hdr *h, uint8_t act,
                     bool ok)
{
    uint64_t status = ok ? 0 : 1;

    if (act == 27)
        status = fz_u64(&p->in) | 1;
    if (h->flags & VU_NEED_REPLY)
        peer_reply_u64(p, h->request, act, status);
}

static void peer_config(struct vu_peer *p, uint8_t act, const uint8_t *pl,
                        uint32_t size)
{
    struct { uint32_t offset, size, flags; uint8_t cfg[256]; } c;
    struct virtio_blk_config cfg = {
        .capacity = htole64(2048),
        .size_max = htole32(65536),
        .seg_max = htole32(32),
        .blk_size = htole32(512),
        .min_io_size = htole16(1),
        .num_queues = htole16(2),
        .max_discard_sectors = htole32(2048),
        .max_discard_seg = htole32(1),
        .discard_sector_alignment = htole32(1),
        .max_write_zeroes_sectors = htole32(2048),
        .max_write_zeroes_seg = htole32(1),
        .write_zeroes_may_unmap = 1,
    };

    if (size < 12 || size > sizeof(c))
        peer_bug("sent a GET_CONFIG of a bad size");
    memcpy(&c, pl, size);
    if (c.size != size - 12)
        peer_bug("sent a GET_CONFIG whose size field disagrees");
    if (p->opts.bend_config)
        fz_scribble(&p->in, &cfg, sizeof(cfg), 8);
    memset(c.cfg, 0, sizeof(c.cfg));
    memcpy(c.cfg, &cfg, c.size < sizeof(cfg) ? c.size : sizeof(cfg));
    if (p->opts.bend_config && fz_u8(&p->in) == 0xc5) {
        c.offset ^= fz_u32(&p->in);
        c.size ^= fz_u32(&p->in);
    }
    peer_reply(p, VU_GET_CONFIG, act, &c, size);
}

static void peer_mem_table(struct vu_peer *p, const struct vu_hdr *h,
                           uint8_t act, const uint8_t *pl, int *fds,
                           unsigned nfds)
{
    uint32_t n;
    bool ok = true;

    memcpy(&n, pl, sizeof(n));
    if (h->size < 8 || n > VU_MAX_FDS || h->size != 8 + n * 32 || n != nfds)
        peer_bug("sent a malformed SET_MEM_TABLE");
    peer_unmap_all(p);
    for (uint32_t i = 0; i < n; i++) {
        struct vu_region r;

        memcpy(&r, pl + 8 + i * 32, sizeof(r));
        if (r.gpa != r.uaddr)
            peer_bug("sent a region whose addresses differ");
        ok = peer_map(p, &r, fds[i]) && ok;
    }
    peer_ack(p, h, act, ok);
}

static struct peer_vq *peer_vq(struct vu_peer *p, uint32_t index)
{
    return index < PEER_MAX_VQS ? &p->vq[index] : NULL;
}

/* A vring fd message: u64 index | NOFD flag, maybe with one fd. */
static void peer_vring_fd(struct vu_peer *p, const struct vu_hdr *h,
                          uint8_t act, const uint8_t *pl, int *fds,
                          unsigned nfds)
{
    uint64_t v;
    struct peer_vq *vq;
    int *slot;

    memcpy(&v, pl, sizeof(v));
    vq = peer_vq(p, (uint32_t)(v & 0xff));
    if (!vq || ((v & VU_VRING_NOFD) ? nfds != 0 : nfds != 1)) {
        peer_ack(p, h, act, false);
        return;
    }
    slot = h->request == VU_SET_VRING_KICK ? &vq->kick : &vq->call;
    if (*slot >= 0)
        close(*slot);
    *slot = -1;
    if (nfds) {
        *slot = fds[0];
        fds[0] = -1;            /* kept */
    }
    peer_ack(p, h, act, true);
}

/* Vring messages with a vring_state or vring_addr payload. */
static void peer_vring(struct vu_peer *p, const struct vu_hdr *h, uint8_t act,
                       const uint8_t *pl)
{
    uint32_t index, num;
    struct peer_vq *vq;

    memcpy(&index, pl, sizeof(index));
    memcpy(&num, pl + 4, sizeof(num));
    vq = peer_vq(p, index);
    if (!vq) {
        peer_ack(p, h, act, false);
        return;
    }
    switch (h->request) {
    case VU_SET_VRING_NUM:
        if (num == 0 || num > 32768 || (num & (num - 1)))
            peer_bug("sent a queue size that is not a power of two");
        vq->num = num;
        break;
    case VU_SET_VRING_BASE:
        vq->last_avail = vq->used_idx = (uint16_t)num;
        break;
    case VU_SET_VRING_ADDR:
        memcpy(&vq->desc, pl + 8, 8);
        memcpy(&vq->used, pl + 16, 8);
        memcpy(&vq->avail, pl + 24, 8);
        vq->addr_set = true;
        break;
    case VU_SET_VRING_ENABLE:
        vq->enabled = num != 0;
        break;
    case VU_GET_VRING_BASE: {
        uint32_t st[2] = { index, vq->last_avail };

        vq->enabled = false;    /* stopped: never touch it again */
        peer_reply(p, h->request, act, st, sizeof(st));
        return;
    }
    }
    peer_ack(p, h, act, true);
}

/* Receive one message with its fds; false when the front-end is gone. */
static bool peer_recv(struct vu_peer *p, struct vu_hdr *h, uint8_t *pl,
                      int *fds, unsigned *nfds)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * VU_MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct iovec iov = { .iov_base = h, .iov_len = sizeof(*h) };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = control.buf,
                          .msg_controllen = sizeof(control.buf) };
    ssize_t r = recvmsg(p->sock, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    size_t got = 0;

    *nfds = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            unsigned n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

            memcpy(fds + *nfds, CMSG_DATA(c), n * sizeof(int));
            *nfds += n;
        }
    if (r != (ssize_t)sizeof(*h))
        return false;
    if ((h->flags & 3) != VU_VERSION || (h->flags & VU_REPLY))
        peer_bug("sent a header with bad flags");
    if (h->size > VU_MAX_MSG)
        peer_bug("sent an oversized message");
    while (got < h->size) {
        r = recv(p->sock, pl + got, h->size - got, MSG_WAITALL);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* Payload sizes the protocol fixes, checked before use. */
static uint32_t peer_min_size(uint32_t req)
{
    switch (req) {
    case VU_SET_FEATURES: case VU_SET_PROTOCOL_FEATURES:
    case VU_SET_VRING_KICK: case VU_SET_VRING_CALL:
    case VU_SET_VRING_NUM: case VU_SET_VRING_BASE:
    case VU_GET_VRING_BASE: case VU_SET_VRING_ENABLE:
        return 8;
    case VU_SET_VRING_ADDR:
        return 40;
    case VU_ADD_MEM_REG: case VU_REM_MEM_REG:
        return 40;
    case VU_SET_MEM_TABLE: case VU_GET_CONFIG:
        return 8;
    default:
        return 0;
    }
}

static void peer_dispatch(struct vu_peer *p, const struct vu_hdr *h,
                          uint8_t act, const uint8_t *pl, int *fds,
                          unsigned nfds)
{
    bool bend = p->opts.bend_control;
    struct vu_region r;

    switch (h->request) {
    case VU_GET_FEATURES:
        peer_reply_u64(p, h->request, act,
                       PEER_FEATURES ^ (bend ? fz_u64(&p->in) : 0));
        break;
    case VU_GET_PROTOCOL_FEATURES:
        peer_reply_u64(p, h->request, act,
                       PEER_PROTOCOL ^ (bend ? fz_u64(&p->in) : 0));
        break;
    case VU_GET_QUEUE_NUM:
        peer_reply_u64(p, h->request, act, 2 ^ (bend ? fz_u64(&p->in) : 0));
        break;
    case VU_GET_MAX_MEM_SLOTS:
        peer_reply_u64(p, h->request, act, 32 ^ (bend ? fz_u64(&p->in) : 0));
        break;
    case VU_GET_CONFIG:
        peer_config(p, act, pl, h->size);
        break;
    case VU_SET_MEM_TABLE:
        peer_mem_table(p, h, act, pl, fds, nfds);
        break;
    case VU_ADD_MEM_REG:
    case VU_REM_MEM_REG:
        if (nfds != 1)
            peer_bug("sent a memory region message without one fd");
        memcpy(&r, pl + 8, sizeof(r));
        if (h->request == VU_REM_MEM_REG)
            peer_unmap(p, &r);
        peer_ack(p, h, act, h->request == VU_REM_MEM_REG ||
                            peer_map(p, &r, fds[0]));
        break;
    case VU_SET_VRING_KICK:
    case VU_SET_VRING_CALL:
        peer_vring_fd(p, h, act, pl, fds, nfds);
        break;
    case VU_SET_VRING_NUM: case VU_SET_VRING_BASE: case VU_SET_VRING_ADDR:
    case VU_SET_VRING_ENABLE: case VU_GET_VRING_BASE:
        peer_vring(p, h, act, pl);
        break;
    default:            /* SET_FEATURES, SET_OWNER, SET_PROTOCOL_FEATURES */
        peer_ack(p, h, act, true);
        break;
    }
}

/* One message from the front-end; false when the conversation is over. */
static bool peer_handle(struct vu_peer *p)
{
    struct vu_hdr h;
    uint8_t pl[VU_MAX_MSG];
    int fds[VU_MAX_FDS];
    unsigned nfds = 0;
    uint8_t act = 0;
    bool alive;

    alive = peer_recv(p, &h, pl, fds, &nfds);
    if (alive && h.size < peer_min_size(h.request))
        peer_bug("sent a message shorter than its type");
    if (alive && p->opts.bend_control)
        act = fz_u8(&p->in) % 32;
    if (alive && act == 28) {
        alive = false;                          /* hang up */
    } else if (alive && act == 29) {            /* garbage, then hang up */
        uint8_t junk[32];
        size_t n = fz_u8(&p->in) % sizeof(junk);

        fz_bytes(&p->in, junk, n);
        peer_send(p, junk, n);
        alive = false;
    } else if (alive) {
        peer_dispatch(p, &h, act, pl, fds, nfds);
    }
    for (unsigned i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    return alive && p->sock >= 0;
}

/* ---- rings ---- */

struct peer_seg {
    uint8_t *ptr;
    uint32_t len;
    bool device_writes;
};

/* Follow the chain at head (direct or through one indirect table);
 * 0 when it points outside the memory the peer knows of while the peer
 * is out of step with the front-end. */
static unsigned peer_chain(struct vu_peer *p, const struct vring_desc *table,
                           unsigned tnum, uint16_t head, struct peer_seg *segs)
{
    unsigned n = 0, i = head;
    bool indirect = false;

    for (;;) {
        struct vring_desc d;

        if (i >= tnum || n >= PEER_MAX_SEGS)
            peer_bug("made a descriptor chain that runs out of its table");
        d = table[i];
        if (le16toh(d.flags) & VRING_DESC_F_INDIRECT) {
            if (indirect || n > 0 || le32toh(d.len) % 16 || !d.len)
                peer_bug("made a bad indirect descriptor");
            table = peer_ptr(p, le64toh(d.addr), le32toh(d.len));
            if (!table && p->desynced)
                return 0;
            if (!table)
                peer_bug("made an indirect table outside its memory");
            tnum = le32toh(d.len) / 16;
            indirect = true;
            i = 0;
            continue;
        }
        segs[n].ptr = peer_ptr(p, le64toh(d.addr), le32toh(d.len));
        segs[n].len = le32toh(d.len);
        segs[n].device_writes = le16toh(d.flags) & VRING_DESC_F_WRITE;
        if (!segs[n].ptr && p->desynced)
            return 0;
        if (!segs[n].ptr)
            peer_bug("made a descriptor outside its memory");
        n++;
        if (!(le16toh(d.flags) & VRING_DESC_F_NEXT))
            return n;
        i = le16toh(d.next);
    }
}

static void peer_push_used(struct peer_vq *vq, struct vring_used *used,
                           uint32_t id, uint32_t len)
{
    used->ring[vq->used_idx % vq->num].id = htole32(id);
    used->ring[vq->used_idx % vq->num].len = htole32(len);
    vq->used_idx++;
    /* The entry before the index: the front-end reads them in order. */
    __atomic_store_n(&used->idx, htole16(vq->used_idx), __ATOMIC_RELEASE);
}

/* Complete one request, the way the input says.  Returns false when the
 * peer stops signalling or hangs up. */
static bool peer_complete(struct vu_peer *p, struct peer_vq *vq,
                          struct vring_desc *desc, struct vring_used *used,
                          uint16_t head, bool *signal)
{
    static struct peer_seg segs[PEER_MAX_SEGS];
    unsigned n = peer_chain(p, desc, vq->num, head, segs);
    struct virtio_blk_outhdr hdr;
    uint32_t written = 0;
    uint8_t status = VIRTIO_BLK_S_OK;
    uint8_t act = p->opts.bend_rings ? fz_u8(&p->in) % 16 : 0;

    if (n == 0)
        return true;            /* left in flight, see peer_chain() */
    if (n < 2 || segs[0].len < sizeof(hdr) || segs[0].device_writes ||
        !segs[n - 1].device_writes || segs[n - 1].len < 1)
        peer_bug("made a request without a header or a status byte");
    memcpy(&hdr, segs[0].ptr, sizeof(hdr));
    for (unsigned i = 1; i + 1 < n; i++) {
        if (segs[i].device_writes) {
            /* Reads and GET_ID: data the front-end did not write. */
            memset(segs[i].ptr, (uint8_t)le64toh(hdr.sector), segs[i].len);
            written += segs[i].len;
        }
    }
    if (act == 9 || act == 10 || act == 12 || act == 13)
        p->desynced = true;
    switch (act) {
    case 6: status = VIRTIO_BLK_S_IOERR; break;
    case 7: status = VIRTIO_BLK_S_UNSUPP; break;
    case 8: status = fz_u8(&p->in); break;
    case 9: written = fz_u32(&p->in); break;
    case 10: head = fz_u16(&p->in); break;
    case 11: return true;                       /* never completed */
    case 14: *signal = false; break;
    case 15: peer_close(p); return false;       /* gone mid-request */
    }
    segs[n - 1].ptr[0] = status;
    peer_push_used(vq, used, head, written + 1);
    if (act == 12)                              /* completed twice */
        peer_push_used(vq, used, head, written + 1);
    if (act == 13) {                            /* index runs ahead */
        unsigned extra = fz_u8(&p->in);

        for (unsigned i = 0; i < extra; i++)
            peer_push_used(vq, used, fz_u16(&p->in), fz_u32(&p->in));
    }
    return true;
}

static void peer_process(struct vu_peer *p, struct peer_vq *vq)
{
    struct vring_desc *desc;
    struct vring_avail *avail;
    struct vring_used *used;
    bool signal = true;
    uint16_t aidx;

    if (!vq->enabled || !vq->addr_set || !vq->num)
        return;
    desc = peer_ptr(p, vq->desc, 16ull * vq->num);
    avail = peer_ptr(p, vq->avail, 6 + 2ull * vq->num);
    used = peer_ptr(p, vq->used, 6 + 8ull * vq->num);
    if (!desc || !avail || !used)
        peer_bug("put a ring outside the memory it shared");
    aidx = le16toh(__atomic_load_n(&avail->idx, __ATOMIC_ACQUIRE));
    if ((uint16_t)(aidx - vq->last_avail) > vq->num)
        peer_bug("made more buffers available than the ring holds");
    while (vq->last_avail != aidx && p->sock >= 0) {
        uint16_t head = le16toh(avail->ring[vq->last_avail % vq->num]);

        vq->last_avail++;
        if (!peer_complete(p, vq, desc, used, head, &signal))
            break;
    }
    /* Event index: wake us for the next buffer. */
    {
        uint16_t ev = htole16(vq->last_avail);

        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        memcpy((uint8_t *)used + 4 + 8ull * vq->num, &ev, sizeof(ev));
    }
    if (signal && vq->call >= 0) {
        uint64_t one = 1;
        ssize_t r = write(vq->call, &one, sizeof(one));
        (void)r;
    }
}

/* ---- the thread ---- */

static void peer_serve(struct vu_peer *p)
{
    for (;;) {
        struct pollfd pfd[2 + PEER_MAX_VQS];
        unsigned n = 0;

        pfd[n++] = (struct pollfd){ .fd = p->quit, .events = POLLIN };
        pfd[n++] = (struct pollfd){ .fd = p->sock, .events = POLLIN };
        for (unsigned i = 0; i < PEER_MAX_VQS; i++)
            pfd[n++] = (struct pollfd){ .fd = p->sock >= 0 ? p->vq[i].kick
                                                            : -1,
                                        .events = POLLIN };
        if (poll(pfd, n, 10) < 0 && errno != EINTR)
            return;
        if (pfd[0].revents)
            return;
        if (p->sock >= 0 && pfd[1].revents && !peer_handle(p))
            peer_close(p);
        for (unsigned i = 0; i < PEER_MAX_VQS && p->sock >= 0; i++) {
            uint64_t v;

            if (pfd[2 + i].revents & POLLIN &&
                read(p->vq[i].kick, &v, sizeof(v)) < 0)
                continue;
            peer_process(p, &p->vq[i]);
        }
    }
}

static void *peer_thread(void *arg)
{
    struct vu_peer *p = arg;
    struct pollfd pfd[2] = {
        { .fd = p->quit, .events = POLLIN },
        { .fd = peer_listen_fd, .events = POLLIN },
    };

    while (poll(pfd, 2, -1) < 0 && errno == EINTR)
        ;
    if (!pfd[0].revents && pfd[1].revents) {
        p->sock = accept4(peer_listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (p->sock >= 0)
            peer_serve(p);
    }
    peer_close(p);
    for (unsigned i = 0; i < PEER_MAX_VQS; i++) {
        if (p->vq[i].kick >= 0)
            close(p->vq[i].kick);
        if (p->vq[i].call >= 0)
            close(p->vq[i].call);
    }
    peer_unmap_all(p);
    return NULL;
}

struct vu_peer *vu_peer_start(const struct fz *in,
                              const struct vu_peer_opts *opts)
{
    struct vu_peer *p = calloc(1, sizeof(*p));

    if (!p)
        abort();
    p->in = *in;
    p->opts = *opts;
    p->sock = -1;
    for (unsigned i = 0; i < PEER_MAX_VQS; i++)
        p->vq[i].kick = p->vq[i].call = -1;
    p->quit = eventfd(0, EFD_CLOEXEC);
    if (p->quit < 0 || pthread_create(&p->thread, NULL, peer_thread, p))
        abort();
    return p;
}

void vu_peer_stop(struct vu_peer *p)
{
    uint64_t one = 1;

    if (write(p->quit, &one, sizeof(one)) < 0)
        abort();
    pthread_join(p->thread, NULL);
    close(p->quit);
    free(p);
}
