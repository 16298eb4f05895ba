/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nbdkit-blkio-plugin: outliving the device.
 *
 * When the device goes away (blkioq_do_io() or a request fails with an
 * errno that says so, see bio_errno_is_lost), a background thread takes
 * every queue down (what is in flight fails at once), destroys the
 * instance and creates it again with the same properties and the same
 * queue layout, retrying with a bounded exponential backoff.  The new
 * device must have the size and block size of the old one; a different
 * device is refused (and retried, in case the right one comes back).
 * Meanwhile requests fail with EIO once the first attempt has failed, or
 * wait up to reconnect-wait= for the device; the NBD connections stay
 * open and go on once it is back.  Requests the loss took down run again
 * (bio_retry_after_loss).
 *
 * The same thread re-creates the instance on purpose (bio_refresh): when
 * a new connection finds the device grown or shrunk.  Then the queues are
 * drained first and requests wait.
 *
 * A device that is lost may take writes it acknowledged but had not yet
 * made durable with it (a backend's caches, qcow2 metadata in
 * qemu-storage-daemon).  A flush on the new instance cannot cover them,
 * so a loss that meets such writes fails the next flush of every
 * connection open at the time, once, as fsync(2) reports a writeback
 * error (bio_flush_begin and bio_flush_end).
 */

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "blkio-plugin.h"

/* Backoff between attempts to reconnect: doubling, bounded. */
#define BIO_BACKOFF_FIRST_MS 50
#define BIO_BACKOFF_MAX_MS 500

/* How long a request or a new connection waits for a re-creation made on
 * purpose (which drains the queues for up to 10 s first). */
#define BIO_REFRESH_WAIT_MS 30000

/* How many losses one request rides out (bio_retry_after_loss). */
#define BIO_LOSS_RETRIES 3

/* How long a request or a new connection waits, even with
 * reconnect-wait=0, for the first attempt to reconnect after a loss: a
 * device that went away while nbdkit was idle is only found gone by the
 * next request or connection, and the backend may long be back (the
 * attempt then takes a few milliseconds).  An attempt that meets a
 * backend which never answers ends at the library's 10 s deadline. */
#define BIO_FIRST_ATTEMPT_WAIT_MS 5000

_Atomic int bio_state = BIO_UP;
bool bio_reconnect = true;
unsigned bio_reconnect_wait_ms = 0;

static pthread_mutex_t bio_rc_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bio_rc_cond = PTHREAD_COND_INITIALIZER;    /* work */
static pthread_cond_t bio_up_cond = PTHREAD_COND_INITIALIZER;    /* BIO_UP */
static pthread_t bio_rc_thread;
static bool bio_rc_running, bio_rc_stop;
static bool bio_lost_pending;           /* the device went away */
static bool bio_refresh_pending;        /* re-create it on purpose */
static bool bio_refresh_readonly;
static unsigned bio_swaps;              /* swaps finished, either way */
static unsigned bio_failed_attempts;    /* since the device was lost */

/* Writes acknowledged since the last flush began (a flush clears it as it
 * starts and sets it again if it fails); flushes running that took such
 * writes over; losses so far; and losses that met such writes, either
 * still flagged or in a running flush.  All sequentially consistent: a
 * write's store to bio_unflushed and its load of bio_epoch pair with the
 * loss's increment of bio_epoch and its exchange of bio_unflushed, and a
 * flush counts itself in before it takes the flag over, so that at least
 * one of the two sides sees the other. */
static atomic_bool bio_unflushed;
static _Atomic unsigned bio_flushes_covering;
static _Atomic unsigned bio_epoch;
static _Atomic unsigned bio_lost_unflushed;

/* errnos that say the device (or the connection to it) is gone, rather
 * than that one request failed. */
bool
bio_errno_is_lost (int err)
{
  switch (err) {
  case ENOTCONN: case EPIPE: case ECONNRESET: case ESHUTDOWN:
  case ENODEV: case ECONNABORTED:
    return true;
  default:
    return false;
  }
}

/* The device is lost (called once per loss): the instance that took the
 * writes not yet flushed will never flush them. */
