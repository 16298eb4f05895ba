/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * internal.h - the contract between the library core and its drivers.
 *
 * The core (blkio.c, properties.c, mem-region.c, queue.c, error.c) owns
 * everything the public API promises independently of the device: the created/connected/started state machine, property
 * access rules and string conversion, memory-region bookkeeping, the queue
 * tables, request validation and the per-queue completion ring that
 * blkioq_do_io() hands completions out of.  A driver (one file in
 * lib/drivers/, or a virtio transport in lib/virtio/) only talks to its device: it fills in
 * the device properties at connect time, turns validated requests into
 * device commands, and reports each one back exactly once with
 * blkioq_complete().
 *
 * Request path:
 *   blkioq_read() & co.  -> core validation (state, read-only, flags,
 *                           alignment, range, mem regions)
 *                        -> driver->queue_request()   (no syscall needed)
 *   blkioq_do_io()       -> driver->process()          (submit everything
 *                           queued since the last call in one go, reap
 *                           device completions into the completion ring,
 *                           wait until min completions are there)
 *                        -> core copies completions out of the ring.
 */
#ifndef BLKIO_INTERNAL_H
#define BLKIO_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

#include "blkio.h"
#include "region-table.h"

#define BLKIO_LIKELY(x)   __builtin_expect(!!(x), 1)
#define BLKIO_UNLIKELY(x) __builtin_expect(!!(x), 0)

enum blkio_state {
    BLKIO_STATE_CREATED,
    BLKIO_STATE_CONNECTED,
    BLKIO_STATE_STARTED,
};

/* Bit masks of states, for property access rules. */
#define ST_CREATED   (1u << BLKIO_STATE_CREATED)
#define ST_CONNECTED (1u << BLKIO_STATE_CONNECTED)
#define ST_STARTED   (1u << BLKIO_STATE_STARTED)
#define ST_ALL       (ST_CREATED | ST_CONNECTED | ST_STARTED)
#define ST_AFTER_CONNECT (ST_CONNECTED | ST_STARTED)

enum blkio_prop_type {
    PROP_BOOL,
    PROP_INT,
    PROP_UINT64,
    PROP_STR,   /* the field is a char * owned by struct blkio */
};

struct blkio;
struct blkio_property;

/* Optional validation hook: called with the converted value before it is
 * stored; return 0 to store it, or a negative errno after blkio_set_error().
 * A hook may store the value itself and return 1 to skip the plain store. */
typedef int (*blkio_prop_set_fn)(struct blkio *b,
                                 const struct blkio_property *p,
                                 const void *value);

struct blkio_property {
    const char *name;
    enum blkio_prop_type type;
    uint8_t readable;           /* ST_* mask */
    uint8_t writable;           /* ST_* mask */
    size_t offset;              /* of the field in struct blkio */
    blkio_prop_set_fn set;      /* NULL: store as is */
};

#define BLKIO_PROP(name_, type_, r_, w_, field_, set_)                       \
    { (name_), (type_), (r_), (w_), offsetof(struct blkio, field_), (set_) }

/* Operations the core hands to drivers.  Read and write always arrive
 * vectored (blkioq_read() is a one-element readv). */
enum blkio_op {
    BLKIO_OP_READ,
    BLKIO_OP_WRITE,
    BLKIO_OP_WRITE_ZEROES,
    BLKIO_OP_DISCARD,
    BLKIO_OP_FLUSH,
    BLKIO_OP_REPORT_ZONES,
    BLKIO_OP_OPEN_ZONE,
    BLKIO_OP_CLOSE_ZONE,
    BLKIO_OP_FINISH_ZONE,
    BLKIO_OP_RESET_ZONE,
    BLKIO_OP_OPEN_ALL_ZONES,
    BLKIO_OP_CLOSE_ALL_ZONES,
    BLKIO_OP_FINISH_ALL_ZONES,
    BLKIO_OP_RESET_ALL_ZONES,
};

/*
 * A validated request.  It lives on the caller's stack: a driver copies what
 * it needs before queue_request() returns.  The iovec array itself (iov)
 * stays valid until the request completes, except for BLKIO_OP_READ/WRITE
 * issued through blkioq_read()/blkioq_write(), where iov points at `single`
 * inside this struct: drivers must copy the iovec (not just the pointer).
 */
struct blkio_request {
    enum blkio_op op;
    uint32_t flags;             /* BLKIO_REQ_* */
    uint64_t start;             /* byte offset; zone offset for zone ops */
    uint64_t len;               /* total bytes (read/write/zeroes/discard) */
    const struct iovec *iov;    /* read/write */
    int iovcnt;
    struct iovec single;
    struct blkio_zone *zones;   /* report zones */
    uint32_t nr_zones;
    void *user_data;
};

struct blkio_driver;

struct blkioq {
    struct blkio *b;
    const struct blkio_driver *drv;
    void *priv;                 /* driver's per-queue state */
    int index;
    bool poll;                  /* poll queue: no completion fd */
    bool completion_fd_enabled;

