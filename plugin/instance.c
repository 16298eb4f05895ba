/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nbdkit-blkio-plugin: the shared libblkio instance.
 *
 * Opened once, in .get_ready: created, connected, given the user's
 * properties (whatever the created state accepts before blkio_connect(),
 * the rest after), started with the queue count chosen here, and its
 * device limits read into the geometry the I/O path uses.  Created again
 * the same way when the device comes back after it was lost (reconnect.c).
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blkio-plugin.h"

struct blkio *bio_b;
bool bio_readonly;
bool bio_quiet;

/* An error opening the device: shown to the user, except while
 * reconnecting after the first attempt (bio_quiet), when it goes to debug
 * output, so that a long outage does not fill the log. */
static void __attribute__((format (printf, 1, 2)))
bio_report (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  if (bio_quiet)
    nbdkit_vdebug (fmt, ap);
  else
    nbdkit_verror (fmt, ap);
  va_end (ap);
}

uint64_t bio_capacity;
uint32_t bio_req_align;
uint32_t bio_buf_align;
uint32_t bio_preferred;
uint64_t bio_rw_max;
uint64_t bio_zero_max;
uint64_t bio_discard_max;
uint64_t bio_discard_align;
uint64_t bio_discard_offset;
bool bio_needs_mem_regions;
bool bio_have_bounce;
bool bio_zoned;
uint64_t bio_zone_size;

static bool
bio_is_state_error (int err)
{
  /* The property does not exist, or cannot be set in this state. */
  return err == ENOENT || err == EACCES || err == EBUSY || err == ENODEV ||
    err == EPERM || err == ENOTSUP;
}

/* Create the instance and connect it, setting every property that libblkio
 * accepts in the created state first. */
static int
bio_create_connect (bool readonly, char *errbuf, size_t errlen)
{
  size_t i;
  int r;

  r = blkio_create (bio_driver, &bio_b);
  if (r < 0) {
    snprintf (errbuf, errlen, "blkio_create: error opening driver: %s: %s",
              bio_driver, blkio_get_error_msg ());
    return r;
  }
  if (readonly) {
    r = blkio_set_bool (bio_b, "read-only", true);
    if (r < 0) {
      snprintf (errbuf, errlen, "error setting property: read-only=true: %s",
                blkio_get_error_msg ());
      return r;
    }
  }

  /* No hand-kept list of "pre-connect" properties: whatever the created
   * state accepts is set now, the rest after blkio_connect(). */
  for (i = 0; i < bio_nprops; i++) {
    struct bio_prop *p = &bio_props[i];

    free (p->pre_msg);
    p->pre_msg = NULL;
    p->pre_err = -blkio_set_str (bio_b, p->key, p->value);
    if (p->pre_err) {
      p->pre_msg = strdup (blkio_get_error_msg ());
      nbdkit_debug ("property %s=%s deferred until after connect: %s",
                    p->key, p->value, p->pre_msg ? p->pre_msg : "");
    }
  }

  r = blkio_connect (bio_b);
  if (r < 0) {
    snprintf (errbuf, errlen, "blkio_connect: %s: %s",
              bio_driver, blkio_get_error_msg ());
    return r;
  }
  return 0;
}

/* Limits are in bytes but every sub-request must stay aligned: round
 * each one down to its alignment, never to 0. */
static void
bio_align_limits (void)
{
  if (bio_rw_max) {
    bio_rw_max = bio_round_down (bio_rw_max, bio_req_align);
    if (bio_rw_max == 0)
      bio_rw_max = bio_req_align;
  }
  if (bio_zero_max) {
    bio_zero_max = bio_round_down (bio_zero_max, bio_req_align);
    if (bio_zero_max == 0)
      bio_zero_max = bio_req_align;
  }
  if (bio_discard_max) {
    bio_discard_max = bio_round_down (bio_discard_max, bio_discard_align);
    if (bio_discard_max == 0)
      bio_discard_max = bio_discard_align;
  }
}

/* Preferred: the optimal I/O size or alignment if sane, at least 4 KiB
 * (nbdkit requires a power of 2 in [512, 32 MiB], >= the minimum). */
