/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nbdkit-blkio-plugin: the queue pool.
 *
 * The pool holds one struct bio_queue per libblkio queue set up after
 * blkio_start(), each with its slots (and a bounce region when the driver
 * needs one) and, except for private queues, a completion thread.  Which
 * queue an nbdkit thread uses is decided once, on its first request
 * (bio_my_queue).
 */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <dirent.h>
#include <sys/eventfd.h>
#include <sys/resource.h>

#include "blkio-plugin.h"

struct bio_queue *bio_queues;
int bio_nqueues;
int bio_stop_fd = -1;
atomic_bool bio_stopping;

static atomic_uint bio_next_queue;
static __thread struct bio_queue *bio_thread_queue;
static pthread_key_t bio_thread_key;    /* its destructor counts users down */
static bool bio_have_thread_key;
/* Threads inside bio_thread_exit: nbdkit unloads the plugin once its
 * connection threads returned, which is before their thread-specific
 * data destructors ran (as in lend.c). */
static atomic_int bio_pool_exiting;

/* Threads beyond the pool's queues get a queue of their own (io_uring
 * drivers without num-queues=): see bio_my_queue. */
static bool bio_private_queues;
static unsigned bio_private_entries;
static pthread_mutex_t bio_private_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bio_queue *bio_private_list;
/* The instance is being replaced: no queue may be added to it. */
static bool bio_swapping;
/* Private queues stopped for want of file descriptors (said once). */
static bool bio_fds_warned;

/* A queue is 64-byte aligned (its lock and counters on cache lines of
 * their own): allocate it so, zeroed. */
static struct bio_queue *
bio_queue_alloc (size_t n)
{
  struct bio_queue *bq = aligned_alloc (_Alignof (struct bio_queue),
                                        n * sizeof *bq);

  if (bq)
    memset (bq, 0, n * sizeof *bq);
  return bq;
}

/* Bytes of bounce chunk slot k of bq. */
static size_t
bio_chunk_size (const struct bio_queue *bq, unsigned k)
{
  return k < BIO_BOUNCE_SLOTS || bq->small_cap == 0
    ? BIO_BOUNCE_CHUNK : BIO_SMALL_CHUNK;
}

/* Give queue bq its bounce region and carve it into the slots' chunks:
 * the large ones first, then the small ones. */
static int
bio_queue_bounce_init (struct bio_queue *bq)
{
  size_t size = 0, off = 0;
  unsigned k;
  int r;

  for (k = 0; k < bq->nslots; k++)
    size += bio_chunk_size (bq, k);
  r = blkio_alloc_mem_region (bio_b, &bq->region, size);
  if (r < 0) {
    nbdkit_error ("blkio_alloc_mem_region: %zu bytes for queue %d: %s",
                  size, bq->index, blkio_get_error_msg ());
    return -1;
  }
  bq->have_region = true;
  if (bio_needs_mem_regions) {
    bio_regions_lock ();
    r = blkio_map_mem_region (bio_b, &bq->region);
    bio_regions_unlock ();
    if (r < 0) {
      nbdkit_error ("blkio_map_mem_region: queue %d: %s",
                    bq->index, blkio_get_error_msg ());
      return -1;
    }
    bq->region_mapped = true;
  }
  for (k = 0; k < bq->nslots; k++) {
    size_t chunk = bio_chunk_size (bq, k);

    bq->slots[k].bounce = (char *) bq->region.addr + off;
    bq->slots[k].small = chunk == BIO_SMALL_CHUNK;
    bq->slots[k].cap = bq->slots[k].small ? bq->small_cap
      : (uint32_t) bio_round_down (BIO_BOUNCE_CHUNK, bio_req_align);
    off += chunk;
  }
  return 0;
}

/* Bind bq to libblkio queue i of the current instance: its completion
 * fd, its bounce region, every slot free.  Called at set-up and, with the
 * lock held, when the instance was re-created. */
static int
bio_queue_bind (struct bio_queue *bq, int i)
{
  unsigned k;

  bq->index = i;
  bq->q = blkio_get_queue (bio_b, i);
  if (bq->q == NULL) {
    nbdkit_error ("blkio_get_queue: %d: %s", i, blkio_get_error_msg ());
    return -1;
  }
  bq->fd = blkioq_get_completion_fd (bq->q);
  if (bq->fd < 0) {
    nbdkit_error ("blkioq_get_completion_fd: queue %d: %s",
                  i, blkio_get_error_msg ());
    return -1;
  }
  /* Nobody waits on it yet (see bio_fd_arm). */
  blkioq_set_completion_fd_enabled (bq->q, false);
  bq->fd_armed = false;
  if (bio_have_bounce && bio_queue_bounce_init (bq) == -1)
    return -1;
  bq->free_slots = bq->free_small = NULL;
  for (k = bq->nslots; k-- > 0;) {
    struct bio_slot *s = &bq->slots[k];

    s->state = BIO_SLOT_FREE;
    s->owner = NULL;
    bio_put_slot (bq, s);
  }
  bq->inflight = bq->unharvested = 0;
  return 0;
}

