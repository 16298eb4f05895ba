/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nbdkit-blkio-plugin: serve a libblkio device (NVMe, vhost-user, vDPA,
 * VFIO, io_uring) over NBD.
 *
 * Unlike the upstream plugin, which opens one libblkio instance per
 * connection and serializes all requests on a single queue, this plugin
 * opens ONE instance in .get_ready, shares it between all connections, and
 * spreads the nbdkit worker threads over several libblkio queues so that
 * many requests are in flight at once.
 *
 * Per queue, a mutex is held only to enqueue, submit and hand out
 * completions; bounce-buffer copies happen outside it.  Each queue has a
 * completion thread that blocks on the queue's completion fd.  Whoever
 * harvests a completion (that thread, or a submitter whose blkioq_do_io()
 * returned it) finishes it: copies a bounced read out, frees the slot and,
 * once the last piece of a request is done, wakes its owner with a futex on
 * the owner's own counter.  A waiting nbdkit thread therefore sleeps exactly
 * once per request and never touches the queue lock again after submitting.
 * The completion thread parks while its queue is idle; a request that finds
 * the queue idle waits on the completion fd itself, which saves the hand-over
 * (at most one thread ever waits on a completion fd).
 * Every request and sub-request is described by a preallocated slot, so the
 * I/O path does not allocate.
 *
 * If blkioq_do_io() itself fails (the backend is gone, the queue is
 * broken), the queue is dead: every request in flight on it fails at once
 * with that error, and so does every later request on it.
 */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include <blkio.h>

/* Requests from all connections and all worker threads run at the same
 * time; each libblkio queue has its own lock (see struct bio_queue). */
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

#ifndef BIO_LIBRARY
#define BIO_LIBRARY "libblkio"
#endif
#ifndef BIO_LIBRARY_VERSION
#define BIO_LIBRARY_VERSION "unknown"
#endif

/* Drivers libblkio 1.x may offer; --dump-plugin reports those that the
 * linked library can create. */
static const char *const bio_known_drivers[] = {
  "io_uring", "nvme-io_uring", "virtio-blk-vfio-pci",
  "virtio-blk-vhost-user", "virtio-blk-vhost-vdpa",
};

/* Bounce buffers (only used when the driver needs mapped memory regions or
 * buffers aligned more than nbdkit's are): each queue owns one region,
 * carved into BIO_BOUNCE_SLOTS chunks of BIO_BOUNCE_CHUNK bytes.  Larger
 * requests are split, never refused. */
#define BIO_BOUNCE_CHUNK (1024 * 1024)
#define BIO_BOUNCE_SLOTS 16

/* Bounced writes larger than this are copied without the queue lock (it
 * is dropped and taken again); smaller ones are cheaper to copy under it. */
#define BIO_COPY_UNLOCKED (16 * 1024)

/* Completions handed out per blkioq_do_io() call. */
#define BIO_HARVEST 64

/* While requests are in flight, a completion thread whose fd stays silent
 * this long calls blkioq_do_io() anyway: a backend that died without a
 * word is noticed, and a missed notification costs a stall, not a hang. */
#define BIO_POLL_SAFETY_MS 1000

/* ---- configuration ---- */

/* A KEY=VALUE passed on to libblkio.  pre_err/pre_msg keep the result of
 * the attempt before blkio_connect() so that a later failure can report the
 * more useful of the two messages. */
struct bio_prop {
  char *key;
  char *value;
  int pre_err;
  char *pre_msg;
};

static char *bio_driver;
static struct bio_prop *bio_props;
static size_t bio_nprops;
static char **bio_gets;
static size_t bio_ngets;
static int bio_user_num_queues;         /* 0: choose */

/* ---- the shared instance ---- */

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
  char *copy_to;                /* read through bounce: destination */
  uint32_t len;
};

/* The state of the request an nbdkit thread runs (one per thread, see
 * bio_thread_waiter).  Only the queue lock's holder changes it; the owner
 * reads it once remaining is 0 (futex word, release/acquire). */
struct bio_waiter {
  _Atomic uint32_t remaining;           /* pieces in flight */
  int err;                              /* first error (positive errno) */
  char msg[256];
};

/* A thread's waiter outlives each request: the thread that finishes the
 * last piece may still be making its futex wake on `remaining` after the
 * owner saw 0 and returned.  On the owner's stack that wake would hit
 * memory that is no longer the owner's; here it is at worst a spurious
 * wake-up of the thread's next wait, which rechecks its condition. */
static __thread struct bio_waiter bio_thread_waiter;

