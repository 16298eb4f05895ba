/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nbdkit-blkio-plugin: serve a libblkio device (NVMe, vhost-user, vDPA,
 * VFIO, io_uring) over NBD.
 *
 * Unlike the upstream plugin, which opens one libblkio instance per
 * connection and serializes all requests on a single queue, this plugin
 * opens ONE instance in .get_ready (instance.c), shares it between all
 * connections, and spreads the nbdkit worker threads over several libblkio
 * queues (pool.c) so that many requests are in flight at once
 * (request.c).  This file holds the configuration and the NBD callbacks.
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "blkio-plugin.h"

/* Requests from all connections and all worker threads run at the same
 * time; each libblkio queue has its own lock (see struct bio_queue).  On
 * an nbdkit that cannot take that safely, bio_thread_model serializes the
 * requests of each connection. */
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

char *bio_driver;
struct bio_prop *bio_props;
size_t bio_nprops;
char **bio_gets;
size_t bio_ngets;
int bio_user_num_queues;

/* thread-model=: auto (decided by bio_thread_model), or forced. */
static int bio_forced_thread_model = -1;
/* The model chosen: serialized connections make the queue count follow
 * the connections (instance.c). */
bool bio_serialized;
/* read-split=: see BIO_READ_SPLIT. */
uint64_t bio_read_split = BIO_READ_SPLIT;
/* zoned-writable=true: serve a zoned device writable anyway. */
static bool bio_zoned_writable;

