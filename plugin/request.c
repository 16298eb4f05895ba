/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nbdkit-blkio-plugin: running a request on a queue, and waiting for it.
 *
 * Per queue, a mutex is held only to enqueue, submit and hand out
 * completions; bounce-buffer copies happen outside it.  Each pool queue
 * has a completion thread that blocks on the queue's completion fd.
 * Whoever harvests a completion (that thread, or a submitter whose
 * blkioq_do_io() returned it) finishes it: copies a bounced read out,
 * frees the slot and, once the last piece of a request is done, wakes its
 * owner with a futex on the owner's own word.  A waiting nbdkit thread
 * therefore sleeps exactly once per request and never touches the queue
 * lock again after submitting, unless it is handed the reaping.  The
 * completion thread parks while its queue is idle; a request that finds
 * the queue idle waits on the completion fd itself, which saves the
 * hand-over (at most one thread ever waits on a completion fd), and once
 * its own request is done hands that wait to an owner still asleep, which
 * has to wake up anyway.  Every request and sub-request is described by a
 * preallocated slot, so the I/O path does not allocate.
 *
 * If blkioq_do_io() itself fails (the backend is gone, the queue is
 * broken), the queue is dead: every request in flight on it fails at once
 * with that error, and so does every later request on it.
 */

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#include "blkio-plugin.h"

/* A thread's waiter outlives each request: the thread that finishes the
 * last piece may still be making its futex wake on `remaining` after the
 * owner saw 0 and returned.  On the owner's stack that wake would hit
 * memory that is no longer the owner's; here it is at worst a spurious
 * wake-up of the thread's next wait, which rechecks its condition. */
static __thread struct bio_waiter bio_thread_waiter;

static long
bio_futex (_Atomic uint32_t *word, int op, uint32_t val)
{
  return syscall (SYS_futex, word, op, val, NULL, NULL, 0);
}

/* Sleep while *word == val (returns at once if it already differs). */
static void
bio_futex_wait (_Atomic uint32_t *word, uint32_t val)
{
  bio_futex (word, FUTEX_WAIT_PRIVATE, val);
}

/* The word may belong to a waiter that has already seen the new value and
 * returned: a stray wake of whatever now sleeps on that address is
 * harmless, since every wait here rechecks its condition. */
void
bio_futex_wake (_Atomic uint32_t *word, int n)
{
  bio_futex (word, FUTEX_WAKE_PRIVATE, n);
}

/* Record the first error of a request; called with the queue lock held. */
static void
bio_set_err (struct bio_waiter *w, int err, const char *msg)
{
  if (w->err)
    return;
  w->err = err;
  snprintf (w->msg, sizeof w->msg, "%s",
            msg && msg[0] ? msg : strerror (err));
}

/* w's request is complete: take it off the sleepers and bump its futex
 * word; called with the lock held.  Returns the word to wake. */
static _Atomic uint32_t *
bio_waiter_done (struct bio_queue *bq, struct bio_waiter *w)
{
  uint64_t one = 1;

  /* The reaper sleeps in poll() on the completion fd (an eventfd): an
   * event there, spurious for libblkio, which allows them. */
  if (w == bq->reaper && write (bq->fd, &one, sizeof one) == -1)
    nbdkit_debug ("waking the reaper through the completion fd: %m");
  if (w->sleeping) {
    struct bio_waiter **pp = &bq->sleepers;

    while (*pp != w)
      pp = &(*pp)->next_sleeper;
    *pp = w->next_sleeper;
    w->sleeping = false;
  }
  atomic_fetch_add (&w->word, 1);
  return &w->word;
}

/* Count one piece of w as finished; called with the queue lock held (as
 * every change of remaining is).  Returns w's futex word if that was the
 * last piece and w must be woken (wake: w is not the caller), else NULL.
 * The decrement that completes the request is the last access to w: its
 * owner may return the moment it sees 0, without the lock, and its
 * thread may exit and free w.  So w leaves the sleepers and its word is
 * bumped first; the owner rechecks remaining after every wake-up, and the
 * futex wake after the lock is dropped is harmless on any address. */
static _Atomic uint32_t *
bio_piece_done (struct bio_queue *bq, struct bio_waiter *w, bool wake)
{
  _Atomic uint32_t *word = NULL;

  if (wake && atomic_load_explicit (&w->remaining, memory_order_relaxed) == 1)
    word = bio_waiter_done (bq, w);
  atomic_fetch_sub_explicit (&w->remaining, 1, memory_order_release);
  return word;
}