struct bio_queue {
  pthread_mutex_t lock;
  struct blkioq *q;
  int fd;                               /* completion fd */
  struct bio_slot *free_slots;
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

static struct blkio *bio_b;
static bool bio_readonly;               /* instance opened read-only */
static struct bio_queue *bio_queues;
static int bio_nqueues;
static atomic_uint bio_next_queue;
static __thread struct bio_queue *bio_thread_queue;
static pthread_key_t bio_thread_key;    /* its destructor counts users down */
static bool bio_have_thread_key;
static void bio_thread_exit (void *arg);
static int bio_stop_fd = -1;            /* readable: completion threads exit */
static atomic_bool bio_stopping;
/* Threads beyond the pool's queues get a queue of their own (io_uring
 * drivers without num-queues=): see bio_my_queue. */
static bool bio_private_queues;
static unsigned bio_private_entries;
static pthread_mutex_t bio_private_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bio_queue *bio_private_list;
static void bio_queue_free (struct bio_queue *bq);

/* Device geometry, read once after blkio_start(). */
static uint64_t bio_capacity;
static uint32_t bio_req_align;          /* >= 1, power of 2 */
static uint32_t bio_buf_align;          /* >= 1 */
static uint32_t bio_preferred;
static uint64_t bio_rw_max;             /* per read/write sub-request */
static uint64_t bio_zero_max;
static uint64_t bio_discard_max;
static uint64_t bio_discard_align;      /* >= bio_req_align */
static uint64_t bio_discard_offset;
static bool bio_needs_mem_regions;
static bool bio_have_bounce;

static bool
bio_is_power_of_2 (uint64_t v)
{
  return v != 0 && (v & (v - 1)) == 0;
}

/* Round v down to a multiple of align (any align >= 1). */
static uint64_t
bio_round_down (uint64_t v, uint64_t align)
{
  return v - v % align;
}

/* The smallest non-zero of a and b (0 means unlimited). */
static uint64_t
bio_min_limit (uint64_t a, uint64_t b)
{
  if (a == 0)
    return b;
  if (b == 0)
    return a;
  return a < b ? a : b;
}

static void bio_futex_wake (_Atomic uint32_t *word, int n);

/* Stop the completion threads (idempotent). */
static void
bio_stop_threads (void)
{
  uint64_t one = 1;
  int i;

  if (bio_stop_fd == -1)
    return;
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
  close (bio_stop_fd);
  bio_stop_fd = -1;
}

/* Called when the plugin is unloaded. */
static void
bio_unload (void)
{
  int i;
  size_t k;

  bio_stop_threads ();
  /* nbdkit's worker threads are gone; no destructor may run later in an
   * unloaded plugin. */
  if (bio_have_thread_key) {
    pthread_key_delete (bio_thread_key);
    bio_have_thread_key = false;
  }
  if (bio_queues) {
    for (i = 0; i < bio_nqueues; i++)
      bio_queue_free (&bio_queues[i]);
    free (bio_queues);
  }
  while (bio_private_list) {
    struct bio_queue *bq = bio_private_list;

    bio_private_list = bq->next_private;
    bio_queue_free (bq);
    free (bq);
  }
  if (bio_b)
    blkio_destroy (&bio_b);

  free (bio_driver);
  for (k = 0; k < bio_nprops; k++) {
    free (bio_props[k].key);
    free (bio_props[k].value);
    free (bio_props[k].pre_msg);
  }
  free (bio_props);
  for (k = 0; k < bio_ngets; k++)
    free (bio_gets[k]);
  free (bio_gets);
}

static int
bio_add_prop (const char *key, const char *value)
{
  struct bio_prop *p;

  p = realloc (bio_props, (bio_nprops + 1) * sizeof *p);
  if (p == NULL) {
    nbdkit_error ("realloc: %m");
    return -1;
  }
  bio_props = p;
  p = &bio_props[bio_nprops];
  memset (p, 0, sizeof *p);
  p->key = strdup (key);
  p->value = strdup (value);
  if (p->key == NULL || p->value == NULL) {
    nbdkit_error ("strdup: %m");
    free (p->key);
    free (p->value);
    return -1;
  }
  bio_nprops++;
  return 0;
}

/* Called for each key=value passed on the command line. */
static int
bio_config (const char *key, const char *value)
{
  if (strcmp (key, "driver") == 0) {
    if (bio_driver) {
      nbdkit_error ("'driver' parameter specified more than once");
      return -1;
    }
    bio_driver = strdup (value);
    if (bio_driver == NULL) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
  }
  else if (strcmp (key, "get") == 0) {
    char **g = realloc (bio_gets, (bio_ngets + 1) * sizeof *g);
    if (g == NULL) {
      nbdkit_error ("realloc: %m");
      return -1;
    }
    bio_gets = g;
    bio_gets[bio_ngets] = strdup (value);
    if (bio_gets[bio_ngets] == NULL) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
    bio_ngets++;
  }
  else if (strcmp (key, "read-only") == 0) {
    /* The export's read-only-ness is nbdkit's business: it must agree with
     * what the NBD handshake advertises. */
    nbdkit_error ("do not set the read-only property (read-only=%s), "
                  "use the nbdkit -r flag instead", value);
    return -1;
  }
  else if (strcmp (key, "num-queues") == 0) {
    char *end;
    long n;

    errno = 0;
    n = strtol (value, &end, 10);
    if (errno || end == value || *end != '\0' || n < 1 || n > INT_MAX) {
      nbdkit_error ("num-queues=%s: expected a number of queues >= 1", value);
      return -1;
    }
    bio_user_num_queues = n;
  }
  else if (strcmp (key, "path") == 0) {
    char *abs = nbdkit_absolute_path (value);
    int r;

    if (abs == NULL)
      return -1;
    r = bio_add_prop (key, abs);
    free (abs);
    return r;
  }
  else
    return bio_add_prop (key, value);

  return 0;
}

/* Check the parameters once they have all been read. */
static int
bio_config_complete (void)
{
  if (bio_driver == NULL) {
    nbdkit_error ("you must supply the driver=<DRIVER> parameter "
                  "after the plugin name on the command line");
    return -1;
  }
  return 0;
}

#define bio_config_help \
  "[driver=]DRIVER     (required) libblkio driver, eg. io_uring,\n" \
  "                    virtio-blk-vhost-user, nvme-io_uring.\n" \
  "path=PATH           Path of the file, socket or device.\n" \
  "num-queues=N        Number of libblkio queues (default: io_uring\n" \
  "                    drivers one per busy thread, else CPUs/2, max 16).\n" \
  "PROPERTY=VALUE      Set any other libblkio property.\n" \
  "get=PROPERTY        Print a property in debug output after start."

/* Called by --dump-plugin: which library, and which drivers it offers. */
static void
bio_dump_plugin (void)
{
  size_t i;
  bool first = true;

  printf ("blkio_library=%s\n", BIO_LIBRARY);
  printf ("blkio_library_version=%s\n", BIO_LIBRARY_VERSION);
  printf ("blkio_drivers=");
  for (i = 0; i < sizeof bio_known_drivers / sizeof bio_known_drivers[0];
       i++) {
    struct blkio *b = NULL;

    if (blkio_create (bio_known_drivers[i], &b) == 0) {
      printf ("%s%s", first ? "" : ",", bio_known_drivers[i]);
      first = false;
      blkio_destroy (&b);
    }
  }
  printf ("\n");
}

/* Was nbdkit started with -r/--readonly?  nbdkit 1.32 does not tell plugins
 * before the first connection, but the instance is opened in .get_ready, so
 * read the server's own command line. */
static bool
bio_server_readonly (void)
{
  /* nbdkit's options that take an argument as the next word. */
  static const char short_with_arg[] = "DegiPptUu";
  static const char *const long_with_arg[] = {
    "--debug", "--exportname", "--filter", "--group", "--ipaddr", "--log",
    "--mask-handshake", "--pidfile", "--port", "--run", "--selinux-label",
    "--threads", "--tls", "--tls-certificates", "--tls-psk", "--unix",
    "--user",
  };
  char buf[16384];
  ssize_t n;
  size_t len = 0;
  int fd;
  bool ro = false, first = true, skip_next = false;
  const char *arg;

  fd = open ("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return false;
  while (len < sizeof buf - 1 &&
         (n = read (fd, buf + len, sizeof buf - 1 - len)) > 0)
    len += n;
  close (fd);
  buf[len] = '\0';

  for (arg = buf; arg < buf + len; arg += strlen (arg) + 1) {
    if (first) {                /* argv[0] */
      first = false;
      continue;
    }
    if (skip_next) {
      skip_next = false;
      continue;
    }
    if (strcmp (arg, "--") == 0)
      break;
    /* The plugin name and KEY=VALUE: nbdkit's getopt permutes, so options
     * may follow them ("nbdkit PLUGIN -r ..."). */
    if (arg[0] != '-' || arg[1] == '\0')
      continue;
    if (arg[1] == '-') {
      size_t i;

      if (strcmp (arg, "--readonly") == 0 || strcmp (arg, "--read-only") == 0)
        ro = true;
      if (strchr (arg, '=') == NULL)
        for (i = 0; i < sizeof long_with_arg / sizeof long_with_arg[0]; i++)
          if (strcmp (arg, long_with_arg[i]) == 0)
            skip_next = true;
      continue;
    }
    /* A cluster of short options: -fr, -rU sock, -Usock. */
    for (const char *c = arg + 1; *c; c++) {
      if (*c == 'r')
        ro = true;
      if (strchr (short_with_arg, *c)) {
        if (c[1] == '\0')
          skip_next = true;
        break;
      }
    }
  }
  return ro;
}

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

/* Read the device limits that the I/O path depends on. */
static int
bio_read_geometry (void)
{
  int ra = 1, ba = 1, oia = 0, ois = 0, mt = 0, msl = 0, da = 0, dao = 0;
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
  bio_needs_mem_regions = nmr;

  /* Preferred: the optimal I/O size or alignment if sane, at least 4 KiB
   * (nbdkit requires a power of 2 in [512, 32 MiB], >= the minimum). */
  bio_preferred = 4096;
  if (oia > 0 && bio_is_power_of_2 (oia) && (uint32_t) oia > bio_preferred)
    bio_preferred = oia;
  if (ois > 0 && bio_is_power_of_2 (ois) && (uint32_t) ois > bio_preferred)
    bio_preferred = ois;
  if (bio_preferred > 32 * 1024 * 1024)
    bio_preferred = 32 * 1024 * 1024;
  if (bio_preferred < bio_req_align)
    bio_preferred = bio_req_align;

  bio_rw_max = bio_min_limit (mt > 0 ? mt : 0, msl > 0 ? msl : 0);
  bio_zero_max = mwz;
  bio_discard_max = mdl;
  bio_discard_align = bio_req_align;
  if (da > 0 && (uint64_t) da > bio_discard_align)
    bio_discard_align = da;
  bio_discard_offset = dao > 0 ? (uint64_t) dao % bio_discard_align : 0;

  /* Limits are in bytes but every sub-request must stay aligned. */
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

  nbdkit_debug ("capacity=%" PRIu64 " request-alignment=%u buf-alignment=%u "
                "needs-mem-regions=%d rw-max=%" PRIu64 " zero-max=%" PRIu64
                " discard-max=%" PRIu64 " discard-alignment=%" PRIu64,
                bio_capacity, bio_req_align, bio_buf_align,
                bio_needs_mem_regions, bio_rw_max, bio_zero_max,
                bio_discard_max, bio_discard_align);
  return 0;
}

/* Set up queue i after blkio_start(). */
static int
bio_queue_init (struct bio_queue *bq, int i, unsigned entries)
{
  unsigned k;
  int r;

  pthread_mutex_init (&bq->lock, NULL);
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

  /* With bounce buffers a slot is a chunk, so fewer of them. */
  bq->nslots = bio_have_bounce && entries > BIO_BOUNCE_SLOTS
    ? BIO_BOUNCE_SLOTS : entries;
  bq->slots = calloc (bq->nslots, sizeof *bq->slots);
  if (bq->slots == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }

  if (bio_have_bounce) {
    r = blkio_alloc_mem_region (bio_b, &bq->region,
                                (size_t) bq->nslots * BIO_BOUNCE_CHUNK);
    if (r < 0) {
      nbdkit_error ("blkio_alloc_mem_region: %u bytes for queue %d: %s",
                    bq->nslots * BIO_BOUNCE_CHUNK, i, blkio_get_error_msg ());
      return -1;
    }
    bq->have_region = true;
    if (bio_needs_mem_regions) {
      r = blkio_map_mem_region (bio_b, &bq->region);
      if (r < 0) {
        nbdkit_error ("blkio_map_mem_region: queue %d: %s",
                      i, blkio_get_error_msg ());
        return -1;
      }
      bq->region_mapped = true;
    }
  }

  for (k = 0; k < bq->nslots; k++) {
    struct bio_slot *s = &bq->slots[k];

    if (bio_have_bounce)
      s->bounce = (char *) bq->region.addr + (size_t) k * BIO_BOUNCE_CHUNK;
    s->next = bq->free_slots;
    bq->free_slots = s;
  }
  return 0;
}

/* Release what bio_queue_init set up (not the libblkio queue itself). */
static void
bio_queue_free (struct bio_queue *bq)
{
  if (bq->region_mapped)
    blkio_unmap_mem_region (bio_b, &bq->region);
  if (bq->have_region)
    blkio_free_mem_region (bio_b, &bq->region);
  free (bq->slots);
  pthread_mutex_destroy (&bq->lock);
}

/* Default queue count of the io_uring drivers: nbdkit's default number
 * of worker threads per connection. */
#define BIO_INLINE_QUEUES 16

/* Whether the driver's queues are io_uring rings, which run requests in
 * the submitting thread rather than on a device of their own. */
static bool
bio_queue_runs_inline (void)
{
  return strcmp (bio_driver, "io_uring") == 0 ||
         strcmp (bio_driver, "nvme-io_uring") == 0;
}

/* Open the shared instance: create, connect, set properties, start, and
 * set up the queues.  Errors here are shown to the user. */
static int
bio_get_ready (void)
{
  char errbuf[1024];
  size_t i;
  int r, max_queues = 1, nq, entries = 0;

  bio_readonly = bio_server_readonly ();
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
    nbdkit_error ("%s", errbuf);
    return -1;
  }

  /* Properties the created state refused. */
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
    nbdkit_error ("error setting property: %s=%s: %s", p->key, p->value, msg);
    return -1;
  }