    /*
     * Completion fd: an eventfd (O_NONBLOCK, O_CLOEXEC) created by the core
     * for regular queues before driver->queue_init(); drivers make the device
     * signal it (io_uring registers it, vhost-user passes it as the call fd).
     * -1 for poll queues.
     */
    int completion_fd;

    /* The single-buffer read/write checks, taken from the instance when
     * the queue is created (the properties behind them are fixed by
     * then): one combined test per request instead of a walk through
     * queue_validate(); anything it does not pass goes the full way, so
     * errors keep their order and messages. */
    uint64_t rw_req_mask;       /* request-alignment - 1 */
    uint64_t rw_buf_mask;       /* buf-alignment - 1 */
    uint64_t rw_max_len;        /* max-transfer, or UINT64_MAX */
    bool rw_write_ok;           /* writes allowed (not read-only) */
    bool rw_needs_region;       /* needs-mem-regions */
    int region_reading;         /* inside a region table lookup
                                   (region-table.h) */

    /* Requests handed out by blkioq_*() and not yet returned by do_io. */
    uint64_t outstanding;

    /* Completion ring: filled by blkioq_complete(), drained by do_io.
     * Power-of-two capacity, grown (rarely, amortized) when needed. */
    struct blkio_completion *cring;
    uint32_t cring_mask;
    uint32_t cring_head;        /* next to hand out */
    uint32_t cring_tail;        /* next free */

    /* A driver completed a request inside do_io without the device
     * signalling the completion fd (io_uring's requests run in the
     * caller): if it is still in the ring when do_io returns, the core
     * signals the fd. */
    bool completed_unsignalled;
};

struct blkio_driver {
    const char *name;

    /* Driver-specific properties (path, fd, num-entries, ...). */
    const struct blkio_property *props;
    size_t nprops;

    /* blkio_create(): set driver defaults, allocate b->priv.  Optional. */
    int (*create)(struct blkio *b);
    /* blkio_connect(): open the device, fill in every device property. */
    int (*connect)(struct blkio *b);
    /* blkio_start(): called before the queues are created.  Optional. */
    int (*start)(struct blkio *b);
    /* blkio_destroy(): after all queues are destroyed and all memory regions
     * unmapped.  The driver closes b->fd if it owns it.  Optional. */
    void (*destroy)(struct blkio *b);

    /* Called by blkio_map_mem_region()/unmap after the core's own checks.
     * Optional. */
    int (*map_mem_region)(struct blkio *b,
                          const struct blkio_mem_region *region);
    void (*unmap_mem_region)(struct blkio *b,
                             const struct blkio_mem_region *region);
    /* blkio_destroy(): unmap all n regions at once (a device that takes
     * its mappings as a whole is told once, not n times).  Optional:
     * unmap_mem_region() per region otherwise. */
    void (*unmap_all_mem_regions)(struct blkio *b,
                                  const struct blkio_mem_region *regions,
                                  size_t n);

    /* Per queue: q->b, q->index, q->poll and q->completion_fd are set. */
    int (*queue_init)(struct blkioq *q);
    void (*queue_destroy)(struct blkioq *q);

    /*
     * Queue a validated request.  The core has checked state, read-only,
     * flags per operation, request-alignment, buf-alignment, capacity,
     * max-transfer and (with needs-mem-regions) that buffers lie in mapped
     * regions; it does NOT check iovcnt against max-segments or segment
     * lengths against max-segment-len: drivers enforce or split those.  Return 0 when the driver owns it (it will
     * call blkioq_complete() exactly once for it, maybe already has), or a
     * negative errno for the core to complete it with.  Must not wait for
     * the device.
     */
    int (*queue_request)(struct blkioq *q, const struct blkio_request *req);

    /*
     * Submit everything queued, move device completions into the completion
     * ring with blkioq_complete(), and wait until at least `min` completions
     * are in the ring (blkioq_ring_count()).  deadline is absolute
     * CLOCK_MONOTONIC or NULL for no limit; sig, when non-NULL, is the
     * signal mask to wait with (do_io_interruptible), and the wait returns
     * -EINTR when a signal arrives.  Returns 0, -ETIME, -EINTR or another
     * negative errno after blkio_set_error().
     */
    int (*process)(struct blkioq *q, int min, const struct timespec *deadline,
                   const sigset_t *sig);

    /* Optional: suppress/enable completion fd notifications.  Returns
     * whether completions are waiting that the device will not signal
     * (enabling: they arrived while it was off); the core signals them. */
    bool (*set_completion_fd_enabled)(struct blkioq *q, bool enable);

    /* Optional: called before property p is read after connect, so that a
     * value that can change under the instance (a file's size) is
     * current. */
    void (*refresh_property)(struct blkio *b, const struct blkio_property *p);
};

/*
 * The instance.  Device properties are plain fields so that the property
 * table can address them; drivers fill them in at connect.
 */
struct blkio {
    const struct blkio_driver *drv;
    void *priv;                 /* driver's instance state */
    enum blkio_state state;
    bool destroying;            /* blkio_destroy() is tearing it down */