/* Nothing more can be expected from this queue (blkioq_do_io() failed, or
 * the device is being reconnected): fail every request in flight and every
 * request to come until the queue is bound to a new instance
 * (bio_pool_rebind); the slots stay lost until then, since libblkio may
 * still own their buffers.  Called with the lock held; the owners are
 * woken here (rare path).
 *
 * Bounce chunks are not reused before the instance is destroyed, so a
 * device that still writes to one harms nobody.  A zero-copy read
 * (io_uring) that the kernel completes later still lands in nbdkit's
 * buffer: waiting for it instead would mean waiting on a queue that no
 * longer reports anything, i.e. forever, so failing the request is the
 * lesser evil. */
void
bio_queue_die (struct bio_queue *bq, int err, const char *msg)
{
  unsigned k;

  if (bq->dead)
    return;
  bq->dead = err;
  snprintf (bq->dead_msg, sizeof bq->dead_msg, "%s",
            msg && msg[0] ? msg : strerror (err));
  for (k = 0; k < bq->nslots; k++) {
    struct bio_slot *s = &bq->slots[k];
    struct bio_waiter *w = s->owner;
    _Atomic uint32_t *word;

    if (s->state != BIO_SLOT_INFLIGHT)
      continue;
    s->state = BIO_SLOT_LOST;
    s->owner = NULL;
    bq->inflight--;
    bq->unharvested--;
    w->lost = true;
    bio_set_err (w, err, bq->dead_msg);
    word = bio_piece_done (bq, w, true);
    if (word)
      bio_futex_wake (word, 1);
  }
  /* Threads waiting for a slot must see the queue die. */
  atomic_fetch_add (&bq->slot_gen, 1);
  bio_futex_wake (&bq->slot_gen, INT_MAX);
}

/* blkioq_do_io() failed with err: the queue is dead, and the instance is
 * re-created in the background, whatever err says (unless reconnect=
 * is off).  A queue that failed for another reason than a lost device
 * is not used again either: without a new instance it would fail the
 * requests of every later connection given it. */
static void
bio_do_io_failed (struct bio_queue *bq, int err, const char *msg)
{
  char buf[256];
  bool lost = bio_reconnect_kick ();

  snprintf (buf, sizeof buf, "blkioq_do_io: %s",
            msg && msg[0] ? msg : strerror (err));
  bio_queue_die (bq, err, buf);
  nbdkit_error ("queue %d failed, its requests fail %s: %s", bq->index,
                lost ? "until the device is reconnected" : "from now on",
                bq->dead_msg);
}

/* Submit what is queued and take every completion off the queue, waiting
 * until there are at least min; called with the lock held.  Returns the
 * completed slots (state HARVESTED) as a list for bio_finish(), or NULL. */
static struct bio_slot *
bio_harvest (struct bio_queue *bq, int min)
{
  struct blkio_completion c[BIO_HARVEST];
  struct bio_slot *list = NULL, **tail = &list;
  int n, i;

  if (bq->dead)
    return NULL;
  do {
    /* No timeout: waiting inside libblkio loses no wake-up (unlike a
     * completion fd read at the wrong moment), a peer that hangs up fails
     * the call, and a timeout would cost two clock reads per request. */
    n = blkioq_do_io (bq->q, c, min, BIO_HARVEST, NULL);
    if (n == -EINTR || n == -EAGAIN)
      break;                    /* transient: the next call retries */
    if (n < 0) {
      bio_do_io_failed (bq, -n, blkio_get_error_msg ());
      break;
    }
    for (i = 0; i < n; i++) {
      struct bio_slot *s = c[i].user_data;

      /* A request that failed because the device went away: reconnect. */
      if (c[i].ret < 0 && bio_errno_is_lost (-c[i].ret))
        bio_reconnect_kick ();
      s->state = BIO_SLOT_HARVESTED;
      s->ret = c[i].ret;
      s->msg = c[i].ret < 0 ? c[i].error_msg : NULL;
      s->next = NULL;
      *tail = s;
      tail = &s->next;
    }
    bq->unharvested -= n;
    min = 0;
  } while (n == BIO_HARVEST);
  return list;
}