  if (blkio_get_int (bio_b, "max-queues", &max_queues) < 0 || max_queues < 1)
    max_queues = 1;
  if (bio_user_num_queues > 0)
    nq = bio_user_num_queues;
  else if (bio_queue_runs_inline ()) {
    /* An io_uring queue does its work (a cached read's copy, the
     * submission itself) in the thread that calls blkioq_do_io(), under
     * the queue's lock: a shared queue serializes that work.  A queue per
     * worker thread of a connection (nbdkit's default is 16) lets the
     * threads run in parallel, and a ring costs only a little memory.
     * Measured in bench/plugin-fio.sh: 4k random reads 1.05x, 1M reads
     * 1.04x the throughput of one queue. */
    nq = BIO_INLINE_QUEUES;
    if (nq > max_queues)
      nq = max_queues;
    bio_private_queues = true;
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
    if (nq > max_queues)
      nq = max_queues;
  }
  r = blkio_set_int (bio_b, "num-queues", nq);
  if (r < 0) {
    nbdkit_error ("error setting property: num-queues=%d: %s",
                  nq, blkio_get_error_msg ());
    return -1;
  }

  /* How many requests a queue takes at once (io_uring: num-entries,
   * virtio-blk: queue-size); not every driver has either. */
  if (blkio_get_int (bio_b, "num-entries", &entries) < 0 &&
      blkio_get_int (bio_b, "queue-size", &entries) < 0)
    entries = 128;
  if (entries < 1)
    entries = 1;
  if (entries > 1024)
    entries = 1024;