    /* Available after create */
    char *driver_name;
    bool can_add_queues;
    bool read_only;
    char *path;
    int fd;                     /* -1 unless set or opened */
    bool direct;

    /* Available after connect: device */
    uint64_t capacity;
    int max_queues;
    int num_queues;             /* default 1 */
    int num_poll_queues;        /* default 0 */
    bool supports_poll_queues;

    /* Memory regions */
    uint64_t max_mem_regions;
    bool may_pin_mem_regions;
    bool fixed_buffers;         /* io_uring drivers: regions pinned as
                                 * fixed buffers (opt-in, see blkio(3)) */
    uint64_t mem_region_alignment;
    bool needs_mem_regions;
    bool needs_mem_region_fd;

    /* All requests */
    int optimal_io_alignment;
    int optimal_io_size;
    int request_alignment;
    bool flush_needed;

    /* Read and write */
    int buf_alignment;
    bool can_grow;
    int max_segments;
    int max_segment_len;
    int max_transfer;
    int optimal_buf_alignment;
    bool supports_fua_natively;

    /* Write zeroes and discard */
    uint64_t max_write_zeroes_len;
    int discard_alignment;
    int discard_alignment_offset;
    uint64_t max_discard_len;

    /* Driver-specific, used by several drivers */
    int num_entries;            /* io_uring, nvme-io_uring */
    int queue_size;             /* virtio-blk-* */
    int max_queue_size;         /* virtio-blk-* */

    /* Zoned storage (nvme-io_uring) */
    int zoned;
    int max_active_zones;
    int max_open_zones;
    uint64_t zone_size;
    uint64_t nr_zones;
    bool append_support;
    uint64_t zone_append_max_bytes;

    /* Memory regions mapped into the instance */
    struct blkio_mem_region *regions;
    size_t nregions;
    size_t regions_cap;
    struct region_table region_tab;     /* the same, for the I/O path */

    /* Regions from blkio_alloc_mem_region() not yet freed */
    struct blkio_mem_region *allocs;
    size_t nallocs;
    size_t allocs_cap;

    /* Queues; a removed queue leaves NULL (indices never shift) until
     * blkio_add_queue() reuses the lowest such index */
    struct blkioq **queues;
    int nqueues;
    struct blkioq **poll_queues;
    int npoll_queues;
};

/* ---- Services the core offers to drivers ---- */

/* Set the calling thread's error message; returns neg_errno. */
int blkio_set_error(int neg_errno, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Clear it (successful calls leave the previous message alone). */
void blkio_clear_error(void);

/* Report one request's result.  error_msg must outlive the completion's
 * hand-out (use a string literal or per-queue storage); NULL allowed. */
void blkioq_complete(struct blkioq *q, void *user_data, int ret,
                     const char *error_msg);

/* Property hook shared by drivers: the int must be > 0 (num-entries). */
int blkio_prop_set_positive_int(struct blkio *b,
                                const struct blkio_property *p,
                                const void *value);

/* Property hook: the int must be >= 0 (num-queues, and "fd", which every
 * driver refuses when negative: QEMU probes for fd support with -1 and
 * expects -EINVAL). */
int blkio_prop_set_nonneg_int(struct blkio *b,
                              const struct blkio_property *p,
                              const void *value);

/* Complete a request that the device will never see (refused, or finished
 * without the device) and wake event-driven callers, since the device will
 * not signal the completion fd for it. */
void blkioq_fail(struct blkioq *q, void *user_data, int ret, const char *msg);

/* Signal the completion fd (regular queues; no-op on poll queues). */
void blkioq_notify(struct blkioq *q);

/* Completions waiting in the ring. */
static inline uint32_t blkioq_ring_count(const struct blkioq *q)
{
    return q->cring_tail - q->cring_head;
}

/* Is [addr, addr+len) inside one mapped region?  The I/O path's lookup,
 * safe against blkio_map_mem_region() on another thread. */
static inline bool blkioq_in_mem_region(struct blkioq *q, const void *addr,
                                        size_t len)
{
    return region_table_contains(&q->b->region_tab, &q->region_reading,
                                 addr, len);
}

/* After a change of a region table: free its retired copies if no queue
 * is inside a lookup (region-table.h). */
void blkio_region_table_reclaim(struct blkio *b, struct region_table *t);

/* Absolute CLOCK_MONOTONIC time to a relative timeout (0 if past). */
void blkio_deadline_remaining(const struct timespec *deadline,
                              struct timespec *left);
/* Sleep ns nanoseconds (less than a second), but not past deadline (NULL:
 * none): the pause before trying again what the kernel refused for now. */
void blkio_pause(long ns, const struct timespec *deadline);

/* Drivers, each defined in its own file. */
extern const struct blkio_driver blkio_driver_io_uring;
extern const struct blkio_driver blkio_driver_nvme_io_uring;
extern const struct blkio_driver blkio_driver_virtio_blk_vhost_user;
extern const struct blkio_driver blkio_driver_virtio_blk_vhost_vdpa;
extern const struct blkio_driver blkio_driver_virtio_blk_vfio_pci;

#endif /* BLKIO_INTERNAL_H */