static void
bio_set_preferred (int oia, int ois)
{
  bio_preferred = 4096;
  if (oia > 0 && bio_is_power_of_2 (oia) && (uint32_t) oia > bio_preferred)
    bio_preferred = oia;
  if (ois > 0 && bio_is_power_of_2 (ois) && (uint32_t) ois > bio_preferred)
    bio_preferred = ois;
  if (bio_preferred > 32 * 1024 * 1024)
    bio_preferred = 32 * 1024 * 1024;
  if (bio_preferred < bio_req_align)
    bio_preferred = bio_req_align;
}

/* Read the device limits that the I/O path depends on (at open, and for
 * every re-created instance). */
static int
bio_read_geometry (void)
{
  int ra = 1, ba = 1, oia = 0, ois = 0, mt = 0, msl = 0, da = 0, dao = 0;
  int zoned = 0;
  uint64_t mwz = 0, mdl = 0;
  bool nmr = false;

  if (blkio_get_uint64 (bio_b, "capacity", &bio_capacity) < 0 ||
      blkio_get_int (bio_b, "request-alignment", &ra) < 0 ||
      blkio_get_bool (bio_b, "needs-mem-regions", &nmr) < 0) {
    nbdkit_error ("reading device properties: %s", blkio_get_error_msg ());
    return -1;
  }
  /* The rest are optional refinements; a missing one means "no limit". */
  blkio_get_int (bio_b, "buf-alignment", &ba);
  blkio_get_int (bio_b, "optimal-io-alignment", &oia);
  blkio_get_int (bio_b, "optimal-io-size", &ois);
  blkio_get_int (bio_b, "max-transfer", &mt);
  blkio_get_int (bio_b, "max-segment-len", &msl);
  blkio_get_uint64 (bio_b, "max-write-zeroes-len", &mwz);
  blkio_get_int (bio_b, "discard-alignment", &da);
  blkio_get_int (bio_b, "discard-alignment-offset", &dao);
  blkio_get_uint64 (bio_b, "max-discard-len", &mdl);
  if (blkio_get_int (bio_b, "zoned", &zoned) == 0 && zoned > 0) {
    bio_zoned = true;
    /* libblkio 1.5 spells it zone-size; older builds zone_size. */
    if (blkio_get_uint64 (bio_b, "zone-size", &bio_zone_size) < 0 &&
        blkio_get_uint64 (bio_b, "zone_size", &bio_zone_size) < 0)
      bio_zone_size = 0;
  }

  /* nbdkit wants a power-of-2 minimum block size of at most 64 KiB. */
  if (ra < 1)
    ra = 1;
  if (!bio_is_power_of_2 (ra) || ra > 65536) {
    nbdkit_error ("request-alignment %d is not a power of 2 "
                  "between 1 and 65536", ra);
    return -1;
  }
  bio_req_align = ra;
  bio_buf_align = ba >= 1 ? ba : 1;
  /* A file opened with direct=true whose size is not a multiple of the
   * block size: its last partial block cannot be read or written in
   * whole blocks, and NBD clients take the size to be a multiple of the
   * minimum block size (nbdcopy failed on the tail). */
  if (bio_whole_blocks (bio_capacity) != bio_capacity) {
    nbdkit_debug ("the device's size %" PRIu64 " is not a multiple of its "
                  "request-alignment %d: served as %" PRIu64 " bytes, "
                  "without the last %" PRIu64, bio_capacity, ra,
                  bio_whole_blocks (bio_capacity),
                  bio_capacity - bio_whole_blocks (bio_capacity));
    bio_capacity = bio_whole_blocks (bio_capacity);
  }
  bio_needs_mem_regions = nmr;

  bio_set_preferred (oia, ois);

  bio_rw_max = bio_min_limit (mt > 0 ? mt : 0, msl > 0 ? msl : 0);
  bio_zero_max = mwz;
  bio_discard_max = mdl;
  bio_discard_align = bio_req_align;
  if (da > 0 && (uint64_t) da > bio_discard_align)
    bio_discard_align = da;
  bio_discard_offset = dao > 0 ? (uint64_t) dao % bio_discard_align : 0;

  bio_align_limits ();
  nbdkit_debug ("capacity=%" PRIu64 " request-alignment=%u buf-alignment=%u "
                "needs-mem-regions=%d rw-max=%" PRIu64 " zero-max=%" PRIu64
                " discard-max=%" PRIu64 " discard-alignment=%" PRIu64,
                bio_capacity, bio_req_align, bio_buf_align,
                bio_needs_mem_regions, bio_rw_max, bio_zero_max,
                bio_discard_max, bio_discard_align);
  return 0;
}