  r = blkio_start (bio_b);
  if (r < 0) {
    nbdkit_error ("blkio_start: %s", blkio_get_error_msg ());
    return -1;
  }

  for (i = 0; i < bio_ngets; i++) {
    char *value = NULL;

    if (blkio_get_str (bio_b, bio_gets[i], &value) < 0) {
      nbdkit_error ("error getting property: %s: %s",
                    bio_gets[i], blkio_get_error_msg ());
      return -1;
    }
    nbdkit_debug ("get: %s=%s", bio_gets[i], value);
    free (value);
  }

  if (bio_read_geometry () == -1)
    return -1;
  bio_have_bounce = bio_needs_mem_regions || bio_buf_align > 1;
  /* Private queues are cheap only without bounce buffers of their own. */
  if (bio_private_queues) {
    bool can_add = false;

    bio_private_queues = !bio_have_bounce &&
      blkio_get_bool (bio_b, "can-add-queues", &can_add) == 0 && can_add;
    bio_private_entries = entries;
  }

  bio_queues = calloc (nq, sizeof *bio_queues);
  if (bio_queues == NULL) {
    nbdkit_error ("calloc: %m");
    return -1;
  }
  /* Without the key no queue ever counts as private: correct, slower. */
  bio_have_thread_key =
    pthread_key_create (&bio_thread_key, bio_thread_exit) == 0;
  for (i = 0; i < (size_t) nq; i++) {
    bio_nqueues = i + 1;        /* so that unload cleans up this one too */
    if (bio_queue_init (&bio_queues[i], i, entries) == -1)
      return -1;
  }
  nbdkit_debug ("%s: %d queue(s), %u slot(s) each, %s, %s",
                bio_driver, nq, bio_queues[0].nslots,
                bio_have_bounce ? "bounce buffers" : "zero copy",
                bio_readonly ? "read-only" : "read-write");
  return 0;
}