/* Called when the plugin is unloaded. */
static void
bio_unload (void)
{
  size_t k;

  bio_lend_unload ();
  bio_close_instance ();
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

/* The plugin's own behaviour: thread-model=, reconnect=,
 * reconnect-wait=, read-split=, zoned-writable=, zero-copy=. */
static int
bio_config_behaviour (const char *key, const char *value)
{
  int b;

  if (strcmp (key, "thread-model") == 0) {
    if (strcmp (value, "auto") == 0)
      bio_forced_thread_model = -1;
    else if (strcmp (value, "parallel") == 0)
      bio_forced_thread_model = NBDKIT_THREAD_MODEL_PARALLEL;
    else if (strcmp (value, "serialize_requests") == 0 ||
             strcmp (value, "serialize-requests") == 0)
      bio_forced_thread_model = NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS;
    else {
      nbdkit_error ("thread-model=%s: expected auto, parallel or "
                    "serialize_requests", value);
      return -1;
    }
    return 0;
  }
  if (strcmp (key, "reconnect-wait") == 0) {
    unsigned secs;

    if (nbdkit_parse_unsigned ("reconnect-wait", value, &secs) == -1)
      return -1;
    if (secs > 86400) {
      nbdkit_error ("reconnect-wait=%s: expected seconds, at most 86400",
                    value);
      return -1;
    }
    bio_reconnect_wait_ms = secs * 1000;
    return 0;
  }
  if (strcmp (key, "read-split") == 0) {
    int64_t size = nbdkit_parse_size (value);

    if (size == -1 || (size != 0 &&
                       (size < 4096 || size > BIO_BOUNCE_CHUNK))) {
      nbdkit_error ("read-split=%s: expected 0 (off) or a size from 4k "
                    "to 1M", value);
      return -1;
    }
    bio_read_split = size;
    return 0;
  }
  b = nbdkit_parse_bool (value);
  if (b == -1) {
    /* nbdkit's own message names only the value. */
    nbdkit_error ("%s=%s: expected a boolean (true/false, on/off, yes/no, "
                  "1/0)", key, value);
    return -1;
  }
  if (strcmp (key, "reconnect") == 0)
    bio_reconnect = b;
  else if (strcmp (key, "zero-copy") == 0)
    bio_zero_copy = b;
  else
    bio_zoned_writable = b;
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
  else if (strcmp (key, "thread-model") == 0 ||
           strcmp (key, "reconnect") == 0 ||
           strcmp (key, "reconnect-wait") == 0 ||
           strcmp (key, "read-split") == 0 ||
           strcmp (key, "zero-copy") == 0 ||
           strcmp (key, "zoned-writable") == 0)
    return bio_config_behaviour (key, value);
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
  "                    drivers one per busy thread, else CPUs/2, max 16;\n" \
  "                    8 if connections are serialized).\n" \
  "PROPERTY=VALUE      Set any other libblkio property.\n" \
  "get=PROPERTY        Print a property in debug output after start.\n" \
  "reconnect=BOOL      Re-create a lost device in the background\n" \
  "                    (default: true).\n" \
  "reconnect-wait=SECS While it is gone, requests wait this long for it\n" \
  "                    before failing with EIO (default: 0).\n" \
  "read-split=SIZE     Bounced reads above SIZE go to the device in\n" \
  "                    pieces of SIZE, each copied out as soon as it\n" \
  "                    completes (default: 256k; 0: off).\n" \
  "zero-copy=BOOL      Map nbdkit's buffers of large requests for the\n" \
  "                    device instead of copying through bounce buffers\n" \
  "                    (default: true on virtio-blk-vhost-user).\n" \
  "zoned-writable=BOOL Serve a zoned device writable (default: false).\n" \
  "thread-model=auto|parallel|serialize_requests\n" \
  "                    Default auto: parallel unless nbdkit is too old\n" \
  "                    to survive clients that hang up mid-request."

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
  printf ("blkio_zoned=%s\n", "read-only unless zoned-writable=true");
  printf ("blkio_reconnect=yes\n");
  bio_dump_errno_table ();
}

/* Open the shared instance: errors here are shown to the user. */
static int
bio_get_ready (void)
{
  if (bio_open_instance () == -1)
    return -1;
  if (bio_zoned && !bio_zoned_writable)
    nbdkit_debug ("zoned device: served read-only, since a write that is "
                  "not at its zone's write pointer fails on the device "
                  "(zoned-writable=true serves it writable)");
  return 0;
}

/* Whether the nbdkit we run in survives a client that hangs up with
 * requests in flight while other threads of its connection still send
 * replies.  Before 1.33.10 it aborts (connections.c raw_send_socket:
 * Assertion `sock >= 0'), or sends a reply into another client's new
 * socket.  nbdkit has no call that says its version: a function that
 * first came with a fixed version (nbdkit_parse_probability, 1.36) does.
 * Built against a fixed nbdkit counts too. */
static bool
bio_nbdkit_has_hangup_fix (void)
{
#if NBDKIT_VERSION_MAJOR > 1 || NBDKIT_VERSION_MINOR >= 34
  return true;
#else
  return dlsym (RTLD_DEFAULT, "nbdkit_parse_probability") != NULL;
#endif
}

/* Parallel where nbdkit can take it; else each connection's requests one
 * at a time (the connections still run in parallel, on the shared
 * instance). */
static int
bio_thread_model (void)
{
  bio_serialized = false;
  if (bio_forced_thread_model != -1) {
    bio_serialized = bio_forced_thread_model < NBDKIT_THREAD_MODEL_PARALLEL;
    return bio_forced_thread_model;
  }
  if (bio_nbdkit_has_hangup_fix ())
    return NBDKIT_THREAD_MODEL_PARALLEL;
  bio_serialized = true;
  nbdkit_debug ("this nbdkit (before 1.33.10) aborts when a client hangs up "
                "with requests in flight: serializing the requests of each "
                "connection; a fixed nbdkit, or thread-model=parallel at "
                "that risk, runs them in parallel");
  return NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS;
}

/* Start one completion thread per queue and the reconnect thread, now
 * that nbdkit has forked into the background (threads do not survive
 * fork). */
static int
bio_after_fork (void)
{
  bio_lend_after_fork ();
  if (bio_pool_start_threads () == -1)
    return -1;
  return bio_reconnect_start ();
}

/* All connections are gone: stop the threads before unload destroys the
 * instance. */
static void
bio_cleanup (void)
{
  bio_reconnect_stop ();
  bio_pool_stop_threads ();
}

/* A connection: whether it may write, the size it was given, and the
 * losses of unflushed writes it has reported (see bio_flush). */
struct bio_handle {
  bool readonly;
  uint64_t size;
  _Atomic unsigned losses_seen;
};

/* The size of path= now, for the drivers whose device the plugin can look
 * at itself (a file or block device), or 0 if unknown. */
static uint64_t
bio_device_size_now (void)
{
  const char *path = NULL;
  struct stat st;
  uint64_t size = 0;
  size_t i;
  int fd;

  if (strcmp (bio_driver, "io_uring") != 0)
    return 0;
  for (i = 0; i < bio_nprops; i++)
    if (strcmp (bio_props[i].key, "path") == 0)
      path = bio_props[i].value;
  if (path == NULL || stat (path, &st) == -1)
    return 0;
  if (S_ISREG (st.st_mode))
    return st.st_size;
  if (!S_ISBLK (st.st_mode))
    return 0;
  fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd == -1)
    return 0;
  if (ioctl (fd, BLKGETSIZE64, &size) == -1)
    size = 0;
  close (fd);
  return size;
}