/* Give a finished slot back and count its piece down; called with the
 * lock held.  Returns the futex word to wake if that completed a request
 * other than self's (self, the caller, needs no wake-up: that would be a
 * futex syscall per request on the lone-request path), else NULL. */
static _Atomic uint32_t *
bio_release_slot (struct bio_queue *bq, struct bio_slot *s,
                  const struct bio_waiter *self)
{
  struct bio_waiter *w = s->owner;

  if (s->ret < 0)
    bio_set_err (w, -s->ret, s->msg);
  s->state = BIO_SLOT_FREE;
  s->owner = NULL;
  bio_put_slot (bq, s);
  bq->inflight--;
  return bio_piece_done (bq, w, w != self);
}

/* Finish harvested slots: copy bounced reads out WITHOUT the queue lock
 * (the slots are ours until freed), then, with the lock, free the slots
 * and count the pieces down; wake the owners that are complete after
 * dropping the lock, except self (the caller's request, or NULL).  Called
 * and returns without the lock. */
static void
bio_finish (struct bio_queue *bq, struct bio_slot *list,
            const struct bio_waiter *self)
{
  _Atomic uint32_t *wake[BIO_HARVEST];
  unsigned nwake = 0;
  bool wake_slots = false;
  struct bio_slot *s, *next;

  for (s = list; s; s = s->next)
    if (s->copy_to && s->ret == 0)
      memcpy (s->copy_to, s->bounce, s->len);

  while (list) {
    pthread_mutex_lock (&bq->lock);
    for (s = list; s && nwake < BIO_HARVEST; s = next) {
      _Atomic uint32_t *word;

      next = s->next;
      word = bio_release_slot (bq, s, self);
      if (word)
        wake[nwake++] = word;
    }
    list = s;
    wake_slots = bq->slot_waiters > 0;
    if (wake_slots)
      atomic_fetch_add (&bq->slot_gen, 1);
    pthread_mutex_unlock (&bq->lock);

    while (nwake)
      bio_futex_wake (wake[--nwake], 1);
    if (wake_slots)
      bio_futex_wake (&bq->slot_gen, INT_MAX);
  }
}

/* bio_finish() for slots with nothing to copy out, with the lock held: no
 * lock round trip.  Owners are woken at once, which is harmless since a
 * woken owner does not take this lock. */
static void
bio_finish_locked (struct bio_queue *bq, struct bio_slot *list,
                   const struct bio_waiter *self)
{
  struct bio_slot *s, *next;

  for (s = list; s; s = next) {
    _Atomic uint32_t *word;

    next = s->next;
    word = bio_release_slot (bq, s, self);
    if (word)
      bio_futex_wake (word, 1);
  }
  if (bq->slot_waiters > 0) {
    atomic_fetch_add (&bq->slot_gen, 1);
    bio_futex_wake (&bq->slot_gen, INT_MAX);
  }
}

/* Wake the parked completion thread; called with the lock held, returns
 * whether bio_unpark_wake() must follow once it is dropped. */
static bool
bio_unpark (struct bio_queue *bq)
{
  if (!bq->ct_parked || bq->owner_reaping || bq->private)
    return false;
  bq->ct_parked = false;
  atomic_fetch_add (&bq->ct_word, 1);
  return true;
}

static void
bio_unpark_wake (struct bio_queue *bq)
{
  bio_futex_wake (&bq->ct_word, 1);
}

/* Switch the completion fd on before somebody waits on it, or off when
 * nobody will; called with the lock held.  Completions that arrived while
 * it was off signalled nothing, so after switching it on the caller must
 * harvest once more before it sleeps on the fd. */
static void
bio_fd_arm (struct bio_queue *bq, bool on)
{
  if (bq->fd_armed != on) {
    blkioq_set_completion_fd_enabled (bq->q, on);
    bq->fd_armed = on;
  }
}

/* Harvest and finish for everyone; called and returns with the lock held. */
static void
bio_harvest_finish (struct bio_queue *bq, const struct bio_waiter *self,
                    int min)
{
  struct bio_slot *list = bio_harvest (bq, min), *s;

  if (!list)
    return;
  for (s = list; s; s = s->next)
    if (s->copy_to && s->ret == 0)
      break;
  if (s == NULL) {
    bio_finish_locked (bq, list, self);
    return;
  }
  pthread_mutex_unlock (&bq->lock);
  bio_finish (bq, list, self);
  pthread_mutex_lock (&bq->lock);
}