/* Whether the driver's queues are io_uring rings, which run requests in
 * the submitting thread rather than on a device of their own. */
static bool
bio_queue_runs_inline (void)
{
  return strcmp (bio_driver, "io_uring") == 0 ||
         strcmp (bio_driver, "nvme-io_uring") == 0;
}


/* Create and connect the instance (read-only if readonly), falling back to
 * read-only when the device refuses writing. */
static int
bio_connect_instance (bool readonly)
{
  char errbuf[1024];
  int r;

  bio_readonly = readonly;
  r = bio_create_connect (bio_readonly, errbuf, sizeof errbuf);
  if (r < 0 && !bio_readonly && bio_b &&
      (r == -EACCES || r == -EROFS || r == -EPERM)) {
    /* Like nbdkit-file-plugin: serve a read-only file read-only. */
    nbdkit_debug ("%s, falling back to read-only", errbuf);
    blkio_destroy (&bio_b);
    bio_readonly = true;
    r = bio_create_connect (true, errbuf, sizeof errbuf);
  }
  if (r < 0) {
    bio_report ("%s", errbuf);
    return -1;
  }
  return 0;
}

/* Set the properties that the created state refused. */
static int
bio_set_deferred_props (void)
{
  size_t i;
  int r;

  for (i = 0; i < bio_nprops; i++) {
    struct bio_prop *p = &bio_props[i];
    const char *msg;

    if (!p->pre_err)
      continue;
    r = blkio_set_str (bio_b, p->key, p->value);
    if (r == 0)
      continue;
    msg = blkio_get_error_msg ();
    /* If only the first attempt complained about the value (and this one
     * merely about the state), the first message is the useful one. */
    if (bio_is_state_error (-r) && !bio_is_state_error (p->pre_err) &&
        p->pre_msg)
      msg = p->pre_msg;
    bio_report ("error setting property: %s=%s: %s", p->key, p->value, msg);
    return -1;
  }
  return 0;
}

/* How many queues to start with; *private_queues: whether threads beyond
 * them get queues of their own. */
static int
bio_choose_num_queues (bool *private_queues)
{
  int max_queues = 1, nq, cap;

  *private_queues = false;
  if (blkio_get_int (bio_b, "max-queues", &max_queues) < 0 || max_queues < 1)
    max_queues = 1;
  if (bio_user_num_queues > 0)
    return bio_user_num_queues;
  if (bio_queue_runs_inline ()) {
    /* An io_uring queue does its work (a cached read's copy, the
     * submission itself) in the thread that calls blkioq_do_io(), under
     * the queue's lock: a shared queue serializes that work.  A queue per
     * worker thread of a connection (nbdkit's default is 16) lets the
     * threads run in parallel, and a ring costs only a little memory.
     * Measured in bench/plugin-fio.sh: 4k random reads 1.05x, 1M reads
     * 1.04x the throughput of one queue. */
    nq = BIO_INLINE_QUEUES;
    *private_queues = true;
  }
  else {
    long ncpus = sysconf (_SC_NPROCESSORS_ONLN);

    /* A virtio queue costs a completion thread and splits the completions
     * (and the device's notifications) into smaller batches: each queue
     * should keep a CPU busy, which nbdkit's threads, the completion
     * thread and the backend share.  On 2 CPUs over vhost-user one queue
     * needs half the kicks and completion wake-ups of four (0.22 vs 0.48
     * kicks per request) and is faster. */
    nq = ncpus > 1 ? ncpus / 2 : 1;
    if (nq > 16)
      nq = 16;
    /* Serialized, a connection is one thread with one request at a time:
     * a queue of its own lets it submit and wait in one blkioq_do_io()
     * call, without the completion thread's hand-over (one wake-up per
     * request instead of two).  bench/HISTORY.md: "virtio queues follow
     * serialized connections". */
    if (bio_serialized && nq < BIO_SERIAL_QUEUES)
      nq = BIO_SERIAL_QUEUES;
  }
  /* Leave the descriptors a low ulimit -n has to the connections. */
  cap = bio_fds_queue_cap ();
  if (nq > cap) {
    nbdkit_debug ("%d queues instead of %d: ulimit -n leaves descriptors "
                  "for few", cap, nq);
    nq = cap;
  }
  return nq > max_queues ? max_queues : nq;
}