static bool bio_must_bounce (const void *buf, uint64_t count);
static uint64_t bio_rw_limit (bool bounce, bool lent, enum bio_kind kind,
                              uint64_t count);

/* Read the first block: a device that went away since the last request
 * shows here, before the handshake.  Returns 0 or a negative errno. */
static int
bio_probe (void)
{
  struct bio_op op = { .kind = BIO_READ, .offset = 0 };
  size_t len = bio_req_align < 512 ? 512 : bio_req_align;
  char *buf;
  int r;

  if (bio_capacity < len)
    return 0;
  buf = aligned_alloc (4096, (len + 4095) / 4096 * 4096);
  if (buf == NULL)
    return 0;                   /* no probe, no harm */
  op.buf = buf;                 /* bio_run moves op.buf on */
  op.count = len;
  op.bounce = bio_must_bounce (op.buf, len);
  op.max_len = bio_rw_limit (op.bounce, false, op.kind, op.count);
  r = bio_run (&op);
  if (r < 0)
    nbdkit_debug ("probing the device: %s", op.msg);
  free (buf);
  return r;
}

/* Whether the device is there for a new connection: up (waiting up to
 * reconnect-wait= for it), and not failing a read with an errno that says
 * it is gone (another error, say a bad block, is the clients' to see). */
static bool
bio_device_there (void)
{
  char msg[256];
  int r = 0;

  if (atomic_load (&bio_state) == BIO_UP) {
    r = bio_probe ();
    /* A probe that found the device gone may also have waited for the
     * reconnect and failed with EIO: the state tells that from a bad
     * block. */
    if (r == 0 ||
        (!bio_errno_is_lost (-r) && atomic_load (&bio_state) == BIO_UP))
      return true;
  }
  /* A probe that found the device gone has started reconnecting. */
  if (atomic_load (&bio_state) != BIO_UP &&
      bio_wait_up (msg, sizeof msg) == 0)
    return true;
  nbdkit_error ("the device is not there: %s",
                atomic_load (&bio_state) != BIO_UP ? msg : strerror (-r));
  nbdkit_set_error (EIO);
  return false;
}

/* A new connection: the device must be there (waiting up to
 * reconnect-wait= for it) and at its current size (a resized device is
 * re-opened: a library may read the size only once).  Whether the export
 * is read-only comes from nbdkit (readonly, -r): the device is not opened
 * again for it, since VFIO groups and vDPA devices can be open only once
 * and nbdkit's --run parent process still holds what the plugin opened
 * before it forked; nbdkit itself refuses every write of a read-only
 * export before it reaches the plugin. */
static void *
bio_open (int readonly)
{
  static atomic_bool told;
  struct bio_handle *h;
  bool no = false;
  uint64_t size;
  char msg[160];

  if (bio_fds_exhausted (msg, sizeof msg)) {
    nbdkit_error ("refusing a connection: %s", msg);
    nbdkit_set_error (EMFILE);
    return NULL;
  }
  if (!bio_device_there ())
    return NULL;
  if (readonly && !bio_readonly &&
      atomic_compare_exchange_strong (&told, &no, true))
    nbdkit_debug ("nbdkit serves the device read-only; it stays open "
                  "read-write and nbdkit refuses writes");
  size = bio_device_size_now ();
  size = bio_whole_blocks (size);       /* as bio_read_geometry serves it */
  if (size != 0 && size != bio_capacity) {
    nbdkit_debug ("the device is now %" PRIu64 " bytes (was %" PRIu64
                  "): re-opening it", size, bio_capacity);
    if (bio_refresh (bio_readonly) == -1) {
      nbdkit_error ("re-opening the resized device failed");
      nbdkit_set_error (EIO);
      return NULL;
    }
  }
  h = malloc (sizeof *h);
  if (h == NULL) {
    nbdkit_error ("malloc: %m");
    return NULL;
  }
  h->readonly = readonly || bio_readonly || (bio_zoned && !bio_zoned_writable);
  h->size = bio_capacity;
  atomic_init (&h->losses_seen, bio_losses_seen_at_open ());
  return h;
}

/* A connection ends. */
static void
bio_close (void *handle)
{
  free (handle);
}

/* The size the connection was opened with (NBD: it does not change). */
static int64_t
bio_get_size (void *handle)
{
  struct bio_handle *h = handle;

  return h->size;
}

