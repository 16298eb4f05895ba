/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nbdkit-blkio-plugin: what its parts share.
 *
 *   blkio.c     configuration, --dump-plugin and the NBD callbacks
 *   instance.c  opening the shared libblkio instance, device geometry
 *   pool.c      the queue pool: set-up, which thread uses which queue,
 *               the completion threads' life cycle
 *   request.c   slots, harvesting completions, the completion thread's
 *               loop and the three ways an nbdkit thread waits (bio_run)
 *   reconnect.c re-creating the instance when the device was lost (or
 *               resized), in a background thread
 *   lend.c      nbdkit's request buffer lent to the device (zero-copy=)
 *   errors.c    the errno -> NBD error table
 *
 * One libblkio instance serves every NBD connection; nbdkit worker threads
 * are spread over its queues (see docs/HACKING.md, "The plugin's I/O
 * path").
 */

#ifndef NBDKIT_BLKIO_PLUGIN_H
#define NBDKIT_BLKIO_PLUGIN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <blkio.h>

/* Bounce buffers (only used when the driver needs mapped memory regions or
 * buffers aligned more than nbdkit's are): each queue owns one region,
 * carved into BIO_BOUNCE_SLOTS large chunks of BIO_BOUNCE_CHUNK bytes and,
 * up to BIO_BOUNCE_MAX_SLOTS slots in all, small chunks of
 * BIO_SMALL_CHUNK bytes.  A slot is a request in flight, so the small
 * ones let many small requests (every thread of 8 connections on one
 * queue) run at once without reserving a megabyte each: with 16 slots
 * only, 4 connections of 16 threads waited for slots most of the time.
 * Larger requests are split, never refused. */
#define BIO_BOUNCE_CHUNK (1024 * 1024)
#define BIO_BOUNCE_SLOTS 16
#define BIO_SMALL_CHUNK (64 * 1024)
#define BIO_BOUNCE_MAX_SLOTS 128

/* Default of read-split=: a bounced read larger than this is cut into
 * pieces of this size, queued together (one kick), and each piece is
 * copied out of its bounce chunk as soon as it completes, while the
 * device still works on the others: the copy overlaps the backend's
 * work instead of following all of it. */
#define BIO_READ_SPLIT (256 * 1024)

/* zero-copy= (lend.c): requests of at least BIO_LEND_MIN bytes use
 * nbdkit's own buffer once it is mapped for the device, up to
 * BIO_LEND_MAX_CHUNKS buffers at a time; the memfd behind one is
 * BIO_LEND_SLACK longer than the buffer (nbdkit's largest request). */
#define BIO_LEND_MIN (64 * 1024)
#define BIO_LEND_MAX_CHUNKS 16
#define BIO_LEND_SLACK (64 * 1024 * 1024)
/* ... and only on a device that takes at least this many memory regions
 * (see bio_lend_setup). */
#define BIO_LEND_MIN_REGIONS 16

/* Bounced writes larger than this are copied without the queue lock (it
 * is dropped and taken again); smaller ones are cheaper to copy under it. */
#define BIO_COPY_UNLOCKED (16 * 1024)

/* Completions handed out per blkioq_do_io() call. */
#define BIO_HARVEST 64

/* While requests are in flight, a completion thread whose fd stays silent
 * this long calls blkioq_do_io() anyway: a backend that died without a
 * word is noticed, and a missed notification costs a stall, not a hang. */
#define BIO_POLL_SAFETY_MS 1000

/* Default queue count of the io_uring drivers: nbdkit's default number
 * of worker threads per connection. */
#define BIO_INLINE_QUEUES 16
/* Virtio queues to ask for when each connection is one thread (capped by
 * the device's max-queues): connections beyond share them. */
#define BIO_SERIAL_QUEUES 8

/* ---- configuration (blkio.c) ---- */

/* A KEY=VALUE passed on to libblkio.  pre_err/pre_msg keep the result of
 * the attempt before blkio_connect() so that a later failure can report the
 * more useful of the two messages. */
struct bio_prop {
  char *key;
  char *value;
  int pre_err;
  char *pre_msg;
};

extern char *bio_driver;
extern struct bio_prop *bio_props;
extern size_t bio_nprops;
extern char **bio_gets;
extern size_t bio_ngets;
extern int bio_user_num_queues;         /* 0: choose */
extern bool bio_serialized;             /* each connection's requests in turn */
extern uint64_t bio_read_split;         /* read-split=, 0: off */

/* ---- the shared instance (instance.c) ---- */

extern struct blkio *bio_b;
extern bool bio_readonly;               /* instance opened read-only */
extern bool bio_quiet;                  /* errors opening it to debug */

/* Device geometry, read once after blkio_start(). */
extern uint64_t bio_capacity;
extern uint32_t bio_req_align;          /* >= 1, power of 2 */
extern uint32_t bio_buf_align;          /* >= 1 */
extern uint32_t bio_preferred;
extern uint64_t bio_rw_max;             /* per read/write sub-request */
extern uint64_t bio_zero_max;
extern uint64_t bio_discard_max;
extern uint64_t bio_discard_align;      /* >= bio_req_align */
extern uint64_t bio_discard_offset;
extern bool bio_needs_mem_regions;
extern bool bio_have_bounce;
extern bool bio_zoned;                  /* a zoned device (zoned > 0) */

/* The size served for a device of `size` bytes: whole blocks of
 * request-alignment (a file with direct=true may end in a partial one
 * that no request can reach). */
static inline uint64_t
bio_whole_blocks (uint64_t size)
{
  return size - size % bio_req_align;
}
extern uint64_t bio_zone_size;          /* its zone size, or 0 */

extern int bio_open_instance (void);
extern int bio_restart_instance (bool readonly, bool resized);
extern void bio_close_instance (void);

/* ---- slots, waiters and queues (pool.c, request.c) ---- */

struct bio_waiter;

enum bio_slot_state {
  BIO_SLOT_FREE,
  BIO_SLOT_FILLING,             /* a writer copies into it, unlocked */
  BIO_SLOT_INFLIGHT,            /* owned by libblkio */
  BIO_SLOT_HARVESTED,           /* completed, being finished (copy out) */
  BIO_SLOT_LOST,                /* the queue died with it in flight */
};

/* One request (or sub-request) in flight; its address is the user_data. */
struct bio_slot {
  struct bio_slot *next;        /* free list, or a harvest list */
  struct bio_waiter *owner;
  enum bio_slot_state state;
  int ret;                      /* completion: 0 or negative errno */
  const char *msg;              /* completion: libblkio's message */
  char *bounce;                 /* this slot's bounce chunk, or NULL */
  uint32_t cap;                 /* bytes a bounced piece may use of it */
  bool small;                   /* on the small chunks' free list */
  char *copy_to;                /* read through bounce: destination */
  uint32_t len;
};

/* The state of the request an nbdkit thread runs (one per thread, see
 * bio_thread_waiter in request.c).  Only the queue lock's holder changes
 * it; the owner reads it once remaining is 0 (futex word,
 * release/acquire). */
struct bio_waiter {
  _Atomic uint32_t remaining;           /* pieces in flight */
  /* Futex word the owner sleeps on: bumped when remaining reaches 0 and
   * when the owner is handed the reaping of its queue (lead). */
  _Atomic uint32_t word;
  atomic_bool lead;
  bool sleeping;                        /* on its queue's sleepers list */
  struct bio_waiter *next_sleeper;
  int err;                              /* first error (positive errno) */
  bool lost;                            /* a piece was in flight when the
                                         * queue died (bio_queue_die) */
  char msg[256];
};

struct bio_queue {
  pthread_mutex_t lock;
  struct blkioq *q;
  int index;                            /* libblkio's queue index */
  int fd;                               /* completion fd */
  struct bio_slot *free_slots;          /* large chunks, or all slots */
  struct bio_slot *free_small;          /* small bounce chunks */
  uint32_t small_cap;                   /* their cap, 0 without them */
  struct bio_slot *slots;
  unsigned nslots;
  unsigned inflight;                    /* slots given to libblkio */
  unsigned unharvested;                 /* of those, not yet returned by
                                         * blkioq_do_io() */
  atomic_uint users;                    /* live threads assigned here */
  unsigned slot_waiters;                /* threads waiting for a slot */
  _Atomic uint32_t slot_gen;            /* futex word: slots were freed */
  int dead;                             /* positive errno once dead */
  char dead_msg[256];
  pthread_t thread;                     /* completion thread */
  bool have_thread;
  /* At most one thread waits on the completion fd: the completion thread,
   * or while it is parked (nothing was in flight) the thread of a lone
   * request, which then saves the hand-over. */
  bool ct_parked;
  bool owner_reaping;
  /* The reaping owner's request: finished by another thread, it is woken
   * through the completion fd it polls, not its futex word. */
  struct bio_waiter *reaper;
  /* Owners asleep until their request completes: the reaping owner that
   * leaves hands the reaping to one of them (one wake-up, for a thread
   * that would be woken anyway) instead of to the completion thread. */
  struct bio_waiter *sleepers;
  /* The completion fd is only switched on while somebody waits on it:
   * otherwise every completion would signal it (an eventfd write in the
   * kernel per io_uring CQE) for nobody. */
  bool fd_armed;
  _Atomic uint32_t ct_word;             /* futex word: unpark */
  struct blkio_mem_region region;
  bool have_region, region_mapped;
  /* A queue added for one thread at a time (see bio_my_queue): no
   * completion thread; kept for the next thread once its thread exits. */
  bool private;
  struct bio_queue *next_private;
} __attribute__((aligned(64)));

/* pool.c */
extern struct bio_queue *bio_queues;
extern int bio_nqueues;
extern int bio_stop_fd;                 /* readable: completion threads exit */
extern atomic_bool bio_stopping;

extern int bio_pool_create (int nq, unsigned entries, bool private_queues);
extern void bio_pool_destroy (void);
extern void bio_wait_exiting (atomic_int *exiting);
extern int bio_pool_start_threads (void);
extern void bio_pool_stop_threads (void);
extern struct bio_queue *bio_my_queue (void);
extern void bio_pool_take_down (int err, const char *msg, bool drain);
extern void bio_pool_release (void);
extern int bio_pool_rebind (void);
extern bool bio_fds_exhausted (char *msg, size_t len);
extern int bio_fds_queue_cap (void);

/* ---- requests (request.c) ---- */

enum bio_kind { BIO_READ, BIO_WRITE, BIO_ZEROES, BIO_DISCARD, BIO_FLUSH };

struct bio_op {
  enum bio_kind kind;
  char *buf;
  uint64_t offset;
  uint64_t count;
  uint32_t flags;               /* BLKIO_REQ_* */
  uint64_t max_len;             /* per sub-request, 0 = unlimited */
  bool bounce;
  bool lent;                    /* buf is lent to the device (lend.c) */
  /* The device's epoch (bio_epoch_now) when the last attempt began. */
  unsigned epoch;
  /* On failure: whether a piece was still in the device when its queue
   * died (the device may write to buf later). */
  bool lost;
  /* On failure: what went wrong, in the thread's waiter (valid until the
   * thread's next request; an array here would be zeroed per request). */
  const char *msg;
};

extern int bio_run (struct bio_op *op);
extern void *bio_completion_thread (void *arg);
extern void bio_futex_wake (_Atomic uint32_t *word, int n);
extern void bio_queue_die (struct bio_queue *bq, int err, const char *msg);

/* ---- reconnecting (reconnect.c) ---- */

enum bio_state {
  BIO_UP,                       /* the instance serves requests */
  BIO_LOST,                     /* the device went away: reconnecting */
  BIO_REFRESHING,               /* re-created on purpose (resize, -r) */
};
extern _Atomic int bio_state;
extern bool bio_reconnect;              /* reconnect=, default true */
extern unsigned bio_reconnect_wait_ms;  /* reconnect-wait= */

extern bool bio_errno_is_lost (int err);
extern bool bio_reconnect_kick (void);
extern int bio_wait_up (char *msg, size_t len);
extern int bio_refresh (bool readonly);
extern int bio_reconnect_start (void);
extern void bio_reconnect_stop (void);

/* What a flush covers: the instance it began on, and whether writes were
 * waiting for it. */
struct bio_flush_state {
  unsigned epoch;
  bool covered;
};
extern unsigned bio_losses_seen_at_open (void);
extern unsigned bio_epoch_now (void);
extern bool bio_retry_after_loss (const struct bio_op *op, unsigned *losses);
extern void bio_write_done (unsigned epoch);
extern bool bio_flush_begin (_Atomic unsigned *seen,
                             struct bio_flush_state *fl);
extern bool bio_flush_end (_Atomic unsigned *seen,
                           const struct bio_flush_state *fl, int r);

/* ---- nbdkit's buffers lent to the device (lend.c) ---- */

extern int bio_zero_copy;               /* zero-copy=, -1: auto */

extern bool bio_lend (char *buf, uint64_t count, unsigned *gen);
extern unsigned bio_lend_generation (void);
extern void bio_lend_failed (char *buf);
extern void bio_lend_setup (int nqueues);
extern void bio_lend_after_fork (void);
extern void bio_lend_destroy_instance (struct blkio **b);
extern void bio_lend_unload (void);
extern void bio_regions_lock (void);
extern void bio_regions_unlock (void);

/* ---- errors.c ---- */

extern int bio_nbd_errno (int err);
extern void bio_dump_errno_table (void);

/* ---- small helpers ---- */

static inline bool
bio_is_power_of_2 (uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

/* Round v down to a multiple of align (any align >= 1). */
static inline uint64_t
bio_round_down (uint64_t v, uint64_t align)
{
  return v - v % align;
}

/* The smallest non-zero of a and b (0 means unlimited). */
static inline uint64_t
bio_min_limit (uint64_t a, uint64_t b)
{
  if (a == 0)
    return b;
  if (b == 0)
    return a;
  return a < b ? a : b;
}

/* Put slot s on its queue's free list for its kind of bounce chunk;
 * called with the queue's lock held (or before the queue is in use). */
static inline void
bio_put_slot (struct bio_queue *bq, struct bio_slot *s)
{
  struct bio_slot **list = s->small ? &bq->free_small : &bq->free_slots;

  s->next = *list;
  *list = s;
}

#endif /* NBDKIT_BLKIO_PLUGIN_H */