/* Wait (without the lock) until the completion fd fires, or the safety
 * timeout passes, then reset it.  Returns poll()'s result. */
static int
bio_wait_fd (struct bio_queue *bq, bool with_stop)
{
  struct pollfd pfd[2] = {
    { .fd = bq->fd, .events = POLLIN },
    { .fd = bio_stop_fd, .events = POLLIN },
  };
  uint64_t ev;
  int r;

  r = poll (pfd, with_stop ? 2 : 1, BIO_POLL_SAFETY_MS);
  if (r == -1) {
    if (errno != EINTR)
      nbdkit_debug ("poll on completion fd: %m");
    return 0;
  }
  if (with_stop && pfd[1].revents)
    return -1;
  /* Reset the event before blkioq_do_io(), as libblkio asks: a
   * completion that arrives after this read signals the fd again. */
  if (r > 0 && (pfd[0].revents & POLLIN) &&
      read (bq->fd, &ev, sizeof ev) == -1 && errno != EAGAIN)
    nbdkit_debug ("read completion fd: %m");
  return r;
}

/* The completion thread of one queue: wait for the completion fd, then
 * harvest and finish for everyone.  It parks while nothing is in flight. */
void *
bio_completion_thread (void *arg)
{
  struct bio_queue *bq = arg;

  pthread_mutex_lock (&bq->lock);
  for (;;) {
    int r;

    if (bq->inflight == 0)
      bq->ct_parked = true;
    if (bq->ct_parked && !bq->owner_reaping)
      bio_fd_arm (bq, false);
    while (bq->ct_parked && !atomic_load (&bio_stopping)) {
      uint32_t gen = atomic_load (&bq->ct_word);

      pthread_mutex_unlock (&bq->lock);
      bio_futex_wait (&bq->ct_word, gen);
      pthread_mutex_lock (&bq->lock);
    }
    if (atomic_load (&bio_stopping)) {
      pthread_mutex_unlock (&bq->lock);
      return NULL;
    }
    if (!bq->fd_armed) {
      bio_fd_arm (bq, true);
      bio_harvest_finish (bq, NULL, 0);
      continue;
    }
    pthread_mutex_unlock (&bq->lock);

    r = bio_wait_fd (bq, true);
    if (r == -1)
      return NULL;

    pthread_mutex_lock (&bq->lock);
    if (r == 0 && bq->inflight == 0)
      continue;
    bio_harvest_finish (bq, NULL, 0);
  }
}

/* The length of the piece of op at offset with count bytes left: at most
 * max_len, and not across a zone boundary (a zoned device may refuse a
 * request that crosses one). */
static inline uint64_t
bio_piece_len (const struct bio_op *op, uint64_t offset, uint64_t count)
{
  uint64_t len = count;

  if (op->max_len && len > op->max_len)
    len = op->max_len;
  if (bio_zone_size && len > bio_zone_size - offset % bio_zone_size)
    len = bio_zone_size - offset % bio_zone_size;
  return len;
}

/* The length of op's piece at offset (count bytes left) on slot s: a
 * bounced piece fits s's chunk. */
static inline uint64_t
bio_slot_len (const struct bio_op *op, const struct bio_slot *s,
              uint64_t offset, uint64_t count)
{
  uint64_t len = bio_piece_len (op, offset, count);

  return op->bounce && len > s->cap ? s->cap : len;
}

/* Whether a slot is free; called with the lock held. */
static inline bool
bio_have_slot (const struct bio_queue *bq)
{
  return bq->free_slots || bq->free_small;
}

/* Take a free slot for op's piece at offset (count bytes left), or NULL:
 * a small bounce chunk for what fits one (and for what needs no chunk),
 * a large one for the rest, else whatever is free.  Called with the lock
 * held. */
static struct bio_slot *
bio_take_slot (struct bio_queue *bq, const struct bio_op *op,
               uint64_t offset, uint64_t count)
{
  struct bio_slot **list = &bq->free_slots, *s;

  if (bq->free_small &&
      (!op->bounce || !bq->free_slots ||
       bio_piece_len (op, offset, count) <= bq->small_cap))
    list = &bq->free_small;
  s = *list;
  if (s)
    *list = s->next;
  return s;
}