static int
bio_block_size (void *handle,
                uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
  *minimum = bio_req_align;
  *preferred = bio_preferred;
  /* The largest payload: nbdkit refuses reads and writes above 64 MiB
   * (the plugin would split anything); zero and trim carry no payload
   * and may be longer (NBD's block size constraints). */
  *maximum = 64 * 1024 * 1024;
  return 0;
}

static int
bio_can_write (void *handle)
{
  struct bio_handle *h = handle;

  return !h->readonly;
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

/* Report a failed request to nbdkit, and through it to the client as the
 * NBD error the client can act on (errors.c). */
static int
bio_fail (const char *what, uint64_t offset, uint64_t count,
          const struct bio_op *op, int r)
{
  nbdkit_error ("%s: offset %" PRIu64 " count %" PRIu64 ": %s",
                what, offset, count, op->msg);
  nbdkit_set_error (bio_nbd_errno (-r));
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

/* The largest piece of a read or write of count bytes: the device's
 * limit and, when bounced, a bounce chunk; a large read, bounced or lent
 * (lend.c), is cut into pieces of read-split= (see BIO_READ_SPLIT). */
static uint64_t
bio_rw_limit (bool bounce, bool lent, enum bio_kind kind, uint64_t count)
{
  uint64_t split;

  if (!bounce && !lent)
    return bio_rw_max;
  split = bounce ? BIO_BOUNCE_CHUNK : 0;
  if (kind == BIO_READ && bio_read_split && count > bio_read_split)
    split = bio_read_split;
  if (split == 0)
    return bio_rw_max;
  split = bio_round_down (split, bio_req_align);
  if (split == 0)
    split = bio_round_down (BIO_BOUNCE_CHUNK, bio_req_align);
  return bio_min_limit (bio_rw_max, split);
}

/* Read or write through bounce buffers when the buffer needs them (and
 * cannot be lent to the device, lend.c), split by the transfer limits. */
static int
bio_rw (struct bio_op *op, const char *what)
{
  /* bio_run() consumes op; report the request as the client sent it. */
  const struct bio_op sent = *op;
  bool lent = false;
  unsigned gen = 0, losses = 0;
  int r;

  if (sent.count == 0)
    return 0;
  for (;;) {
    op->bounce = bio_must_bounce (op->buf, sent.count);
    /* Size first: it rules out most requests without the division. */
    if (op->bounce && sent.count >= BIO_LEND_MIN && bio_zero_copy > 0 &&
        ((uintptr_t) op->buf | sent.count) % bio_buf_align == 0)
      op->bounce = !(lent = bio_lend (op->buf, sent.count, &gen));
    op->lent = lent;
    op->max_len = bio_rw_limit (op->bounce, lent, op->kind, sent.count);
    r = bio_run (op);
    if (r == 0 || !lent)
      break;
    /* Failed with pieces the device may still hold: its queue died
     * (op->lost), or the library failed them (a hang-up, a ring the
     * device broke) while a live device may write them late.  Not a
     * buffer that was not mapped (-EFAULT): the device never had it. */
    if (op->lost || r != -EFAULT)
      bio_lend_failed (sent.buf);
    /* Lost while it ran (the buffer is on new pages now), or re-created
     * underneath a lent buffer, which the new instance does not know yet:
     * once more, lent again or bounced. */
    if (!bio_retry_after_loss (op, &losses) &&
        (r != -EFAULT || gen == bio_lend_generation ()))
      break;
    *op = sent;
    lent = false;
  }
  return r < 0 ? bio_fail (what, sent.offset, sent.count, op, r) : 0;
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

/* A flush that must fail: writes acknowledged before it went down with a
 * lost device. */
static int
bio_fail_lost_writes (void)
{
  nbdkit_error ("flush: the device was lost (and reconnected) with writes "
                "it had acknowledged but not flushed, which may be gone");
  nbdkit_set_error (EIO);
  return -1;
}

/* Flush to persistent storage.  If the device was lost with writes it
 * had acknowledged but not flushed, the next flush of each connection
 * open then fails once: no instance can flush them any more. */
static int
bio_flush (void *handle, uint32_t flags)
{
  struct bio_handle *h = handle;
  struct bio_op op = { .kind = BIO_FLUSH, .count = 0 };
  struct bio_flush_state fl;
  int r;

  if (!bio_flush_begin (&h->losses_seen, &fl))
    return bio_fail_lost_writes ();
  r = bio_run (&op);
  if (bio_flush_end (&h->losses_seen, &fl, r))
    return bio_fail_lost_writes ();
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
  .close              = bio_close,
  .thread_model       = bio_thread_model,
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