/* Set up libblkio queue i (after blkio_start()) as bq. */
static int
bio_queue_init (struct bio_queue *bq, int i, unsigned entries)
{
  pthread_mutex_init (&bq->lock, NULL);
  bq->nslots = entries;
  if (bio_have_bounce) {
    /* With bounce buffers a slot is a chunk, so fewer of them; small
     * chunks only where a small piece still holds a whole block. */
    bq->small_cap = (uint32_t) bio_round_down (BIO_SMALL_CHUNK,
                                               bio_req_align);
    if (bq->nslots > BIO_BOUNCE_MAX_SLOTS)
      bq->nslots = BIO_BOUNCE_MAX_SLOTS;
    if (bq->small_cap == 0 && bq->nslots > BIO_BOUNCE_SLOTS)
      bq->nslots = BIO_BOUNCE_SLOTS;
  }
  bq->slots = calloc (bq->nslots, sizeof *bq->slots);
  if (bq->slots == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  return bio_queue_bind (bq, i);
}

/* Give back bq's bounce region (to the instance it came from). */
static void
bio_queue_release (struct bio_queue *bq)
{
  bio_regions_lock ();
  if (bq->region_mapped)
    blkio_unmap_mem_region (bio_b, &bq->region);
  if (bq->have_region)
    blkio_free_mem_region (bio_b, &bq->region);
  bq->region_mapped = bq->have_region = false;
  bio_regions_unlock ();
}

/* Release what bio_queue_init set up (not the libblkio queue itself). */
static void
bio_queue_free (struct bio_queue *bq)
{
  bio_queue_release (bq);
  free (bq->slots);
  pthread_mutex_destroy (&bq->lock);
}

/* A thread that exits no longer uses its queue (all of its requests
 * have completed by now). */
static void
bio_thread_exit (void *arg)
{
  struct bio_queue *bq = arg;

  atomic_fetch_add (&bio_pool_exiting, 1);
  atomic_fetch_sub (&bq->users, 1);
  atomic_fetch_sub (&bio_pool_exiting, 1);
}

/* Set up nq queues of entries slots each after blkio_start().
 * private_queues: threads beyond them may get queues of their own. */
int
bio_pool_create (int nq, unsigned entries, bool private_queues)
{
  int i;

  bio_private_queues = private_queues;
  bio_private_entries = entries;
  bio_queues = bio_queue_alloc (nq);
  if (bio_queues == NULL) {
    nbdkit_error ("aligned_alloc: %d queues: %m", nq);
    return -1;
  }
  /* Without the key no queue ever counts as private: correct, slower. */
  bio_have_thread_key =
    pthread_key_create (&bio_thread_key, bio_thread_exit) == 0;
  for (i = 0; i < nq; i++) {
    bio_nqueues = i + 1;        /* so that unload cleans up this one too */
    if (bio_queue_init (&bio_queues[i], i, entries) == -1)
      return -1;
  }
  return 0;
}

/* At unload: wait (up to a second) until no thread-specific data
 * destructor of the plugin is still running, counted by *exiting; the
 * key is deleted first, so that none starts. */
void
bio_wait_exiting (atomic_int *exiting)
{
  for (int i = 0; i < 1000 && atomic_load (exiting) > 0; i++)
    usleep (1000);
}

/* Free the pool at unload (completion threads stopped, nbdkit's
 * connection threads returned).  Once the key is deleted no destructor
 * starts; those already running are waited for (up to a second: they
 * only count a queue's users down). */
void
bio_pool_destroy (void)
{
  int i;

  bio_pool_stop_threads ();
  if (bio_have_thread_key) {
    pthread_key_delete (bio_thread_key);
    bio_have_thread_key = false;
  }
  bio_wait_exiting (&bio_pool_exiting);
  if (bio_queues) {
    for (i = 0; i < bio_nqueues; i++)
      bio_queue_free (&bio_queues[i]);
    free (bio_queues);
    bio_queues = NULL;
  }
  bio_nqueues = 0;
  while (bio_private_list) {
    struct bio_queue *bq = bio_private_list;

    bio_private_list = bq->next_private;
    bio_queue_free (bq);
    free (bq);
  }
}

/* Start one completion thread per pool queue. */
int
bio_pool_start_threads (void)
{
  int i, err;

  atomic_store (&bio_stopping, false);
  bio_stop_fd = eventfd (0, EFD_CLOEXEC);
  if (bio_stop_fd == -1) {
    nbdkit_error ("eventfd: %m");
    return -1;
  }
  for (i = 0; i < bio_nqueues; i++) {
    err = pthread_create (&bio_queues[i].thread, NULL,
                          bio_completion_thread, &bio_queues[i]);
    if (err) {
      errno = err;
      nbdkit_error ("pthread_create: completion thread %d: %m", i);
      return -1;
    }
    bio_queues[i].have_thread = true;
  }
  return 0;
}

/* Sleep a millisecond (a rare path waiting for other threads). */
static void
bio_pause (void)
{
  struct timespec ts = { .tv_sec = 0, .tv_nsec = 1000000 };

  nanosleep (&ts, NULL);
}

/* Whether a thread works on bq's slots or completion fd without the lock
 * (copying into or out of a bounce chunk, waiting on the fd); called with
 * the lock held. */
static bool
bio_queue_busy (struct bio_queue *bq)
{
  unsigned k;

  if (bq->owner_reaping)
    return true;
  for (k = 0; k < bq->nslots; k++)
    if (bq->slots[k].state == BIO_SLOT_FILLING ||
        bq->slots[k].state == BIO_SLOT_HARVESTED)
      return true;
  return false;
}

/* Wait until nobody works on bq without its lock; returns with the lock
 * held. */
static void
bio_queue_quiesce (struct bio_queue *bq)
{
  pthread_mutex_lock (&bq->lock);
  while (bio_queue_busy (bq)) {
    pthread_mutex_unlock (&bq->lock);
    bio_pause ();
    pthread_mutex_lock (&bq->lock);
  }
}

/* Every queue: the pool's, then the private ones (whose list only grows
 * while the instance is not being swapped). */
static struct bio_queue *
bio_next (struct bio_queue *bq)
{
  if (bq == NULL)
    return bio_nqueues ? &bio_queues[0] : bio_private_list;
  if (!bq->private && bq + 1 < bio_queues + bio_nqueues)
    return bq + 1;
  return bq->private ? bq->next_private : bio_private_list;
}

/* Wait until nobody works on any queue without its lock. */
static void
bio_pool_quiesce (void)
{
  struct bio_queue *bq;

  for (bq = bio_next (NULL); bq; bq = bio_next (bq)) {
    bio_queue_quiesce (bq);
    pthread_mutex_unlock (&bq->lock);
  }
}

/* Stop the completion threads (idempotent); once they are gone and
 * nobody waits on a completion fd any more, close the stop fd. */
void
bio_pool_stop_threads (void)
{
  uint64_t one = 1;
  int i;

  /* Without threads (a rebind that failed before starting them) the
   * queues are still quiesced: a request thread may be filling a slot of
   * a queue that was bound again. */
  if (bio_stop_fd == -1) {
    bio_pool_quiesce ();
    return;
  }
  atomic_store (&bio_stopping, true);
  if (write (bio_stop_fd, &one, sizeof one) == -1)
    nbdkit_debug ("write stop fd: %m");
  for (i = 0; i < bio_nqueues; i++) {
    pthread_mutex_lock (&bio_queues[i].lock);
    atomic_fetch_add (&bio_queues[i].ct_word, 1);
    pthread_mutex_unlock (&bio_queues[i].lock);
    bio_futex_wake (&bio_queues[i].ct_word, 1);
  }
  for (i = 0; i < bio_nqueues; i++) {
    if (bio_queues[i].have_thread)
      pthread_join (bio_queues[i].thread, NULL);
    bio_queues[i].have_thread = false;
  }
  bio_pool_quiesce ();
  close (bio_stop_fd);
  bio_stop_fd = -1;
}

/* Take every queue down before the instance is replaced: fail what is in
 * flight with err (drain: first let it finish, for up to 10 s), stop the
 * completion threads, and wait until nobody uses a queue. */
void
bio_pool_take_down (int err, const char *msg, bool drain)
{
  struct bio_queue *bq;
  int waited = 0;

  pthread_mutex_lock (&bio_private_lock);
  bio_swapping = true;
  pthread_mutex_unlock (&bio_private_lock);
  for (bq = bio_next (NULL); bq; bq = bio_next (bq)) {
    pthread_mutex_lock (&bq->lock);
    while (drain && bq->inflight > 0 && waited++ < 10000) {
      pthread_mutex_unlock (&bq->lock);
      bio_pause ();
      pthread_mutex_lock (&bq->lock);
    }
    bio_queue_die (bq, err, msg);
    pthread_mutex_unlock (&bq->lock);
  }
  bio_pool_stop_threads ();
}

/* Give the queues' bounce regions back to the instance about to be
 * destroyed. */
void
bio_pool_release (void)
{
  struct bio_queue *bq;

  for (bq = bio_next (NULL); bq; bq = bio_next (bq))
    bio_queue_release (bq);
}

/* Bind every queue to the re-created instance (started with as many
 * queues as before; the private ones are added again) and start the
 * completion threads. */
int
bio_pool_rebind (void)
{
  struct bio_queue *bq;
  int r = 0, index;

  for (bq = bio_next (NULL); bq && r == 0; bq = bio_next (bq)) {
    index = bq->private ? blkio_add_queue (bio_b) : bq->index;
    pthread_mutex_lock (&bq->lock);
    if (index < 0) {
      nbdkit_error ("blkio_add_queue: %s", blkio_get_error_msg ());
      r = -1;
    }
    else if ((r = bio_queue_bind (bq, index)) == 0) {
      bq->dead = 0;
      bq->ct_parked = bq->private;
      bq->owner_reaping = false;
      bq->reaper = NULL;
    }
    pthread_mutex_unlock (&bq->lock);
  }
  if (r == 0)
    r = bio_pool_start_threads ();
  pthread_mutex_lock (&bio_private_lock);
  bio_swapping = r != 0;
  pthread_mutex_unlock (&bio_private_lock);
  return r;
}

/* Claim bq for the calling thread alone if nobody uses it. */
static bool
bio_claim (struct bio_queue *bq)
{
  unsigned idle = 0;

  return atomic_compare_exchange_strong (&bq->users, &idle, 1);
}

/* File descriptors private queues leave free: half of the process's
 * limit, at least BIO_FD_RESERVE.  A private queue takes two (a ring and
 * an eventfd) and every connection one (its socket), so the queues stop
 * well before nbdkit's accept() fails with EMFILE; nbdkit 1.32 then loops
 * on accept(), printing an error each time, and the connection never gets
 * an answer.  Threads beyond share the pool's queues. */
#define BIO_FD_RESERVE 64
/* Descriptors a new connection must leave free (bio_fds_exhausted); a
 * quarter of the limit where that is less. */
#define BIO_FD_LAST 32

/* How many descriptors the process has open, and its limit; false if
 * either cannot be told (no limit, no /proc).  Counted only when a queue
 * is about to be added or a connection opens, never per request. */
static bool
bio_fds_count (rlim_t *used, rlim_t *limit)
{
  struct rlimit rl;
  struct dirent *d;
  DIR *dir;

  if (getrlimit (RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
    return false;
  dir = opendir ("/proc/self/fd");
  if (dir == NULL)
    return false;
  *used = 0;
  while ((d = readdir (dir)) != NULL)
    if (d->d_name[0] != '.')
      (*used)++;
  closedir (dir);
  *used = *used > 0 ? *used - 1 : 0;   /* the directory's own, closed now */
  *limit = rl.rlim_cur;
  return true;
}

/* Whether private queues have used their share of the descriptors. */
static bool
bio_fds_low (void)
{
  rlim_t used, limit;

  if (!bio_fds_count (&used, &limit))
    return false;
  if (limit / 2 > BIO_FD_RESERVE)
    return used >= limit / 2;
  return used + BIO_FD_RESERVE >= limit;
}

/* The most queues the pool opens by default under this ulimit -n: a
 * quarter of the limit at two descriptors a queue (a ring or a kick fd,
 * and an eventfd), at least one.  Sixteen io_uring queues hold 42 at
 * ulimit -n 64, and no connection then left BIO_FD_LAST free. */
int
bio_fds_queue_cap (void)
{
  struct rlimit rl;
  rlim_t cap;

  if (getrlimit (RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
    return INT_MAX;
  cap = rl.rlim_cur / 8;
  if (cap < 1)
    return 1;
  return cap > INT_MAX ? INT_MAX : (int) cap;
}

/* Whether a new connection would leave nbdkit fewer than BIO_FD_LAST
 * descriptors: refusing it (and closing its socket) keeps accept() from
 * failing for good; msg says why. */
bool
bio_fds_exhausted (char *msg, size_t len)
{
  rlim_t used, limit;

  if (!bio_fds_count (&used, &limit) ||
      used + (limit / 4 < BIO_FD_LAST ? limit / 4 : BIO_FD_LAST) < limit)
    return false;
  snprintf (msg, len, "%llu of %llu file descriptors in use (ulimit -n): "
            "raise the limit for more connections",
            (unsigned long long) used, (unsigned long long) limit);
  return true;
}

/* A private queue for the calling thread: one a finished thread left, or
 * a new one.  NULL if none can be added (the caller shares a pool queue).
 * Private queues are kept for the next thread, not removed: a ring and
 * its eventfd are set up once, and there are never more than the most
 * threads nbdkit ran at once. */
static struct bio_queue *
bio_private_queue (void)
{
  struct bio_queue *bq;
  int index;

  pthread_mutex_lock (&bio_private_lock);
  for (bq = bio_private_list; bq; bq = bq->next_private)
    if (bio_claim (bq))
      goto out;
  if (bio_swapping)
    goto out;                   /* bq is NULL: share a pool queue */
  if (bio_fds_low ()) {
    /* A queue is a ring and an eventfd at least: sharing costs speed,
     * running out of descriptors costs connections. */
    if (!bio_fds_warned) {
      bio_fds_warned = true;
      nbdkit_debug ("private queues have used their share of the file "
                    "descriptors: further threads share queues instead of "
                    "adding their own (raise ulimit -n for more)");
    }
    goto out;
  }
  bq = bio_queue_alloc (1);
  if (bq == NULL)
    goto out;
  index = blkio_add_queue (bio_b);
  if (index < 0 || bio_queue_init (bq, index, bio_private_entries) == -1) {
    nbdkit_debug ("adding a queue: %s, sharing one",
                  index < 0 ? blkio_get_error_msg () : "failed");
    if (index >= 0) {
      bio_queue_free (bq);
      blkio_remove_queue (bio_b, index);
    }
    free (bq);
    bq = NULL;
    goto out;
  }
  bq->private = true;
  bq->ct_parked = true;         /* there is no completion thread */
  atomic_init (&bq->users, 1);
  bq->next_private = bio_private_list;
  bio_private_list = bq;
 out:
  pthread_mutex_unlock (&bio_private_lock);
  return bq;
}

/* A queue of the calling thread's own: an idle pool queue, else a private
 * one; NULL if neither can be had. */
static struct bio_queue *
bio_own_queue (void)
{
  struct bio_queue *bq = NULL;
  int i;

  for (i = 0; i < bio_nqueues && !bq; i++)
    if (bio_claim (&bio_queues[i]))
      bq = &bio_queues[i];
  if (!bq && bio_private_queues)
    bq = bio_private_queue ();
  /* Without the destructor the thread's exit would go unnoticed: a pool
   * queue then stays counted (shared, but correct); a private queue,
   * which has no completion thread, must never be shared. */
  if (bq && pthread_setspecific (bio_thread_key, bq) != 0) {
    if (bq->private) {
      atomic_fetch_sub (&bq->users, 1);
      bq = NULL;
    }
    else
      atomic_fetch_add (&bq->users, 1);
  }
  return bq;
}

/* A pool queue shared: the one with the fewest users (round robin among
 * equals), so that connections spread evenly over the queues. */
static struct bio_queue *
bio_shared_queue (void)
{
  unsigned n = atomic_fetch_add_explicit (&bio_next_queue, 1,
                                          memory_order_relaxed);
  struct bio_queue *bq = &bio_queues[n % bio_nqueues];
  int i;

  for (i = 0; i < bio_nqueues; i++) {
    struct bio_queue *c = &bio_queues[(n + i) % bio_nqueues];

    if (atomic_load (&c->users) < atomic_load (&bq->users))
      bq = c;
  }

  atomic_fetch_add (&bq->users, 1);
  if (!bio_have_thread_key ||
      pthread_setspecific (bio_thread_key, bq) != 0)
    atomic_fetch_add (&bq->users, 1);   /* never counted down: shared */
  return bq;
}

/*
 * The queue of the calling thread.  A pool queue nobody uses yet, else
 * (io_uring drivers: a queue costs a ring and runs its requests in the
 * caller) a queue of the thread's own, so that every thread of every
 * connection takes the lone-request path; else the least used pool
 * queue.  A thread's exit gives its queue back (bio_thread_exit).
 */
struct bio_queue *
bio_my_queue (void)
{
  if (bio_thread_queue == NULL) {
    struct bio_queue *bq = NULL;

    if (bio_have_thread_key)
      bq = bio_own_queue ();
    if (!bq)
      bq = bio_shared_queue ();
    bio_thread_queue = bq;
  }
  return bio_thread_queue;
}