/* How many requests a queue takes at once (io_uring: num-entries,
 * virtio-blk: queue-size); not every driver has either. */
static unsigned
bio_queue_entries (void)
{
  int entries = 0;

  if (blkio_get_int (bio_b, "num-entries", &entries) < 0 &&
      blkio_get_int (bio_b, "queue-size", &entries) < 0)
    entries = 128;
  if (entries < 1)
    entries = 1;
  if (entries > 1024)
    entries = 1024;
  return entries;
}

/* get=PROPERTY: print each one in debug output, in the upstream plugin's
 * format ("get capacity = 1048576"); a property that cannot be read is a
 * warning, as there. */
static void
bio_print_gets (void)
{
  size_t i;

  for (i = 0; i < bio_ngets; i++) {
    char *value = NULL;

    if (blkio_get_str (bio_b, bio_gets[i], &value) < 0) {
      nbdkit_debug ("warning: could not get property %s: %s",
                    bio_gets[i], blkio_get_error_msg ());
      continue;
    }
    nbdkit_debug ("get %s = %s", bio_gets[i], value);
    free (value);
  }
}

/* Connect, set the properties and start the instance with nq queues (0:
 * choose, setting *private_queues).  Returns the queue count or -1. */
static int
bio_start_instance (bool readonly, int nq, bool *private_queues)
{
  bool ro = false;
  int r;

  if (bio_connect_instance (readonly) == -1 ||
      bio_set_deferred_props () == -1)
    return -1;
  /* The library may know better: an fd= opened read-only is served
   * read-only, and nbdkit must not offer writes that all fail. */
  if (!bio_readonly && blkio_get_bool (bio_b, "read-only", &ro) == 0 && ro) {
    nbdkit_debug ("the device is read-only (read-only property), "
                  "serving it read-only");
    bio_readonly = true;
  }
  if (nq == 0)
    nq = bio_choose_num_queues (private_queues);
  r = blkio_set_int (bio_b, "num-queues", nq);
  if (r < 0) {
    bio_report ("error setting property: num-queues=%d: %s",
                  nq, blkio_get_error_msg ());
    return -1;
  }
  r = blkio_start (bio_b);
  if (r == -EROFS && !bio_readonly) {
    /* A device that says so only once started (a read-only vhost-user
     * export: VIRTIO_BLK_F_RO): open it again read-only. */
    nbdkit_debug ("blkio_start: %s, falling back to read-only",
                  blkio_get_error_msg ());
    blkio_destroy (&bio_b);
    return bio_start_instance (true, nq, private_queues);
  }
  if (r < 0) {
    bio_report ("blkio_start: %s", blkio_get_error_msg ());
    return -1;
  }
  return nq;
}

/* Open the shared instance: create, connect, set properties, start, and
 * set up the queues.  Errors here are shown to the user. */
int
bio_open_instance (void)
{
  bool private_queues = false, can_add = false;
  int nq;

  nq = bio_start_instance (false, 0, &private_queues);
  if (nq == -1)
    return -1;
  bio_print_gets ();
  if (bio_read_geometry () == -1)
    return -1;
  bio_have_bounce = bio_needs_mem_regions || bio_buf_align > 1;
  /* Private queues are cheap only without bounce buffers of their own. */
  if (private_queues)
    private_queues = !bio_have_bounce &&
      blkio_get_bool (bio_b, "can-add-queues", &can_add) == 0 && can_add;
  if (bio_pool_create (nq, bio_queue_entries (),
                       private_queues) == -1)
    return -1;
  bio_lend_setup (nq);
  nbdkit_debug ("%s: %d queue(s), %u slot(s) each, %s, %s%s",
                bio_driver, bio_nqueues, bio_queues[0].nslots,
                bio_have_bounce ? "bounce buffers" : "zero copy",
                bio_readonly ? "read-only" : "read-write",
                bio_zoned ? ", zoned" : "");
  return 0;
}