static void
bio_mark_loss (void)
{
  atomic_fetch_add (&bio_epoch, 1);
  /* A flush that took the flag over and has not finished covers writes
   * the loss took too: every connection's next flush must fail, also one
   * that began after it and finishes first. */
  if (atomic_exchange (&bio_unflushed, false) ||
      atomic_load (&bio_flushes_covering) > 0)
    atomic_fetch_add (&bio_lost_unflushed, 1);
}

/* The device is gone: have it reconnected.  Returns whether it will be
 * (reconnect= is on and the thread runs). */
bool
bio_reconnect_kick (void)
{
  bool will;

  pthread_mutex_lock (&bio_rc_lock);
  will = bio_reconnect && bio_rc_running && !bio_rc_stop;
  if (will && !bio_lost_pending &&
      atomic_load (&bio_state) != BIO_LOST) {
    bio_lost_pending = true;
    bio_failed_attempts = 0;
    bio_mark_loss ();
    atomic_store (&bio_state, BIO_LOST);
    pthread_cond_broadcast (&bio_rc_cond);
  }
  pthread_mutex_unlock (&bio_rc_lock);
  return will;
}

/* Deadline ms from now, for pthread_cond_timedwait (CLOCK_REALTIME). */
static struct timespec
bio_deadline (unsigned ms)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long) (ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  return ts;
}

/* Wait until the device serves requests again: when it was lost, up to
 * reconnect-wait=, but at least until the first attempt to reconnect has
 * failed (up to 5 s); longer for a re-creation on purpose.  Returns 0, or
 * -1 with msg saying why not. */
int
bio_wait_up (char *msg, size_t len)
{
  struct timespec until, first_until = bio_deadline (BIO_FIRST_ATTEMPT_WAIT_MS);
  bool first_later;
  int state, r = 0;

  pthread_mutex_lock (&bio_rc_lock);
  state = atomic_load (&bio_state);
  until = bio_deadline (state == BIO_REFRESHING ? BIO_REFRESH_WAIT_MS
                                                : bio_reconnect_wait_ms);
  first_later = first_until.tv_sec > until.tv_sec ||
    (first_until.tv_sec == until.tv_sec && first_until.tv_nsec > until.tv_nsec);
  while ((state = atomic_load (&bio_state)) != BIO_UP && r == 0) {
    if (state == BIO_LOST && !bio_rc_running)
      r = ETIMEDOUT;
    else
      r = pthread_cond_timedwait (&bio_up_cond, &bio_rc_lock,
                                  state == BIO_LOST && first_later &&
                                  bio_failed_attempts == 0
                                  ? &first_until : &until);
  }
  pthread_mutex_unlock (&bio_rc_lock);
  if (state == BIO_UP)
    return 0;
  snprintf (msg, len, "the device is gone%s",
            bio_reconnect && bio_rc_running
            ? ", reconnecting in the background" : " (reconnect=false)");
  return -1;
}

/* Sleep ms unless the thread is asked to stop; returns false if it is. */
static bool
bio_backoff_sleep (unsigned ms)
{
  struct timespec until = bio_deadline (ms);
  bool stop;

  pthread_mutex_lock (&bio_rc_lock);
  while (!bio_rc_stop &&
         pthread_cond_timedwait (&bio_rc_cond, &bio_rc_lock, &until) == 0)
    ;
  stop = bio_rc_stop;
  pthread_mutex_unlock (&bio_rc_lock);
  return !stop;
}

/* Destroy the instance (its queues taken down) and create it again until
 * it comes back as the same device; on purpose (refresh), one attempt and
 * a new size is accepted.  Returns 0 once it serves again. */
static int
bio_recreate (bool refresh, bool readonly)
{
  unsigned delay = BIO_BACKOFF_FIRST_MS, attempt = 0;
  int r;

  bio_pool_release ();
  bio_lend_destroy_instance (&bio_b);
  for (;;) {
    attempt++;
    bio_quiet = attempt > 1;
    r = bio_restart_instance (readonly, refresh);
    bio_quiet = false;
    if (r == 0) {
      if (bio_pool_rebind () == 0)
        return 0;
      bio_pool_take_down (EIO, "re-creating the instance failed", false);
      bio_pool_release ();
    }
    if (bio_b)
      bio_lend_destroy_instance (&bio_b);
    if (refresh)
      return -1;                /* the caller reconnects as if lost */
    pthread_mutex_lock (&bio_rc_lock);
    bio_failed_attempts++;
    pthread_cond_broadcast (&bio_up_cond);
    pthread_mutex_unlock (&bio_rc_lock);
    nbdkit_debug ("reconnect attempt %u failed, next in %u ms",
                  attempt, delay);
    if (!bio_backoff_sleep (delay))
      return -1;
    delay = delay * 2 > BIO_BACKOFF_MAX_MS ? BIO_BACKOFF_MAX_MS : delay * 2;
  }
}