/* Queue the next piece of op on slot s; returns its length. */
static uint64_t
bio_enqueue (struct bio_queue *bq, struct bio_op *op, struct bio_slot *s,
             bool copied)
{
  uint64_t len = bio_slot_len (op, s, op->offset, op->count);

  s->copy_to = NULL;
  s->len = len;
  bq->unharvested++;

  switch (op->kind) {
  case BIO_READ:
    if (op->bounce) {
      s->copy_to = op->buf;
      blkioq_read (bq->q, op->offset, s->bounce, len, s, op->flags);
    }
    else
      blkioq_read (bq->q, op->offset, op->buf, len, s, op->flags);
    break;
  case BIO_WRITE:
    if (op->bounce) {
      if (!copied)
        memcpy (s->bounce, op->buf, len);
      blkioq_write (bq->q, op->offset, s->bounce, len, s, op->flags);
    }
    else
      blkioq_write (bq->q, op->offset, op->buf, len, s, op->flags);
    break;
  case BIO_ZEROES:
    blkioq_write_zeroes (bq->q, op->offset, len, s, op->flags);
    break;
  case BIO_DISCARD:
    blkioq_discard (bq->q, op->offset, len, s, op->flags);
    break;
  case BIO_FLUSH:
    blkioq_flush (bq->q, s, op->flags);
    break;
  }
  if (op->buf)
    op->buf += len;
  op->offset += len;
  op->count -= len;
  return len;
}

/* Give slot s to w's next piece of op and queue it; called with the lock
 * held.  Returns whether op has more pieces to queue. */
static bool
bio_queue_piece (struct bio_queue *bq, struct bio_op *op,
                 struct bio_waiter *w, struct bio_slot *s, bool copied)
{
  s->owner = w;
  s->state = BIO_SLOT_INFLIGHT;
  bq->inflight++;
  atomic_fetch_add_explicit (&w->remaining, 1, memory_order_relaxed);
  bio_enqueue (bq, op, s, copied);
  return op->count > 0;
}

/* Whether the caller (holding the lock) may wait for its requests inside
 * blkioq_do_io() with the lock held: no other thread uses the queue, and
 * nobody else is waiting on it for completions.  Submitting and waiting is
 * then one call (one io_uring_enter), with no completion fd, no poll() and
 * no hand-over from the completion thread. */
static bool
bio_alone (struct bio_queue *bq)
{
  return atomic_load_explicit (&bq->users, memory_order_relaxed) == 1 &&
         bq->ct_parked && !bq->owner_reaping && !bq->dead;
}

/* A large bounced write: take free slots for as many pieces as they hold,
 * copy into them without the lock, then queue them.  Called and returns
 * with the lock held; returns whether op has more pieces to queue, and
 * sets *queued if it queued any. */
static bool
bio_queue_copied (struct bio_queue *bq, struct bio_op *op,
                  struct bio_waiter *w, bool *queued)
{
  struct bio_slot *got = NULL, **tail = &got, *sl;
  uint64_t left = op->count, off = 0;
  bool todo = true;

  while (left &&
         (sl = bio_take_slot (bq, op, op->offset + (op->count - left),
                              left)) != NULL) {
    sl->state = BIO_SLOT_FILLING;
    sl->next = NULL;
    *tail = sl;
    tail = &sl->next;
    left -= bio_slot_len (op, sl, op->offset + (op->count - left), left);
  }
  pthread_mutex_unlock (&bq->lock);
  for (sl = got; sl; sl = sl->next) {
    uint64_t len = bio_slot_len (op, sl, op->offset + off, op->count - off);

    memcpy (sl->bounce, op->buf + off, len);
    off += len;
  }
  pthread_mutex_lock (&bq->lock);
  while (got) {
    sl = got;
    got = sl->next;
    if (bq->dead) {
      sl->state = BIO_SLOT_FREE;
      bio_put_slot (bq, sl);
      continue;
    }
    todo = bio_queue_piece (bq, op, w, sl, true);
    *queued = true;
  }
  return todo;
}

/* Out of slots: wait until some are freed (or the queue dies).  Called
 * and returns with the lock held. */
