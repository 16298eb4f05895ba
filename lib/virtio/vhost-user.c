/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * virtio-blk-vhost-user driver: the vhost-user frontend protocol (QEMU
 * docs/interop/vhost-user.rst) as a virtio transport.  The device logic is
 * the generic virtio-blk code; this file only speaks the control protocol
 * on the UNIX socket and owns the kick eventfds.
 *
 * Memory: every region the device must reach (our ring region and the
 * application's mapped regions) is sent with its fd, using our virtual
 * address as both guest_phys_addr and userspace_addr, so descriptors and
 * ring addresses carry plain pointers.
 *
 * Every reply has a deadline: a backend that stops answering turns into
 * -ETIMEDOUT, never a hang, and the connection counts as lost (a late
 * reply would otherwise be read as the answer to the next request).
 *
 * vhost-user has no device status: it is emulated here (virtio.c drives
 * the handshake the same way for every transport).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "virtio.h"
#include "virtio-blk.h"

/* Front-end requests */
enum {
    VHOST_USER_GET_FEATURES = 1,
    VHOST_USER_SET_FEATURES = 2,
    VHOST_USER_SET_OWNER = 3,
    VHOST_USER_SET_MEM_TABLE = 5,
    VHOST_USER_SET_VRING_NUM = 8,
    VHOST_USER_SET_VRING_ADDR = 9,
    VHOST_USER_SET_VRING_BASE = 10,
    VHOST_USER_GET_VRING_BASE = 11,
    VHOST_USER_SET_VRING_KICK = 12,
    VHOST_USER_SET_VRING_CALL = 13,
    VHOST_USER_GET_PROTOCOL_FEATURES = 15,
    VHOST_USER_SET_PROTOCOL_FEATURES = 16,
    VHOST_USER_GET_QUEUE_NUM = 17,
    VHOST_USER_SET_VRING_ENABLE = 18,
    VHOST_USER_GET_CONFIG = 24,
    VHOST_USER_GET_MAX_MEM_SLOTS = 36,
    VHOST_USER_ADD_MEM_REG = 37,
    VHOST_USER_REM_MEM_REG = 38,
};

/* Protocol feature bits */
#define VHOST_USER_PROTOCOL_F_MQ                  0
#define VHOST_USER_PROTOCOL_F_REPLY_ACK           3
#define VHOST_USER_PROTOCOL_F_CONFIG              9
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS 15

#define VHOST_USER_F_PROTOCOL_FEATURES 30

#define VHOST_USER_VERSION        0x1u
#define VHOST_USER_VERSION_MASK   0x3u
#define VHOST_USER_REPLY          (1u << 2)
#define VHOST_USER_NEED_REPLY     (1u << 3)
#define VHOST_USER_VRING_NOFD     (1ull << 8)

#define VHOST_USER_MAX_FDS        8     /* per message, and SET_MEM_TABLE */
#define VHOST_USER_DEFAULT_SLOTS  8
#define VHOST_USER_REPLY_TIMEOUT_MS 10000
/* While the instance is destroyed, the queues are stopped and the regions
 * unmapped politely, but a backend that stopped answering is not waited
 * for as long: everything goes with the connection anyway, and the
 * backend's mappings of the shared memory keep it valid for it. */
#define VHOST_USER_TEARDOWN_TIMEOUT_MS 500
#define VHOST_USER_CONFIG_MAX     256

/* The protocol features we use. */
#define VHOST_USER_WANTED_PROTOCOL                                           \
    ((1ull << VHOST_USER_PROTOCOL_F_MQ) |                                    \
     (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) |                             \
     (1ull << VHOST_USER_PROTOCOL_F_CONFIG) |                                \
     (1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS))

struct vhost_user_hdr {
    uint32_t request;
    uint32_t flags;
    uint32_t size;
} __attribute__((packed));

struct vhost_user_vring_state {
    uint32_t index;
    uint32_t num;
};

struct vhost_user_vring_addr {
    uint32_t index;
    uint32_t flags;
    uint64_t desc;
    uint64_t used;
    uint64_t avail;
    uint64_t log;
};

struct vhost_user_mem_region {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t mmap_offset;
};

struct vhost_user_mem_table {
    uint32_t nregions;
    uint32_t padding;
    struct vhost_user_mem_region regions[VHOST_USER_MAX_FDS];
};

struct vhost_user_mem_reg {
    uint64_t padding;
    struct vhost_user_mem_region region;
};

struct vhost_user_config {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
    uint8_t payload[VHOST_USER_CONFIG_MAX];
};

struct vhost_user {
    struct blkio *b;
    int sock;
    uint64_t features;          /* device features, bit 30 included */
    uint64_t protocol;          /* negotiated protocol features */
    int queue_num;              /* GET_QUEUE_NUM, 0 if unknown */
    uint64_t mem_slots;
    uint8_t status;             /* emulated device status */
    struct blkio_mem_region internal;
    bool started;
    bool lost;                  /* the control stream is given up on */
    struct virtio_kickfds kick;
};

/* vhost-user talks host-endian on the wire; no conversions needed here,
 * unlike the virtio structures in shared memory. */

static bool vu_has_protocol(const struct vhost_user *vu, unsigned bit)
{
    return vu->protocol & (1ull << bit);
}

static const char *vu_request_name(uint32_t req)
{
    switch (req) {
    case VHOST_USER_GET_FEATURES: return "GET_FEATURES";
    case VHOST_USER_SET_FEATURES: return "SET_FEATURES";
    case VHOST_USER_SET_OWNER: return "SET_OWNER";
    case VHOST_USER_SET_MEM_TABLE: return "SET_MEM_TABLE";
    case VHOST_USER_SET_VRING_NUM: return "SET_VRING_NUM";
    case VHOST_USER_SET_VRING_ADDR: return "SET_VRING_ADDR";
    case VHOST_USER_SET_VRING_BASE: return "SET_VRING_BASE";
    case VHOST_USER_GET_VRING_BASE: return "GET_VRING_BASE";
    case VHOST_USER_SET_VRING_KICK: return "SET_VRING_KICK";
    case VHOST_USER_SET_VRING_CALL: return "SET_VRING_CALL";
    case VHOST_USER_GET_PROTOCOL_FEATURES: return "GET_PROTOCOL_FEATURES";
    case VHOST_USER_SET_PROTOCOL_FEATURES: return "SET_PROTOCOL_FEATURES";
    case VHOST_USER_GET_QUEUE_NUM: return "GET_QUEUE_NUM";
    case VHOST_USER_SET_VRING_ENABLE: return "SET_VRING_ENABLE";
    case VHOST_USER_GET_CONFIG: return "GET_CONFIG";
    case VHOST_USER_GET_MAX_MEM_SLOTS: return "GET_MAX_MEM_SLOTS";
    case VHOST_USER_ADD_MEM_REG: return "ADD_MEM_REG";
    case VHOST_USER_REM_MEM_REG: return "REM_MEM_REG";
    default: return "unknown request";
    }
}

/* The socket is gone, or its stream can no longer be trusted (a reply
 * may still come for a request given up on, and would be read as the
 * next one's): shut it down, so that every later message fails fast, and
 * the queues fail their requests instead of waiting. */
static int vu_lost(struct vhost_user *vu, int err, uint32_t req,
                   const char *what)
{
    if (vu->sock >= 0)
        shutdown(vu->sock, SHUT_RDWR);
    vu->lost = true;
    virtio_blk_mark_dead(vu->b);
    return blkio_set_error(err, "vhost-user %s: %s: %s", vu_request_name(req),
                           what, strerror(-err));
}

/* A send failed with err (an errno).  EAGAIN is the socket's send
 * deadline (SO_SNDTIMEO) passing: the backend stopped reading.  Part of a
 * message may be in the stream, so nothing more can be sent on it. */
static int vu_send_failed(struct vhost_user *vu, int err, uint32_t req)
{
    if (err == EAGAIN || err == EWOULDBLOCK)
        return vu_lost(vu, -ETIMEDOUT, req, "the backend read no request "
                       "within the deadline");
    return vu_lost(vu, -err, req, "sending request");
}

static int vu_send(struct vhost_user *vu, uint32_t req, uint32_t flags,
                   const void *payload, uint32_t size, const int *fds,
                   unsigned nfds)
{
    struct vhost_user_hdr hdr = {
        .request = req, .flags = VHOST_USER_VERSION | flags, .size = size,
    };
    struct iovec iov[2] = {
        { .iov_base = &hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)payload, .iov_len = size },
    };
    union {
        char buf[CMSG_SPACE(sizeof(int) * VHOST_USER_MAX_FDS)];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {
        .msg_iov = iov, .msg_iovlen = size ? 2 : 1,
    };
    size_t total = sizeof(hdr) + size;
    ssize_t r;

    if (vu->sock < 0)
        return blkio_set_error(-ENOTCONN, "vhost-user %s: not connected",
                               vu_request_name(req));
    if (vu->lost)
        return blkio_set_error(-ENOTCONN, "vhost-user %s: the connection "
                               "was lost earlier", vu_request_name(req));
    if (nfds) {
        struct cmsghdr *c;

        memset(&control, 0, sizeof(control));
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    do {
        /* MSG_NOSIGNAL: a dead backend must be an error, not SIGPIPE. */
        r = sendmsg(vu->sock, &msg, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r < 0 && (errno == ENOMEM || errno == ENOBUFS))
        /* Nothing of the message went out: the stream is still in step,
         * and the same call may work later. */
        return blkio_set_error(-errno, "vhost-user %s: sending request: "
                               "%m (nothing was sent)", vu_request_name(req));
    if (r < 0)
        return vu_send_failed(vu, errno, req);
    if ((size_t)r != total) {
        /* Messages are small; a short send on a stream socket means the
         * peer is in trouble.  Finish it without fds. */
        size_t done = (size_t)r;
        const uint8_t *rest;

        while (done < total) {
            if (done < sizeof(hdr)) {
                rest = (const uint8_t *)&hdr + done;
                r = send(vu->sock, rest, sizeof(hdr) - done, MSG_NOSIGNAL);
            } else {
                rest = (const uint8_t *)payload + (done - sizeof(hdr));
                r = send(vu->sock, rest, total - done, MSG_NOSIGNAL);
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0)
                return vu_send_failed(vu, errno, req);
            if (r == 0)
                return vu_lost(vu, -EPIPE, req, "sending request");
            done += (size_t)r;
        }
    }
    return 0;
}

/* Whether a wait or read that failed (taking nothing from the stream)
 * may be tried again: after a signal, or the kernel short of memory for
 * a moment, which this waits 1 ms for (not past the deadline), so that a
 * lasting shortage is no busy loop until the deadline. */
static bool vu_try_again(int err, const struct timespec *deadline)
{
    if (err == ENOMEM || err == ENOBUFS)
        blkio_pause(1000 * 1000, deadline);
    return err == EINTR || err == ENOMEM || err == ENOBUFS;
}

/* Read exactly len bytes before the deadline (a CLOCK_MONOTONIC time
 * computed by the caller). */
static int vu_recv_all(struct vhost_user *vu, void *buf, size_t len,
                       const struct timespec *deadline, uint32_t req)
{
    uint8_t *p = buf;

    while (len > 0) {
        struct pollfd pfd = { .fd = vu->sock, .events = POLLIN };
        struct timespec now;
        long ms;
        ssize_t r;
        int pr;

        clock_gettime(CLOCK_MONOTONIC, &now);
        ms = (deadline->tv_sec - now.tv_sec) * 1000 +
             (deadline->tv_nsec - now.tv_nsec) / 1000000;
        if (ms <= 0) {
            /* Part of a reply may be in the stream, or all of it later:
             * nothing read from this socket can be trusted any more. */
            return vu_lost(vu, -ETIMEDOUT, req, "no reply from the backend "
                           "within the deadline");
        }
        pr = poll(&pfd, 1, (int)ms);
        if (pr < 0 && vu_try_again(errno, deadline))
            continue;
        if (pr < 0)
            return vu_lost(vu, -errno, req, "waiting for the reply");
        if (pr == 0)
            continue;   /* re-check the deadline */
        r = recv(vu->sock, p, len, 0);
        if (r < 0 && (errno == EAGAIN || vu_try_again(errno, deadline)))
            continue;
        if (r < 0)
            return vu_lost(vu, -errno, req, "receiving reply");
        if (r == 0)
            return vu_lost(vu, -ECONNRESET, req,
                           "backend closed the connection");
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* How long a reply may take.  Test builds can shorten it, so that a test
 * of a silent backend takes a moment instead of the full deadline. */
static int vu_reply_timeout_ms(void)
{
#ifdef BLKIO_TEST_SWITCHES
    const char *s = getenv("LIBBLKIO_VHOST_USER_REPLY_TIMEOUT_MS");

    if (s && *s)
        return atoi(s);
#endif
    return VHOST_USER_REPLY_TIMEOUT_MS;
}

/* Wait for the reply to req and check it: request code, reply flag,
 * version and exact payload size (untrusted input). */
static int vu_recv_reply(struct vhost_user *vu, uint32_t req, void *payload,
                         uint32_t size)
{
    struct vhost_user_hdr hdr;
    struct timespec deadline;
    int ms = vu_reply_timeout_ms();
    int ret;

    if (vu->b->destroying && ms > VHOST_USER_TEARDOWN_TIMEOUT_MS)
        ms = VHOST_USER_TEARDOWN_TIMEOUT_MS;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    ret = vu_recv_all(vu, &hdr, sizeof(hdr), &deadline, req);
    if (ret < 0)
        return ret;
    if (hdr.request != req || !(hdr.flags & VHOST_USER_REPLY) ||
        (hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION ||
        hdr.size != size) {
        /* The stream is out of sync: nothing after this can be trusted. */
        return vu_lost(vu, -EIO, req, "malformed reply");
    }
    return size ? vu_recv_all(vu, payload, size, &deadline, req) : 0;
}

/* A request whose reply is a u64 (GET_FEATURES & co). */
static int vu_get_u64(struct vhost_user *vu, uint32_t req, uint64_t *v)
{
    int ret = vu_send(vu, req, 0, NULL, 0, NULL, 0);
    if (ret < 0)
        return ret;
    return vu_recv_reply(vu, req, v, sizeof(*v));
}

/*
 * A request without a reply of its own.  With REPLY_ACK we ask for one
 * anyway, so that failures (a memory table the backend cannot map) are
 * reported to our caller instead of lost.
 */
static int vu_request(struct vhost_user *vu, uint32_t req, const void *payload,
                      uint32_t size, const int *fds, unsigned nfds)
{
    bool ack = vu_has_protocol(vu, VHOST_USER_PROTOCOL_F_REPLY_ACK);
    uint64_t status;
    int ret;

    ret = vu_send(vu, req, ack ? VHOST_USER_NEED_REPLY : 0, payload, size,
                  fds, nfds);
    if (ret < 0)
        return ret;
    if (!ack) {
        /* Without acks, memory must still be mapped before a kick can
         * point into it (the backend may serve kicks on other threads):
         * a GET_FEATURES round trip waits until the backend has read the
         * message, as QEMU's front-end does. */
        if (req == VHOST_USER_SET_MEM_TABLE || req == VHOST_USER_ADD_MEM_REG)
            return vu_get_u64(vu, VHOST_USER_GET_FEATURES, &status);
        return 0;
    }
    ret = vu_recv_reply(vu, req, &status, sizeof(status));
    if (ret < 0)
        return ret;
    if (status != 0)
        return blkio_set_error(-EIO, "vhost-user %s: backend reported "
                               "failure %llu", vu_request_name(req),
                               (unsigned long long)status);
    return 0;
}

static int vu_set_u64(struct vhost_user *vu, uint32_t req, uint64_t v)
{
    return vu_request(vu, req, &v, sizeof(v), NULL, 0);
}

/* ---- connect ---- */

static int vu_connect_socket(struct vhost_user *vu, const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int ms = vu_reply_timeout_ms();
    struct timeval send_deadline = {
        .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000,
    };
    int fd;

    if (!path || !*path)
        return blkio_set_error(-EINVAL, "the path property must be set to "
                               "the vhost-user socket before "
                               "blkio_connect()");
    if (strlen(path) >= sizeof(sa.sun_path))
        return blkio_set_error(-ENAMETOOLONG, "vhost-user socket path '%s' "
                               "is longer than %zu bytes", path,
                               sizeof(sa.sun_path) - 1);
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return blkio_set_error(-errno, "socket: %m");
    /* Sends have the replies' deadline: on a Unix socket it also bounds
     * connect() to a backend whose listen backlog is full, and every
     * sendmsg() to one that stopped reading (whose buffer filled up with
     * messages that wait for no reply). */
    if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_deadline,
                   sizeof(send_deadline)) < 0) {
        int e = errno;
        close(fd);
        return blkio_set_error(-e, "vhost-user socket: SO_SNDTIMEO: %s",
                               strerror(e));
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        if (e == EAGAIN)
            return blkio_set_error(-ETIMEDOUT, "connect to vhost-user "
                                   "socket '%s': the backend accepted no "
                                   "connection within %d ms", path, ms);
        return blkio_set_error(-e, "connect to vhost-user socket '%s': %s",
                               path, strerror(e));
    }
    vu->sock = fd;
    vu->lost = false;
    return 0;
}

static int vu_handshake(struct vhost_user *vu)
{
    uint64_t proto = 0;
    int ret;

    ret = vu_get_u64(vu, VHOST_USER_GET_FEATURES, &vu->features);
    if (ret < 0)
        return ret;
    vu->mem_slots = VHOST_USER_DEFAULT_SLOTS;
    if (vu->features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES)) {
        ret = vu_get_u64(vu, VHOST_USER_GET_PROTOCOL_FEATURES, &proto);
        if (ret < 0)
            return ret;
        proto &= VHOST_USER_WANTED_PROTOCOL;
#ifdef BLKIO_TEST_SWITCHES
        {
            /* Test builds only, like LIBBLKIO_VIRTIO_DECLINE_FEATURES:
             * exercise SET_MEM_TABLE updates against backends with mem
             * slots. */
            const char *m = getenv("LIBBLKIO_VHOST_USER_DECLINE_PROTOCOL");

            if (m && *m)
                proto &= ~strtoull(m, NULL, 0);
        }
#endif
        /* Not acked yet: send without asking for a reply. */
        ret = vu_send(vu, VHOST_USER_SET_PROTOCOL_FEATURES, 0, &proto,
                      sizeof(proto), NULL, 0);
        if (ret < 0)
            return ret;
        vu->protocol = proto;
    }
    if (!vu_has_protocol(vu, VHOST_USER_PROTOCOL_F_CONFIG))
        return blkio_set_error(-ENOTSUP, "vhost-user backend does not "
                               "support VHOST_USER_PROTOCOL_F_CONFIG, needed "
                               "to read the virtio-blk configuration");
    if (vu_has_protocol(vu, VHOST_USER_PROTOCOL_F_MQ)) {
        uint64_t n;

        ret = vu_get_u64(vu, VHOST_USER_GET_QUEUE_NUM, &n);
        if (ret < 0)
            return ret;
        if (n == 0 || n > 65536)
            return blkio_set_error(-EIO, "vhost-user backend reported %llu "
                                   "queues", (unsigned long long)n);
        vu->queue_num = (int)n;
    }
    if (vu_has_protocol(vu, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
        uint64_t n;

        ret = vu_get_u64(vu, VHOST_USER_GET_MAX_MEM_SLOTS, &n);
        if (ret < 0)
            return ret;
        if (n < 1 || n > 65536)
            return blkio_set_error(-EIO, "vhost-user backend reported %llu "
                                   "memory slots", (unsigned long long)n);
        vu->mem_slots = n;
    }
    return vu_request(vu, VHOST_USER_SET_OWNER, NULL, 0, NULL, 0);
}

/* ---- transport ops ---- */

static int vu_get_status(void *t, uint8_t *status)
{
    struct vhost_user *vu = t;

    *status = vu->status;
    return 0;
}

/* The backend learns what matters through its own messages (features,
 * memory table, rings); the status byte only orders our steps. */
static int vu_set_status(void *t, uint8_t status)
{
    struct vhost_user *vu = t;

    vu->status = status;
    return 0;
}

static int vu_get_features(void *t, uint64_t *features)
{
    struct vhost_user *vu = t;

    *features = vu->features & ~(1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    return 0;
}

static int vu_set_features(void *t, uint64_t features)
{
    struct vhost_user *vu = t;

    /* Keep protocol features on, or the backend forgets them. */
    features |= vu->features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    return vu_set_u64(vu, VHOST_USER_SET_FEATURES, features);
}

static int vu_read_config(void *t, void *buf, uint32_t len)
{
    struct vhost_user *vu = t;
    struct vhost_user_config c = { .offset = 0, .size = len, .flags = 0 };
    uint32_t msg_size = (uint32_t)offsetof(struct vhost_user_config,
                                           payload) + len;
    int ret;

    if (len > VHOST_USER_CONFIG_MAX)
        return blkio_set_error(-EINVAL, "config read of %u bytes is too "
                               "large", len);
    ret = vu_send(vu, VHOST_USER_GET_CONFIG, 0, &c, msg_size, NULL, 0);
    if (ret < 0)
        return ret;
    ret = vu_recv_reply(vu, VHOST_USER_GET_CONFIG, &c, msg_size);
    if (ret < 0)
        return ret;
    if (c.size != len || c.offset != 0)
        return blkio_set_error(-EIO, "vhost-user GET_CONFIG: backend "
                               "returned %u bytes at offset %u, asked for %u "
                               "at 0", c.size, c.offset, len);
    memcpy(buf, c.payload, len);
    return 0;
}

static int vu_max_queues(void *t)
{
    struct vhost_user *vu = t;
    return vu->queue_num;
}

static uint64_t vu_max_mem_regions(void *t)
{
    struct vhost_user *vu = t;
    return vu->mem_slots;
}

static struct vhost_user_mem_region vu_region(const struct blkio_mem_region *r)
{
    return (struct vhost_user_mem_region){
        .guest_phys_addr = (uint64_t)(uintptr_t)r->addr,
        .memory_size = r->len,
        .userspace_addr = (uint64_t)(uintptr_t)r->addr,
        .mmap_offset = (uint64_t)r->fd_offset,
    };
}

/* Send the whole table: our region plus the application's, with `extra`
 * added and `skip` left out (for map and unmap without mem slots). */
static int vu_send_mem_table(struct vhost_user *vu,
                             const struct blkio_mem_region *extra,
                             const struct blkio_mem_region *skip)
{
    struct vhost_user_mem_table tab = { 0 };
    int fds[VHOST_USER_MAX_FDS];
    struct blkio *b = vu->b;
    unsigned n = 0;

    tab.regions[n] = vu_region(&vu->internal);
    fds[n++] = vu->internal.fd;
    for (size_t i = 0; i < b->nregions; i++) {
        const struct blkio_mem_region *r = &b->regions[i];

        if (skip && r->addr == skip->addr && r->len == skip->len)
            continue;
        if (n == VHOST_USER_MAX_FDS)
            goto full;
        tab.regions[n] = vu_region(r);
        fds[n++] = r->fd;
    }
    if (extra) {
        if (n == VHOST_USER_MAX_FDS)
            goto full;
        tab.regions[n] = vu_region(extra);
        fds[n++] = extra->fd;
    }
    tab.nregions = n;
    return vu_request(vu, VHOST_USER_SET_MEM_TABLE, &tab,
                      (uint32_t)(offsetof(struct vhost_user_mem_table,
                                          regions) +
                                 n * sizeof(tab.regions[0])),
                      fds, n);
full:
    return blkio_set_error(-ENOSPC, "vhost-user backend can map at most %d "
                           "memory regions (one holds the virtqueues)",
                           VHOST_USER_MAX_FDS);
}

static int vu_start(void *t, const struct blkio_mem_region *internal,
                    unsigned nvqs, unsigned nirqs, uint64_t *internal_addr)
{
    struct vhost_user *vu = t;

    *internal_addr = (uint64_t)(uintptr_t)internal->addr;
    (void)nvqs;
    (void)nirqs;
    vu->internal = *internal;
    vu->started = true;
    return vu_send_mem_table(vu, NULL, NULL);
}

static int vu_setup_queue(void *t, const struct virtio_vq_info *info)
{
    struct vhost_user *vu = t;
    struct vhost_user_vring_state st = { .index = info->index };
    struct vhost_user_vring_addr addr = {
        .index = info->index,
        .desc = info->desc_addr,
        .used = info->used_addr,
        .avail = info->avail_addr,
    };
    uint64_t v;
    int kick, ret;

    kick = virtio_kickfds_get(&vu->kick, info->index);
    if (kick < 0)
        return kick;

    st.num = info->num;
    ret = vu_request(vu, VHOST_USER_SET_VRING_NUM, &st, sizeof(st), NULL, 0);
    if (ret < 0)
        return ret;
    st.num = 0;
    ret = vu_request(vu, VHOST_USER_SET_VRING_BASE, &st, sizeof(st), NULL, 0);
    if (ret < 0)
        return ret;
    ret = vu_request(vu, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr),
                     NULL, 0);
    if (ret < 0)
        return ret;
    v = info->index;
    if (info->call_fd >= 0)
        ret = vu_request(vu, VHOST_USER_SET_VRING_CALL, &v, sizeof(v),
                         &info->call_fd, 1);
    else {
        v |= VHOST_USER_VRING_NOFD;
        ret = vu_request(vu, VHOST_USER_SET_VRING_CALL, &v, sizeof(v),
                         NULL, 0);
    }
    if (ret < 0)
        return ret;
    v = info->index;
    ret = vu_request(vu, VHOST_USER_SET_VRING_KICK, &v, sizeof(v), &kick, 1);
    if (ret < 0)
        return ret;
    if (vu->features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES)) {
        /* With protocol features, rings start disabled. */
        st.num = 1;
        ret = vu_request(vu, VHOST_USER_SET_VRING_ENABLE, &st, sizeof(st),
                         NULL, 0);
    }
    return ret;
}

static void vu_stop_queue(void *t, unsigned index)
{
    struct vhost_user *vu = t;
    struct vhost_user_vring_state st = { .index = index };

    if (vu->sock < 0)
        return;
    /* GET_VRING_BASE stops the ring; the backend stops touching it. */
    if (vu_send(vu, VHOST_USER_GET_VRING_BASE, 0, &st, sizeof(st), NULL,
                0) == 0)
        vu_recv_reply(vu, VHOST_USER_GET_VRING_BASE, &st, sizeof(st));
}

static void vu_kick(void *t, unsigned index)
{
    struct vhost_user *vu = t;

    virtio_kickfds_kick(&vu->kick, index);
}

static int vu_map_region(void *t, const struct blkio_mem_region *region,
                         uint64_t *addr)
{
    struct vhost_user *vu = t;
    struct vhost_user_mem_reg m = { .region = vu_region(region) };

    *addr = (uint64_t)(uintptr_t)region->addr;
    if (!vu->started)
        return 0;
    if (vu_has_protocol(vu, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) {
        /* max-mem-regions is the backend's slot count (as libblkio 1.5
         * reports it), and our rings hold one slot: a backend asked for
         * more than it has gives up on the whole device (libvhost-user
         * panics), so the last one is refused here. */
        if (vu->b->nregions + 1 >= vu->mem_slots)
            return blkio_set_error(-ENOSPC, "vhost-user backend has %llu "
                                   "memory slots and %zu are in use (one "
                                   "holds the virtqueues)",
                                   (unsigned long long)vu->mem_slots,
                                   vu->b->nregions + 1);
        return vu_request(vu, VHOST_USER_ADD_MEM_REG, &m, sizeof(m),
                          &region->fd, 1);
    }
    return vu_send_mem_table(vu, region, NULL);
}

static void vu_unmap_region(void *t, const struct blkio_mem_region *region)
{
    struct vhost_user *vu = t;
    struct vhost_user_mem_reg m = { .region = vu_region(region) };
    uint32_t req = VHOST_USER_REM_MEM_REG;
    int ret;

    if (!vu->started || vu->sock < 0 || vu->lost)
        return;
    /* Older libvhost-user insists on exactly one fd with REM_MEM_REG. */
    if (vu_has_protocol(vu, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS))
        ret = vu_request(vu, req, &m, sizeof(m), &region->fd, 1);
    else {
        req = VHOST_USER_SET_MEM_TABLE;
        ret = vu_send_mem_table(vu, NULL, region);
    }
    /* The region is forgotten here whatever happens, but the backend may
     * still have it: memory mapped at the same address later (another
     * buffer) would reach the backend as the old pages, and requests on
     * it would read and write those.  Only a new connection is sure to
     * have none of it. */
    if (ret < 0 && !vu->lost)
        vu_lost(vu, ret, req, "the backend may still map the region");
}

static int vu_hangup_fd(void *t)
{
    struct vhost_user *vu = t;
    return vu->sock;
}

static void vu_destroy(void *t)
{
    struct vhost_user *vu = t;

    virtio_kickfds_close(&vu->kick);
    if (vu->sock >= 0)
        close(vu->sock);
    free(vu);
}

static const struct virtio_transport_ops vu_ops = {
    .name            = "vhost-user",
    .get_status      = vu_get_status,
    .set_status      = vu_set_status,
    .get_features    = vu_get_features,
    .set_features    = vu_set_features,
    .read_config     = vu_read_config,
    .max_queues      = vu_max_queues,
    .max_mem_regions = vu_max_mem_regions,
    .start           = vu_start,
    .setup_queue     = vu_setup_queue,
    .stop_queue      = vu_stop_queue,
    .kick            = vu_kick,
    .map_region      = vu_map_region,
    .unmap_region    = vu_unmap_region,
    .hangup_fd       = vu_hangup_fd,
    .destroy         = vu_destroy,
};

/* ---- driver ---- */

static int vu_drv_create(struct blkio *b)
{
    struct vhost_user *vu = calloc(1, sizeof(*vu));
    int ret;

    if (!vu)
        return blkio_set_error(-ENOMEM, "out of memory creating "
                               "virtio-blk-vhost-user state");
    vu->b = b;
    vu->sock = -1;
    ret = virtio_blk_create(b, &vu_ops, vu);
    if (ret < 0)
        free(vu);
    return ret;
}

static int vu_drv_connect(struct blkio *b)
{
    struct vhost_user *vu = virtio_blk_transport(b);
    int ret;

    ret = vu_connect_socket(vu, b->path);
    if (ret < 0)
        return ret;
    ret = vu_handshake(vu);
    if (ret == 0)
        ret = virtio_blk_connect(b);
    if (ret < 0) {
        close(vu->sock);
        vu->sock = -1;
        return ret;
    }
    b->needs_mem_regions = true;
    b->needs_mem_region_fd = true;
    /* The backend maps every region and may keep its pages resident (a
     * backend using VFIO or DMA pins them): a caller must not assume it
     * can reclaim region memory, as libblkio reports. */
    b->may_pin_mem_regions = true;
    return 0;
}

static const struct blkio_property vu_props[] = {
    BLKIO_PROP("path", PROP_STR, ST_ALL, ST_CREATED, path, NULL),
    VIRTIO_BLK_NO_FD_PROP,
    VIRTIO_BLK_QUEUE_PROPS,
};

const struct blkio_driver blkio_driver_virtio_blk_vhost_user = {
    .name                      = "virtio-blk-vhost-user",
    .props                     = vu_props,
    .nprops                    = sizeof(vu_props) / sizeof(vu_props[0]),
    .create                    = vu_drv_create,
    .connect                   = vu_drv_connect,
    VIRTIO_BLK_DRIVER_OPS,
};