/* One swap of the instance, lost or on purpose. */
static void
bio_swap (bool lost, bool readonly)
{
  struct timespec t0, t1;
  int r;

  clock_gettime (CLOCK_MONOTONIC, &t0);
  pthread_mutex_lock (&bio_rc_lock);
  bio_failed_attempts = 0;
  pthread_mutex_unlock (&bio_rc_lock);
  atomic_store (&bio_state, lost ? BIO_LOST : BIO_REFRESHING);
  if (lost)
    nbdkit_error ("the device is gone, reconnecting in the background; "
                  "requests fail with EIO meanwhile");
  bio_pool_take_down (EIO, lost ? "the device is gone, reconnecting"
                                : "the device is being re-opened", !lost);
  r = bio_recreate (!lost, readonly);
  if (r == -1 && !lost) {
    /* Re-opening on purpose failed: from here on it is a lost device. */
    bio_mark_loss ();
    atomic_store (&bio_state, BIO_LOST);
    r = bio_recreate (false, readonly);
  }
  clock_gettime (CLOCK_MONOTONIC, &t1);
  pthread_mutex_lock (&bio_rc_lock);
  if (r == 0)
    atomic_store (&bio_state, BIO_UP);
  bio_swaps++;
  pthread_cond_broadcast (&bio_up_cond);
  pthread_mutex_unlock (&bio_rc_lock);
  if (r == 0)
    nbdkit_debug ("%s: the device is back after %.3f s",
                  lost ? "reconnect" : "re-open",
                  (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
}

/* The background thread: swaps the instance when asked. */
static void *
bio_reconnect_thread (void *arg)
{
  pthread_mutex_lock (&bio_rc_lock);
  while (!bio_rc_stop) {
    bool lost = bio_lost_pending, refresh = bio_refresh_pending;

    if (!lost && !refresh) {
      pthread_cond_wait (&bio_rc_cond, &bio_rc_lock);
      continue;
    }
    bio_lost_pending = bio_refresh_pending = false;
    pthread_mutex_unlock (&bio_rc_lock);
    bio_swap (lost, refresh ? bio_refresh_readonly : bio_readonly);
    pthread_mutex_lock (&bio_rc_lock);
  }
  pthread_mutex_unlock (&bio_rc_lock);
  return NULL;
}

/* Re-create the instance on purpose (read-only if readonly) and wait
 * until that is done.  Returns 0, or -1 if the device is not back. */
int
bio_refresh (bool readonly)
{
  struct timespec until = bio_deadline (BIO_REFRESH_WAIT_MS);
  unsigned swaps;
  int r = 0;

  pthread_mutex_lock (&bio_rc_lock);
  if (!bio_rc_running) {
    pthread_mutex_unlock (&bio_rc_lock);
    return -1;
  }
  swaps = bio_swaps;
  bio_refresh_pending = true;
  bio_refresh_readonly = readonly;
  pthread_cond_broadcast (&bio_rc_cond);
  while (r == 0 && (bio_refresh_pending || bio_swaps == swaps))
    r = pthread_cond_timedwait (&bio_up_cond, &bio_rc_lock, &until);
  pthread_mutex_unlock (&bio_rc_lock);
  return atomic_load (&bio_state) == BIO_UP ? 0 : -1;
}

/* Start the background thread (after nbdkit forked). */
int
bio_reconnect_start (void)
{
  int err;

  bio_rc_stop = false;
  err = pthread_create (&bio_rc_thread, NULL, bio_reconnect_thread, NULL);
  if (err) {
    errno = err;
    nbdkit_error ("pthread_create: reconnect thread: %m");
    return -1;
  }
  pthread_mutex_lock (&bio_rc_lock);
  bio_rc_running = true;
  pthread_mutex_unlock (&bio_rc_lock);
  return 0;
}

/* Stop it (idempotent), before the queues are torn down. */
void
bio_reconnect_stop (void)
{
  pthread_mutex_lock (&bio_rc_lock);
  if (!bio_rc_running) {
    pthread_mutex_unlock (&bio_rc_lock);
    return;
  }
  bio_rc_stop = true;
  pthread_cond_broadcast (&bio_rc_cond);
  pthread_mutex_unlock (&bio_rc_lock);
  pthread_join (bio_rc_thread, NULL);
  pthread_mutex_lock (&bio_rc_lock);
  bio_rc_running = false;
  pthread_cond_broadcast (&bio_up_cond);
  pthread_mutex_unlock (&bio_rc_lock);
}

/* ---- flushes across a loss ---- */

/* The loss counter a connection starts from: losses before it opened are
 * not its to report. */
unsigned
bio_losses_seen_at_open (void)
{
  return atomic_load (&bio_lost_unflushed);
}

/* Which instance a request is about to go to: the number of losses so
 * far (see bio_retry_after_loss, bio_write_done). */
unsigned
bio_epoch_now (void)
{
  return atomic_load (&bio_epoch);
}

/* op failed: is it run again, once the device is back?  Only if the
 * device was lost while it ran (so the failure is the loss's: the
 * request went down with the queues, or met the dead instance), it can be
 * repeated (a write to a zoned device lands at the write pointer, which
 * has moved if the first one reached the device), and it has not met
 * BIO_LOSS_RETRIES losses yet (a device that comes back only to be lost
 * again).  A repeated write writes the same bytes to the same place; a
 * repeated flush reports the writes it was to cover as lost
 * (bio_flush_end). */
bool
bio_retry_after_loss (const struct bio_op *op, unsigned *losses)
{
  if (atomic_load (&bio_epoch) == op->epoch)
    return false;
  if (bio_zoned && op->kind != BIO_READ && op->kind != BIO_FLUSH)
    return false;
  return ++*losses <= BIO_LOSS_RETRIES;
}

/* A write (or write zeroes) without FUA that began at epoch succeeded
 * (bio_run): it needs a flush.  If the device was lost since it began, it went to an
 * instance that will never flush it. */
void
bio_write_done (unsigned epoch)
{
  if (!atomic_load (&bio_unflushed))
    atomic_store (&bio_unflushed, true);
  if (atomic_load (&bio_epoch) != epoch)
    atomic_fetch_add (&bio_lost_unflushed, 1);
}

/* Whether the connection whose counter is *seen has a loss of unflushed
 * writes still to report; if so it is reported now (*seen catches up). */
static bool
bio_loss_to_report (_Atomic unsigned *seen)
{
  unsigned now = atomic_load (&bio_lost_unflushed);

  return atomic_exchange (seen, now) != now;
}

/* A flush is about to run for the connection whose counter is *seen.
 * Returns false if it must fail instead: writes acknowledged before were
 * lost with the device.  Else fl records what the flush covers. */
bool
bio_flush_begin (_Atomic unsigned *seen, struct bio_flush_state *fl)
{
  if (bio_loss_to_report (seen))
    return false;
  atomic_fetch_add (&bio_flushes_covering, 1);
  fl->epoch = atomic_load (&bio_epoch);
  fl->covered = atomic_exchange (&bio_unflushed, false);
  if (!fl->covered)
    atomic_fetch_sub (&bio_flushes_covering, 1);
  return true;
}

/* The flush begun with fl ended with r (0 or a negative errno).  Returns
 * whether it must fail because writes before it were lost: a loss during
 * the flush took the writes it was to cover (re-run on the new instance,
 * it would not cover them either). */
bool
bio_flush_end (_Atomic unsigned *seen, const struct bio_flush_state *fl,
               int r)
{
  if (fl->covered) {
    /* A loss while it ran was counted by bio_mark_loss (this flush was
     * counted in); a failure on the same instance leaves the writes
     * unflushed, flagged again before this flush counts itself out. */
    if (r < 0 && atomic_load (&bio_epoch) == fl->epoch)
      atomic_store (&bio_unflushed, true);
    atomic_fetch_sub (&bio_flushes_covering, 1);
  }
  return bio_loss_to_report (seen);
}