static void *bio_completion_thread (void *arg);

/* Start one completion thread per queue, now that nbdkit has forked into
 * the background (threads do not survive fork). */
static int
bio_after_fork (void)
{
  int i, err;

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

/* All connections are gone: stop the completion threads before unload
 * destroys the instance. */
static void
bio_cleanup (void)
{
  bio_stop_threads ();
}

/* The handle only records whether a connection may write. */
static char bio_handle_ro, bio_handle_rw;

/* Opening a connection is cheap: the instance is shared. */
static void *
bio_open (int readonly)
{
  return readonly || bio_readonly ? &bio_handle_ro : &bio_handle_rw;
}

static int64_t
bio_get_size (void *handle)
{
  return bio_capacity;
}

static int
bio_block_size (void *handle,
                uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
  *minimum = bio_req_align;
  *preferred = bio_preferred;
  *maximum = 0xffffffff;        /* every request is split as needed */
  return 0;
}

static int
bio_can_write (void *handle)
{
  return handle == &bio_handle_rw;
}

static int
bio_can_flush (void *handle)
{
  return 1;
}

/* BLKIO_REQ_FUA works with every driver (emulated with a flush when the
 * device lacks it), so it is as good as native for nbdkit. */
static int
bio_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
bio_can_trim (void *handle)
{
  return bio_can_write (handle);
}

/* Native: write zeroes goes to the device (plugins return a boolean). */
static int
bio_can_zero (void *handle)
{
  return 1;
}

static int
bio_can_fast_zero (void *handle)
{
  return 1;
}

static int
bio_can_cache (void *handle)
{
  return NBDKIT_CACHE_EMULATE;
}

/* One shared instance: a flush on any connection persists the completed
 * writes of all connections. */
static int
bio_can_multi_conn (void *handle)
{
  return 1;
}

static int
bio_is_rotational (void *handle)
{
  return 0;
}

/* ---- the I/O path ---- */

enum bio_kind { BIO_READ, BIO_WRITE, BIO_ZEROES, BIO_DISCARD, BIO_FLUSH };

struct bio_op {
  enum bio_kind kind;
  char *buf;
  uint64_t offset;
  uint64_t count;
  uint32_t flags;               /* BLKIO_REQ_* */
  uint64_t max_len;             /* per sub-request, 0 = unlimited */
  bool bounce;
  /* On failure: what went wrong, in the thread's waiter (valid until the
   * thread's next request; an array here would be zeroed per request). */
  const char *msg;
};

/* A thread that exits no longer uses its queue (all of its requests
 * have completed by now). */
static void
bio_thread_exit (void *arg)
{
  struct bio_queue *bq = arg;

  atomic_fetch_sub (&bq->users, 1);
}

/* Claim bq for the calling thread alone if nobody uses it. */
static bool
bio_claim (struct bio_queue *bq)
{
  unsigned idle = 0;

  return atomic_compare_exchange_strong (&bq->users, &idle, 1);
}

/* A private queue for the calling thread: one a finished thread left, or
 * a new one.  NULL if none can be added (the caller shares a pool queue).
 * Private queues are kept, not removed, so that libblkio's queue table
 * (whose indices are never reused) stays as large as the most threads
 * nbdkit ever ran at once. */
static struct bio_queue *
bio_private_queue (void)
{
  struct bio_queue *bq;
  int index;

  pthread_mutex_lock (&bio_private_lock);
  for (bq = bio_private_list; bq; bq = bq->next_private)
    if (bio_claim (bq))
      goto out;
  bq = aligned_alloc (64, sizeof *bq);
  if (bq == NULL)
    goto out;
  memset (bq, 0, sizeof *bq);
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

/*
 * The queue of the calling thread.  A pool queue nobody uses yet, else
 * (io_uring drivers: a queue costs a ring and runs its requests in the
 * caller) a queue of the thread's own, so that every thread of every
 * connection takes the lone-request path; else the pool round robin.
 */
static struct bio_queue *
bio_my_queue (void)
{
  if (bio_thread_queue == NULL) {
    struct bio_queue *bq = NULL;
    int i;

    if (bio_private_queues && bio_have_thread_key) {
      for (i = 0; i < bio_nqueues && !bq; i++)
        if (bio_claim (&bio_queues[i]))
          bq = &bio_queues[i];
      if (!bq)
        bq = bio_private_queue ();
      /* Without the destructor the thread's exit would go unnoticed: a
       * pool queue then stays counted (shared, but correct); a private
       * queue, which has no completion thread, must never be shared. */
      if (bq && pthread_setspecific (bio_thread_key, bq) != 0) {
        if (bq->private) {
          atomic_fetch_sub (&bq->users, 1);
          bq = NULL;
        }
        else
          atomic_fetch_add (&bq->users, 1);
      }
    }
    if (!bq) {
      unsigned n = atomic_fetch_add_explicit (&bio_next_queue, 1,
                                              memory_order_relaxed);

      bq = &bio_queues[n % bio_nqueues];
      atomic_fetch_add (&bq->users, 1);
      if (!bio_have_thread_key ||
          pthread_setspecific (bio_thread_key, bq) != 0)
        atomic_fetch_add (&bq->users, 1);   /* never counted down: shared */
    }
    bio_thread_queue = bq;
  }
  return bio_thread_queue;
}

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
static void
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

/* Count one piece of w as finished; called with the queue lock held.
 * Returns true if that was the last one and w must be woken. */
static bool
bio_piece_done (struct bio_waiter *w)
{
  return atomic_fetch_sub_explicit (&w->remaining, 1,
                                    memory_order_release) == 1;
}

/* blkioq_do_io() failed: nothing more can be expected from this queue.
 * Fail every request in flight and every request to come; the slots stay
 * lost, since libblkio may still own their buffers.  Called with the lock
 * held; the owners are woken here (rare path).
 *
 * Bounce chunks are never reused, so a device that still writes to one
 * harms nobody.  A zero-copy read (io_uring) that the kernel completes
 * later still lands in nbdkit's buffer: waiting for it instead would mean
 * waiting on a queue that no longer reports anything, i.e. forever, so
 * failing the request is the lesser evil. */
static void
bio_queue_die (struct bio_queue *bq, int err, const char *msg)
{
  unsigned k;

  if (bq->dead)
    return;
  bq->dead = err;
  snprintf (bq->dead_msg, sizeof bq->dead_msg, "blkioq_do_io: %s",
            msg && msg[0] ? msg : strerror (err));
  nbdkit_error ("queue %td failed, its requests fail from now on: %s",
                bq - bio_queues, bq->dead_msg);
  for (k = 0; k < bq->nslots; k++) {
    struct bio_slot *s = &bq->slots[k];
    struct bio_waiter *w = s->owner;

    if (s->state != BIO_SLOT_INFLIGHT)
      continue;
    s->state = BIO_SLOT_LOST;
    s->owner = NULL;
    bq->inflight--;
    bq->unharvested--;
    bio_set_err (w, err, bq->dead_msg);
    if (bio_piece_done (w))
      bio_futex_wake (&w->remaining, 1);
  }
  /* Threads waiting for a slot must see the queue die. */
  atomic_fetch_add (&bq->slot_gen, 1);
  bio_futex_wake (&bq->slot_gen, INT_MAX);
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
      bio_queue_die (bq, -n, blkio_get_error_msg ());
      break;
    }
    for (i = 0; i < n; i++) {
      struct bio_slot *s = c[i].user_data;

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
  s->next = bq->free_slots;
  bq->free_slots = s;
  bq->inflight--;
  return bio_piece_done (w) && w != self ? &w->remaining : NULL;
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
static void *
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

/* Queue the next piece of op on slot s; returns its length. */
static uint64_t
bio_enqueue (struct bio_queue *bq, struct bio_op *op, struct bio_slot *s,
             bool copied)
{
  uint64_t len = op->count;

  if (op->max_len && len > op->max_len)
    len = op->max_len;
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

/* Run op to completion on the calling thread's queue.  Returns 0 or a
 * negative errno, with op->msg set. */
static int
bio_run (struct bio_op *op)
{
  struct bio_queue *bq = bio_my_queue ();
  struct bio_waiter *w = &bio_thread_waiter;
  bool todo = true;
  uint32_t left;

  atomic_init (&w->remaining, 0);
  w->err = 0;
  w->msg[0] = '\0';

  pthread_mutex_lock (&bq->lock);
  while (todo) {
    bool queued = false;

    if (bq->dead) {
      bio_set_err (w, bq->dead, bq->dead_msg);
      break;
    }
    /* A large bounced write: take the slots, copy into them without the
     * lock, then queue them. */
    if (op->bounce && op->kind == BIO_WRITE && op->count > BIO_COPY_UNLOCKED &&
        bq->free_slots) {
      struct bio_slot *got = NULL, **tail = &got, *sl;
      uint64_t left = op->count, off = 0;

      while (left && bq->free_slots) {
        sl = bq->free_slots;
        bq->free_slots = sl->next;
        sl->state = BIO_SLOT_FILLING;
        sl->next = NULL;
        *tail = sl;
        tail = &sl->next;
        left -= op->max_len && left > op->max_len ? op->max_len : left;
      }
      pthread_mutex_unlock (&bq->lock);
      for (sl = got; sl; sl = sl->next) {
        uint64_t len = op->count - off;

        if (op->max_len && len > op->max_len)
          len = op->max_len;
        memcpy (sl->bounce, op->buf + off, len);
        off += len;
      }
      pthread_mutex_lock (&bq->lock);
      while (got) {
        sl = got;
        got = sl->next;
        if (bq->dead) {
          sl->state = BIO_SLOT_FREE;
          sl->next = bq->free_slots;
          bq->free_slots = sl;
          continue;
        }
        todo = bio_queue_piece (bq, op, w, sl, true);
        queued = true;
      }
      if (bq->dead)
        continue;               /* fails the request at the top */
    }

    /* Queue as many pieces as there are free slots; small writes are
     * copied into their bounce chunks here, under the lock. */
    while (todo && bq->free_slots) {
      struct bio_slot *s = bq->free_slots;

      bq->free_slots = s->next;
      todo = bio_queue_piece (bq, op, w, s, false);
      queued = true;
    }
    if (queued) {
      /* Submits, and hands back whatever else completed meanwhile; alone
       * with everything queued, also waits for the first completion. */
      bio_harvest_finish (bq, w, !todo && bio_alone (bq) ? 1 : 0);
      continue;
    }

    /* Out of slots: wait until some are freed (or the queue dies);
     * somebody must be harvesting meanwhile.  Alone, that is us. */
    if (bio_alone (bq) && bq->unharvested > 0) {
      bio_harvest_finish (bq, w, 1);
      continue;
    }
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
  }

  /* Alone on the queue: wait inside blkioq_do_io().  Once nothing of
   * ours is left in libblkio, whoever took it off finishes it. */
  if (atomic_load (&w->remaining) != 0 && bio_alone (bq)) {
    while (atomic_load (&w->remaining) != 0 && bq->unharvested > 0 &&
           !bq->dead)
      bio_harvest_finish (bq, w, 1);
    pthread_mutex_unlock (&bq->lock);
  }
  /* Nobody waits on the completion fd (the queue was idle): wait on it
   * ourselves rather than wake the completion thread to hand us our
   * completion.  Others who queue meanwhile are served by us, and by the
   * completion thread once we leave. */
  else if (atomic_load (&w->remaining) != 0 && bq->ct_parked &&
           !bq->owner_reaping) {
    bool wake_ct;

    bq->owner_reaping = true;
    if (!bq->fd_armed) {
      bio_fd_arm (bq, true);
      bio_harvest_finish (bq, w, 0);
    }
    while (atomic_load (&w->remaining) != 0) {
      pthread_mutex_unlock (&bq->lock);
      bio_wait_fd (bq, false);
      pthread_mutex_lock (&bq->lock);
      bio_harvest_finish (bq, w, 0);
    }
    bq->owner_reaping = false;
    wake_ct = bq->inflight > 0 && bio_unpark (bq);
    if (bq->ct_parked)
      bio_fd_arm (bq, false);
    pthread_mutex_unlock (&bq->lock);
    if (wake_ct)
      bio_unpark_wake (bq);
  }
  else
    pthread_mutex_unlock (&bq->lock);

  /* Sleep until the last piece is finished; whoever finishes it has
   * written err/msg before the release that brings remaining to 0. */
  while ((left = atomic_load_explicit (&w->remaining,
                                       memory_order_acquire)) != 0)
    bio_futex_wait (&w->remaining, left);

  if (w->err) {
    op->msg = w->msg;
    return -w->err;
  }
  return 0;
}

/* Report a failed request to nbdkit (and through it to the client). */
static int
bio_fail (const char *what, uint64_t offset, uint64_t count,
          const struct bio_op *op, int r)
{
  nbdkit_error ("%s: offset %" PRIu64 " count %" PRIu64 ": %s",
                what, offset, count, op->msg);
  nbdkit_set_error (-r);
  return -1;
}

/* Would this buffer need bouncing? */
static bool
bio_must_bounce (const void *buf, uint64_t count)
{
  if (bio_needs_mem_regions)
    return true;
  return ((uintptr_t) buf | count) % bio_buf_align != 0;
}

static uint64_t
bio_rw_limit (bool bounce)
{
  if (bounce)
    return bio_min_limit (bio_rw_max, bio_round_down (BIO_BOUNCE_CHUNK,
                                                      bio_req_align));
  return bio_rw_max;
}

/* Read or write through bounce buffers when the buffer needs them, split
 * by the transfer limits. */
static int
bio_rw (struct bio_op *op, const char *what)
{
  /* bio_run() consumes op; report the request as the client sent it. */
  const uint64_t offset = op->offset;
  const uint64_t count = op->count;
  int r;

  if (count == 0)
    return 0;
  op->bounce = bio_must_bounce (op->buf, count);
  op->max_len = bio_rw_limit (op->bounce);
  r = bio_run (op);
  return r < 0 ? bio_fail (what, offset, count, op, r) : 0;
}

/* Read data. */
static int
bio_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  struct bio_op op = {
    .kind = BIO_READ, .buf = buf, .offset = offset, .count = count,
  };

  return bio_rw (&op, "read");
}

/* Write data. */
static int
bio_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  struct bio_op op = {
    .kind = BIO_WRITE, .buf = (char *) buf, .offset = offset, .count = count,
    .flags = flags & NBDKIT_FLAG_FUA ? BLKIO_REQ_FUA : 0,
  };

  return bio_rw (&op, "write");
}

/* Flush to persistent storage. */
static int
bio_flush (void *handle, uint32_t flags)
{
  struct bio_op op = { .kind = BIO_FLUSH, .count = 0 };
  int r;

  r = bio_run (&op);
  return r < 0 ? bio_fail ("flush", 0, 0, &op, r) : 0;
}

/* Write zeroes. */
static int
bio_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct bio_op op = {
    .kind = BIO_ZEROES, .offset = offset, .count = count,
    .max_len = bio_zero_max,
  };
  int r;

  if (count == 0)
    return 0;
  if (flags & NBDKIT_FLAG_FUA)
    op.flags |= BLKIO_REQ_FUA;
  if (!(flags & NBDKIT_FLAG_MAY_TRIM))
    op.flags |= BLKIO_REQ_NO_UNMAP;
  if (flags & NBDKIT_FLAG_FAST_ZERO)
    op.flags |= BLKIO_REQ_NO_FALLBACK;

  r = bio_run (&op);
  if (r == -ENOTSUP || r == -EOPNOTSUPP) {
    /* nbdkit then writes zeroes itself, or fails a fast zero. */
    nbdkit_debug ("zero: %s", op.msg);
    nbdkit_set_error (EOPNOTSUPP);
    return -1;
  }
  return r < 0 ? bio_fail ("zero", offset, count, &op, r) : 0;
}

/* Discard; advisory, so the unaligned head and tail are left alone. */
static int
bio_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  struct bio_op op = { .kind = BIO_DISCARD, .max_len = bio_discard_max };
  uint64_t start, end, off = bio_discard_offset, a = bio_discard_align;
  int r;

  end = offset + count;
  if (end < off)
    return 0;
  start = offset < off ? off : offset;
  start = (start - off + a - 1) / a * a + off;
  end = bio_round_down (end - off, a) + off;
  if (start < end) {
    op.offset = start;
    op.count = end - start;
    r = bio_run (&op);
    if (r == -ENOTSUP || r == -EOPNOTSUPP)
      nbdkit_debug ("trim: %s, ignored", op.msg);
    else if (r < 0)
      return bio_fail ("trim", offset, count, &op, r);
  }
  /* Discard takes no FUA flag: flush instead. */
  if (flags & NBDKIT_FLAG_FUA)
    return bio_flush (handle, 0);
  return 0;
}