/* The capacity of the device last refused by bio_restart_instance. */
static uint64_t refused = UINT64_MAX;

/* What the device served before had, for the comparison. */
struct bio_served {
  uint64_t capacity;
  uint32_t req_align, buf_align;
  bool nmr;
};

static void
bio_served_restore (const struct bio_served *d)
{
  bio_capacity = d->capacity;
  bio_req_align = d->req_align;
  bio_buf_align = d->buf_align;
  bio_needs_mem_regions = d->nmr;
}

/* What the new instance is, read without storing it where requests read
 * the geometry (without a lock): capacity in whole blocks as served,
 * request and buffer alignment, buffer needs, as bio_read_geometry
 * derives them.  Returns -1 if a property cannot be read. */
static int
bio_peek_identity (struct bio_served *n)
{
  int ra = 1, ba = 1;
  bool nmr = false;
  uint64_t cap;

  if (blkio_get_uint64 (bio_b, "capacity", &cap) < 0 ||
      blkio_get_int (bio_b, "request-alignment", &ra) < 0 ||
      blkio_get_bool (bio_b, "needs-mem-regions", &nmr) < 0)
    return -1;
  blkio_get_int (bio_b, "buf-alignment", &ba);
  n->req_align = ra >= 1 ? (uint32_t) ra : 1;
  n->buf_align = ba >= 1 ? (uint32_t) ba : 1;
  n->nmr = nmr;
  n->capacity = cap - cap % n->req_align;
  return 0;
}

/* Refuse device n, which is not d (loud once per device, not per
 * attempt). */
static void
bio_refuse (const struct bio_served *d, const struct bio_served *n)
{
  bool quiet = bio_quiet;

  bio_quiet = refused == n->capacity;
  refused = n->capacity;
  bio_report ("refusing the reconnected device: it is not the one "
              "served before (capacity %" PRIu64 " was %" PRIu64
              ", request-alignment %u was %u, buf-alignment %u was %u)",
              n->capacity, d->capacity, n->req_align, d->req_align,
              n->buf_align, d->buf_align);
  bio_quiet = quiet;
}

static bool
bio_same_device (const struct bio_served *d, const struct bio_served *n,
                 bool resized)
{
  return n->req_align == d->req_align && n->buf_align == d->buf_align &&
    n->nmr == d->nmr && (resized || n->capacity == d->capacity);
}

/* Create the instance again, with the queue count it had.  It must be the
 * same device: same block size and buffer needs, and (unless resized is
 * allowed) the same size.  A different device is refused before its
 * values are stored, since requests read them meanwhile, and the next
 * attempt compares with the device served before (restored if
 * bio_read_geometry failed part-way). */
int
bio_restart_instance (bool readonly, bool resized)
{
  const struct bio_served d = {
    .capacity = bio_capacity, .req_align = bio_req_align,
    .buf_align = bio_buf_align, .nmr = bio_needs_mem_regions,
  };
  struct bio_served n;

  if (bio_start_instance (readonly, bio_nqueues, NULL) == -1)
    return -1;
  bio_print_gets ();
  if (bio_peek_identity (&n) == -1) {
    bio_report ("reading device properties: %s", blkio_get_error_msg ());
    return -1;
  }
  if (!bio_same_device (&d, &n, resized)) {
    bio_refuse (&d, &n);
    return -1;
  }
  if (bio_read_geometry () == -1) {
    bio_served_restore (&d);
    return -1;
  }
  refused = UINT64_MAX;
  return 0;
}

/* Free the pool and destroy the instance (at unload). */
void
bio_close_instance (void)
{
  bio_pool_destroy ();
  if (bio_b)
    bio_lend_destroy_instance (&bio_b);
}