static void
bio_wait_slot (struct bio_queue *bq)
{
  uint32_t gen = atomic_load (&bq->slot_gen);
  bool wake_ct = bio_unpark (bq);

  bq->slot_waiters++;
  pthread_mutex_unlock (&bq->lock);
  if (wake_ct)
    bio_unpark_wake (bq);
  bio_futex_wait (&bq->slot_gen, gen);
  pthread_mutex_lock (&bq->lock);
  bq->slot_waiters--;
}

/* Queue every piece of op, as slots become free; called and returns with
 * the lock held.  Stops early if the queue dies (w then holds the error).
 * Returns whether any piece was queued. */
static bool
bio_submit (struct bio_queue *bq, struct bio_op *op, struct bio_waiter *w)
{
  bool todo = true, any = false;

  while (todo) {
    bool queued = false;

    if (bq->dead) {
      bio_set_err (w, bq->dead, bq->dead_msg);
      return any;
    }
    if (op->bounce && op->kind == BIO_WRITE && op->count > BIO_COPY_UNLOCKED &&
        bio_have_slot (bq)) {
      todo = bio_queue_copied (bq, op, w, &queued);
      if (bq->dead)
        continue;               /* fails the request at the top */
    }

    /* Queue as many pieces as there are free slots; small writes are
     * copied into their bounce chunks here, under the lock. */
    while (todo && bio_have_slot (bq)) {
      struct bio_slot *s = bio_take_slot (bq, op, op->offset, op->count);

      todo = bio_queue_piece (bq, op, w, s, false);
      queued = true;
    }
    if (queued) {
      any = true;
      /* Submits, and hands back whatever else completed meanwhile; alone
       * with everything queued, also waits for the first completion. */
      bio_harvest_finish (bq, w, !todo && bio_alone (bq) ? 1 : 0);
      continue;
    }

    /* Out of slots: somebody must be harvesting meanwhile.  Alone, that
     * is us. */
    if (bio_alone (bq) && bq->unharvested > 0)
      bio_harvest_finish (bq, w, 1);
    else
      bio_wait_slot (bq);
  }
  return any;
}

/* Wait 1: alone on the queue, wait inside blkioq_do_io().  Once nothing
 * of ours is left in libblkio, whoever took it off finishes it.  Called
 * and returns with the lock held; the caller waits the other way if our
 * request is not complete yet.
 *
 * Alone is checked before every wait, not once: copying a bounced read
 * out drops the lock, and another thread may meanwhile queue and start
 * reaping, polling the completion fd (the device's call eventfd) and
 * reading it.  A read that lands between the device's signal and our
 * edge-triggered wait collecting it leaves that wait nothing to report,
 * so it would sleep on with the completion already in the used ring,
 * holding the lock the reaper needs: both would wait forever. */
static void
bio_wait_alone (struct bio_queue *bq, struct bio_waiter *w)
{
  while (atomic_load (&w->remaining) != 0 && bq->unharvested > 0 &&
         !bq->dead && bio_alone (bq))
    bio_harvest_finish (bq, w, 1);
}

/* Reap for everyone until w's request is complete, then give the
 * reaping to a sleeping owner if requests are left in flight (it has to
 * be woken for its own anyway), else to the completion thread.  Called
 * with the lock held and bq->owner_reaping set by us, returns without
 * the lock. */
static void
bio_reap_for_all (struct bio_queue *bq, struct bio_waiter *w)
{
  struct bio_waiter *next;
  bool wake_ct;

  bq->reaper = w;
  while (atomic_load (&w->remaining) != 0) {
    pthread_mutex_unlock (&bq->lock);
    bio_wait_fd (bq, true);     /* the stop fd: the queue is taken down */
    pthread_mutex_lock (&bq->lock);
    bio_harvest_finish (bq, w, 0);
  }
  bq->reaper = NULL;
  next = bq->inflight > 0 ? bq->sleepers : NULL;
  if (next) {
    bq->sleepers = next->next_sleeper;
    next->sleeping = false;
    atomic_store (&next->lead, true);
    atomic_fetch_add (&next->word, 1);
    pthread_mutex_unlock (&bq->lock);
    bio_futex_wake (&next->word, 1);
    return;
  }
  bq->owner_reaping = false;
  wake_ct = bq->inflight > 0 && bio_unpark (bq);
  if (bq->ct_parked)
    bio_fd_arm (bq, false);
  pthread_mutex_unlock (&bq->lock);
  if (wake_ct)
    bio_unpark_wake (bq);
}