static struct nbdkit_plugin plugin = {
  .name               = "blkio",
  .version            = PACKAGE_VERSION,
  .longname           = "nbdkit libblkio plugin",
  .description        = "libblkio devices (NVMe, vhost-user, vDPA, VFIO, "
                        "io_uring), shared and multi-queue",
  .unload             = bio_unload,
  .config             = bio_config,
  .config_complete    = bio_config_complete,
  .config_help        = bio_config_help,
  .magic_config_key   = "driver",
  .dump_plugin        = bio_dump_plugin,
  .get_ready          = bio_get_ready,
  .after_fork         = bio_after_fork,
  .cleanup            = bio_cleanup,
  .open               = bio_open,
  .get_size           = bio_get_size,
  .block_size         = bio_block_size,
  .can_write          = bio_can_write,
  .can_flush          = bio_can_flush,
  .can_fua            = bio_can_fua,
  .can_trim           = bio_can_trim,
  .can_zero           = bio_can_zero,
  .can_fast_zero      = bio_can_fast_zero,
  .can_cache          = bio_can_cache,
  .can_multi_conn     = bio_can_multi_conn,
  .is_rotational      = bio_is_rotational,
  .pread              = bio_pread,
  .pwrite             = bio_pwrite,
  .flush              = bio_flush,
  .trim               = bio_trim,
  .zero               = bio_zero,
  .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN (plugin)