/* Wait 2: nobody waits on the completion fd (the queue was idle): wait on
 * it ourselves rather than wake the completion thread to hand us our
 * completion.  Others who queue meanwhile are served by us, and by one of
 * them or the completion thread once we leave.  Called with the lock
 * held, returns without it. */
static void
bio_wait_reaping (struct bio_queue *bq, struct bio_waiter *w)
{
  bq->owner_reaping = true;
  if (!bq->fd_armed) {
    bio_fd_arm (bq, true);
    bio_harvest_finish (bq, w, 0);
  }
  bio_reap_for_all (bq, w);
}

/* Wait 3 (and the end of the others): sleep until the last piece is
 * finished, by the completion thread or whoever harvests it (that thread
 * has written err/msg before the release that brings remaining to 0), or
 * until the reaping is handed to us. */
static void
bio_wait_futex (struct bio_queue *bq, struct bio_waiter *w)
{
  for (;;) {
    uint32_t gen = atomic_load (&w->word);

    /* First: a hand-over must be taken up even if our request is done. */
    if (atomic_load (&w->lead)) {
      pthread_mutex_lock (&bq->lock);
      atomic_store (&w->lead, false);
      bio_reap_for_all (bq, w);
      continue;
    }
    if (atomic_load_explicit (&w->remaining, memory_order_acquire) == 0) {
      /* A hand-over may have come after the look above, and then whoever
       * finished our request took the lock after it: this acquire makes
       * it visible.  Leaving with it would leave the queue unreaped. */
      if (!atomic_load (&w->lead))
        return;
      continue;
    }
    bio_futex_wait (&w->word, gen);
  }
}

/* Run op once on the calling thread's queue.  Returns 0 or a negative
 * errno (w->err), and whether no piece of op reached the queue. */
static int
bio_run_once (struct bio_op *op, struct bio_waiter *w, bool *untouched)
{
  struct bio_queue *bq = bio_my_queue ();

  atomic_init (&w->remaining, 0);
  w->err = 0;
  w->lost = false;
  w->msg[0] = '\0';

  pthread_mutex_lock (&bq->lock);
  *untouched = !bio_submit (bq, op, w);
  bio_wait_alone (bq, w);       /* checks for itself whether it applies */
  if (atomic_load (&w->remaining) != 0) {
    if (bq->ct_parked && !bq->owner_reaping)
      bio_wait_reaping (bq, w);
    else {
      w->sleeping = true;
      w->next_sleeper = bq->sleepers;
      bq->sleepers = w;
      pthread_mutex_unlock (&bq->lock);
    }
  }
  else
    pthread_mutex_unlock (&bq->lock);
  bio_wait_futex (bq, w);
  return -w->err;
}

/* Run op to completion on the calling thread's queue.  Returns 0 or a
 * negative errno, with op->msg set.  While the device is being
 * reconnected, a request waits for it (see bio_wait_up) before it starts;
 * a request that met a queue taken down before any of it was queued, or
 * that failed because the device was lost while it ran, starts again once
 * the device is back (bio_retry_after_loss; a request on a lent buffer is
 * started again by bio_rw, which must move the buffer first). */
int
bio_run (struct bio_op *op)
{
  struct bio_waiter *w = &bio_thread_waiter;
  struct bio_op saved = *op;
  unsigned losses = 0;
  bool untouched;
  int r;

  for (;;) {
    if (atomic_load_explicit (&bio_state, memory_order_acquire) != BIO_UP &&
        bio_wait_up (w->msg, sizeof w->msg) < 0) {
      op->msg = w->msg;
      return -EIO;
    }
    op->epoch = bio_epoch_now ();
    r = bio_run_once (op, w, &untouched);
    if (r == 0) {
      /* A write without FUA is durable only after a flush. */
      if ((op->kind == BIO_WRITE || op->kind == BIO_ZEROES) &&
          !(op->flags & BLKIO_REQ_FUA))
        bio_write_done (op->epoch);
      return 0;
    }
    if (untouched &&
        atomic_load_explicit (&bio_state, memory_order_acquire) != BIO_UP)
      ;                         /* never reached the old instance */
    else if (op->lent || !bio_retry_after_loss (op, &losses))
      break;
    *op = saved;
  }
  op->msg = w->msg;
  op->lost = w->lost;
  return r;
}
