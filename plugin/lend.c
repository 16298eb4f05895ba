/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nbdkit-blkio-plugin: nbdkit's request buffer lent to the device
 * (zero-copy=, on drivers that need mapped memory regions).
 *
 * A driver such as virtio-blk-vhost-user only reaches memory the backend
 * has mapped: a file descriptor it received.  nbdkit 1.32 hands .pread a
 * buffer it allocated itself, and will send the reply from it, so the
 * plugin used to read into a bounce chunk and copy out of it; at 1 MiB
 * that copy of memory the backend had just written on the other CPU is a
 * quarter of nbdkit's time.
 *
 * nbdkit keeps one request buffer per thread, grown to the largest request
 * so far, and glibc puts a large one in an mmap of its own (a chunk that
 * starts 16 bytes before the buffer, on a page boundary).  The second time
 * a thread brings the same large buffer, the plugin moves that chunk's
 * pages into a memfd: it copies them to the memfd and maps the memfd over
 * the chunk at the same address (MAP_FIXED), so to nbdkit and glibc
 * nothing changed, and maps the chunk as a memory region of the instance.
 * From then on the device reads into and writes from nbdkit's buffer.
 *
 * nbdkit owns the chunk: it may free it (when the thread ends, or to grow
 * it) and get another at the same address.  So the plugin never unmaps or
 * touches the chunk outside a request made with a buffer inside it, and
 * before each such request it checks that the chunk is still its memfd:
 * it stores a fresh token through a second mapping of the memfd (the
 * alias) and loads it back through nbdkit's address (the word is restored
 * after).  A chunk that fails is forgotten (its region unmapped) and the
 * request is bounced.  Growing the chunk with mremap() must fail, so that
 * glibc copies to a new chunk instead: the first page is madvised apart
 * (a different VMA), and the memfd is longer than the chunk in case a
 * kernel moved it anyway (no SIGBUS past the end).
 *
 * glibc's dynamic mmap threshold would put a large buffer on the heap once
 * a thread's buffer was freed; the plugin fixes the threshold
 * (M_MMAP_THRESHOLD) so that every thread's large buffer stays a chunk of
 * its own.  Anything that does not look exactly like glibc's mmapped
 * chunk (another allocator, valgrind, ASan) is simply bounced.
 */

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "blkio-plugin.h"

/* zero-copy=: -1 until resolved (auto: on for virtio-blk-vhost-user). */
int bio_zero_copy = -1;

/* One thread's lent chunk. */
struct bio_lent {
  char *start;                  /* the chunk, page aligned */
  size_t len;
  int fd;                       /* the memfd behind it now */
  char *alias;                  /* our own mapping of the memfd */
  unsigned gen;                 /* instance it is mapped in, 0: none */
  struct blkio_mem_region region;
  uint64_t token;
};

/* Held for every change to the instance's memory regions (here and the
 * queues' bounce regions in pool.c) and while it is destroyed: libblkio's
 * region calls may not run at the same time as each other, and a thread
 * that ends (bio_lend_thread_exit) unmaps its buffer whenever it ends. */
static pthread_mutex_t bio_lend_lock = PTHREAD_MUTEX_INITIALIZER;
/* Bumped (under the lock) each time the instance is destroyed: regions
 * mapped in an older one are gone with it. */
static _Atomic unsigned bio_lend_gen = 1;
static _Atomic unsigned bio_lend_count; /* chunks mapped in this instance */
static unsigned bio_lend_max;           /* how many may be */
static pid_t bio_lend_opener;           /* the process that opened it */
static pthread_key_t bio_lend_key;
static bool bio_lend_key_ok;
/* Threads inside bio_lend_thread_exit: nbdkit unloads the plugin once
 * its connection threads returned, which is before their thread-specific
 * data destructors ran. */
static atomic_int bio_lend_exiting;

static __thread struct bio_lent *bio_lent;
static __thread char *bio_lend_seen;    /* last large buffer not lent */
static __thread char *bio_lend_refused; /* a buffer that cannot be */

static size_t
bio_page (void)
{
  return (size_t) sysconf (_SC_PAGESIZE);       /* glibc: a load */
}

/* Forget l's region in the instance it was mapped in, if that is still
 * the instance.  Called with the lock held. */
static void
bio_lend_unmap_locked (struct bio_lent *l)
{
  if (l->gen && l->gen == atomic_load (&bio_lend_gen) && bio_b) {
    blkio_unmap_mem_region (bio_b, &l->region);
    bio_lend_count--;
  }
  l->gen = 0;
}

/* Forget l: its region, the memfd and the alias.  The chunk itself is
 * nbdkit's (it may already be unmapped, or someone else's memory). */
static void
bio_lend_forget (struct bio_lent *l)
{
  pthread_mutex_lock (&bio_lend_lock);
  bio_lend_unmap_locked (l);
  pthread_mutex_unlock (&bio_lend_lock);
  munmap (l->alias, l->len);
  close (l->fd);
  l->start = NULL;
  l->fd = -1;
}

/* Thread exit: nbdkit frees the chunk in its own destructor. */
static void
bio_lend_thread_exit (void *p)
{
  struct bio_lent *l = p;

  atomic_fetch_add (&bio_lend_exiting, 1);
  if (l->start)
    bio_lend_forget (l);
  free (l);
  atomic_fetch_sub (&bio_lend_exiting, 1);
}

/* See bio_lend_lock. */
void
bio_regions_lock (void)
{
  pthread_mutex_lock (&bio_lend_lock);
}

void
bio_regions_unlock (void)
{
  pthread_mutex_unlock (&bio_lend_lock);
}

/* Map l's chunk in the current instance.  Returns whether it is. */
static bool
bio_lend_map (struct bio_lent *l)
{
  bool ok = false;

  pthread_mutex_lock (&bio_lend_lock);
  if (atomic_load (&bio_state) == BIO_UP && bio_b &&
      bio_lend_count < bio_lend_max) {
    if (blkio_map_mem_region (bio_b, &l->region) == 0) {
      l->gen = atomic_load (&bio_lend_gen);
      bio_lend_count++;
      ok = true;
    }
    else
      nbdkit_debug ("zero-copy: mapping a request buffer: %s",
                    blkio_get_error_msg ());
  }
  pthread_mutex_unlock (&bio_lend_lock);
  return ok;
}

/* Is buf (count bytes) the start of a chunk glibc mmapped for it alone?
 * Then *start and *len say which.  The header is only read once the
 * usable size says it is one (valgrind and ASan report exact sizes). */
static bool
bio_lend_chunk (char *buf, uint64_t count, char **start, size_t *len)
{
#ifdef __GLIBC__
  const size_t hdr_len = 2 * sizeof (size_t), page = bio_page ();
  char *cs = buf - hdr_len;
  size_t usable, hdr[2];

  if ((uintptr_t) cs % page != 0)
    return false;
  usable = malloc_usable_size (buf);
  if (usable < count || (usable + hdr_len) % page != 0)
    return false;
  memcpy (hdr, cs, sizeof hdr);
  /* prev_size 0, size with IS_MMAPPED (2) alone among the flag bits. */
  if (hdr[0] != 0 || (hdr[1] & 7) != 2 || (hdr[1] & ~(size_t) 7) !=
      usable + hdr_len)
    return false;
  *start = cs;
  *len = usable + hdr_len;
  return true;
#else
  (void) buf; (void) count; (void) start; (void) len;
  return false;
#endif
}

/* Anonymous pages at start holding contents (len bytes, not inside
 * [start, start+len)).  A MAP_FIXED that fails may have taken the old
 * pages already, and nbdkit would fault on its own buffer: a shortage of
 * memory is waited out for up to BIO_LEND_ANON_TRIES times 10 ms, and
 * only a lasting one is fatal. */
#define BIO_LEND_ANON_TRIES 500
static void
bio_lend_anon (char *start, size_t len, const char *contents)
{
  const struct timespec pause = { 0, 10 * 1000 * 1000 };

  for (int tries = 1;; tries++) {
    if (mmap (start, len, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED)
      break;
    if (tries == BIO_LEND_ANON_TRIES || (errno != ENOMEM && errno != EAGAIN)) {
      nbdkit_error ("zero-copy: cannot put nbdkit's request buffer on new "
                    "pages: %m");
      abort ();
    }
    if (tries == 1)
      nbdkit_error ("zero-copy: putting nbdkit's request buffer on new "
                    "pages: %m: trying again for up to 5 s");
    nanosleep (&pause, NULL);
  }
  memcpy (start, contents, len);
}

/* Put the chunk's pages in a new memfd, at the same address.  Returns 1
 * when done; 0 when it failed with the pages untouched; -1 when it failed
 * after the old pages may have gone, which anonymous ones with the
 * contents then replace. */
static int
bio_lend_move (struct bio_lent *l, char *start, size_t len)
{
  const size_t page = bio_page ();
  int fd;
  char *alias;

  fd = memfd_create ("nbdkit-blkio-request", MFD_CLOEXEC);
  if (fd == -1)
    return 0;
  if (ftruncate (fd, (off_t) (len + BIO_LEND_SLACK)) == -1)
    goto fail_fd;
  alias = mmap (NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (alias == MAP_FAILED)
    goto fail_fd;
  memcpy (alias, start, len);
  if (mmap (start, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
            fd, 0) == MAP_FAILED) {
    bio_lend_anon (start, len, alias);
    munmap (alias, len);
    close (fd);
    return -1;
  }
  /* A VMA boundary inside the chunk makes mremap() fail (see the top). */
  madvise (start, page, MADV_DONTDUMP);
  l->start = start;
  l->len = len;
  l->fd = fd;
  l->alias = alias;
  l->gen = 0;
  l->region = (struct blkio_mem_region) {
    .addr = start, .len = len, .fd = fd, .fd_offset = 0,
  };
  return 1;

 fail_fd:
  close (fd);
  return 0;
}

/* Lend the chunk of buf to the device.  Returns whether it is mapped. */
static bool
bio_lend_adopt (char *buf, uint64_t count)
{
  struct bio_lent *l = bio_lent;
  char *start;
  size_t len;

  if (!bio_lend_chunk (buf, count, &start, &len))
    return false;
  if (atomic_load (&bio_lend_count) >= bio_lend_max)
    return false;               /* a peek: bio_lend_map() decides */
  if (!l) {
    l = malloc (sizeof *l);
    if (!l)
      return false;
    memset (l, 0, sizeof *l);
    l->fd = -1;
    l->token = (uintptr_t) l ^ (uint64_t) getpid () << 32;
    if (pthread_setspecific (bio_lend_key, l) != 0) {
      free (l);
      return false;
    }
    bio_lent = l;
  }
  if (bio_lend_move (l, start, len) <= 0)
    return false;
  if (!bio_lend_map (l))
    return false;
  nbdkit_debug ("zero-copy: nbdkit's request buffer %p (%zu KiB) lent to "
                "the device", (void *) start, len / 1024);
  return true;
}

/* Is buf still inside l's memfd?  A token stored through the alias must
 * be seen through buf (the word is put back either way). */
static bool
bio_lend_still_ours (struct bio_lent *l, char *buf)
{
  uintptr_t a = ((uintptr_t) buf + 7) & ~(uintptr_t) 7;
  volatile uint64_t *mine = (volatile uint64_t *) a;
  volatile uint64_t *alias =
    (volatile uint64_t *) (l->alias + (a - (uintptr_t) l->start));
  uint64_t saved = *mine, token = ++l->token, seen;

  *alias = token;
  seen = *mine;
  *mine = saved;
  return seen == token;
}

/* Is [buf, buf + count) inside l's chunk? */
static bool
bio_lend_inside (const struct bio_lent *l, const char *buf, uint64_t count)
{
  return l && l->start && buf >= l->start && count <= l->len &&
    (size_t) (buf - l->start) <= l->len - count;
}

/* bio_lend(): lent and mapped in the current instance, lent now, or not
 * (bounce it). */
static bool
bio_lend_buffer (char *buf, uint64_t count)
{
  struct bio_lent *l = bio_lent;

  /* While the device is away the request waits for it anyway; nothing
   * is decided (or refused) until it is back. */
  if (count < BIO_LEND_MIN || buf == bio_lend_refused ||
      atomic_load_explicit (&bio_state, memory_order_relaxed) != BIO_UP)
    return false;
  if (bio_lend_inside (l, buf, count)) {
    if (bio_lend_still_ours (l, buf)) {
      if (l->gen == atomic_load (&bio_lend_gen))
        return true;
      /* The instance was re-created.  The backend of the old one may
       * still have the memfd mapped (a backend that hung rather than
       * died), so the pages move to a new memfd for the new one. */
      bio_lend_forget (l);
      if (bio_lend_adopt (buf, count)) {
        nbdkit_debug ("zero-copy: request buffer %p lent to the new "
                      "instance", (void *) buf);
        return true;
      }
      bio_lend_refused = buf;
      return false;
    }
    /* Freed and allocated again at the same place: a buffer made per
     * request (a filter's, say) would be lent anew every time. */
    nbdkit_debug ("zero-copy: request buffer %p was replaced, no longer "
                  "lent", (void *) l->start);
    bio_lend_forget (l);
    bio_lend_refused = buf;
    return false;
  }
  if (buf != bio_lend_seen) {
    bio_lend_seen = buf;        /* lent the second time it comes */
    return false;
  }
  if (l && l->start)
    bio_lend_forget (l);        /* another buffer: this one is done */
  if (bio_lend_adopt (buf, count))
    return true;
  bio_lend_refused = buf;
  return false;
}

/* Can the device use buf (count bytes) as it is?  Called on the request's
 * thread before a read or write that would be bounced; on true, *gen is
 * the generation of the instance it is mapped in. */
bool
bio_lend (char *buf, uint64_t count, unsigned *gen)
{
  bool lent = bio_lend_buffer (buf, count);

  if (lent)
    *gen = bio_lent->gen;
  return lent;
}

/* No memfd to move the buffer to (out of fds, say): anonymous pages
 * instead, with the contents, so that the device's pages are still left
 * behind. */
static void
bio_lend_detach (char *start, size_t len)
{
  char *copy = malloc (len);

  if (copy == NULL) {
    nbdkit_error ("zero-copy: request buffer %p stays on the pages the "
                  "device had (out of memory)", (void *) start);
    return;
  }
  memcpy (copy, start, len);
  bio_lend_anon (start, len, copy);
  free (copy);
}

/* A lent request failed with pieces the device may still hold (its queue
 * died, or the library failed them): the device may write to them later,
 * while nbdkit already reuses the buffer (receiving the next write into
 * it, say).  The buffer moves to new pages now, before the request
 * returns; the old ones take the late writes.  It is lent again, to the
 * instance then current, on its next request. */
void
bio_lend_failed (char *buf)
{
  struct bio_lent *l = bio_lent;
  char *start;
  size_t len;

  if (!bio_lend_inside (l, buf, 1))
    return;
  start = l->start;
  len = l->len;
  bio_lend_forget (l);
  nbdkit_debug ("zero-copy: request buffer %p failed with pieces in the "
                "device: moved to new pages", (void *) start);
  /* -1: already on anonymous pages, off the device's. */
  if (bio_lend_move (l, start, len) == 0)
    bio_lend_detach (start, len);
}

/* The generation of the instance: a lent request that failed because its
 * buffer is not mapped (-EFAULT) is tried again if this moved. */
unsigned
bio_lend_generation (void)
{
  return atomic_load (&bio_lend_gen);
}

/* At unload: no thread's exit may call into the unloaded plugin.  Once
 * the key is deleted no destructor starts; those already running are
 * waited for (up to a second: they only take a lock and unmap). */
void
bio_lend_unload (void)
{
  if (bio_lend_key_ok)
    pthread_key_delete (bio_lend_key);
  bio_lend_key_ok = false;
  bio_wait_exiting (&bio_lend_exiting);
}

/* The instance is about to be destroyed (its regions with it); called
 * instead of blkio_destroy(). */
void
bio_lend_destroy_instance (struct blkio **b)
{
  pthread_mutex_lock (&bio_lend_lock);
  atomic_fetch_add (&bio_lend_gen, 1);
  bio_lend_count = 0;
  blkio_destroy (b);
  pthread_mutex_unlock (&bio_lend_lock);
}

/* In the process that serves, once nbdkit has forked (into the
 * background, or as the server of --run, which serves from the child):
 * a vhost-vdpa device resolves the addresses of every later region in the
 * memory of the process that opened it (its owner), so a chunk mapped
 * from here would be looked up in the parent's memory, where it is not
 * (the library refuses such a map with -EPERM).  Not even trying saves
 * each thread a chunk moved to a memfd for nothing.  No lending there
 * until a reconnect opens an instance here.
 * Other drivers take the caller's memory (VFIO pins it, vhost-user
 * receives the memfd). */
void
bio_lend_after_fork (void)
{
  if (bio_zero_copy == 1 && bio_lend_opener != getpid () &&
      strcmp (bio_driver, "virtio-blk-vhost-vdpa") == 0) {
    bio_lend_max = 0;
    nbdkit_debug ("zero-copy: off in this process: nbdkit forked after "
                  "opening the vhost-vdpa device, which maps memory of "
                  "the process that opened it");
  }
}

/* Once the instance is open: whether zero-copy applies, and how many
 * chunks may be mapped (the regions the device has left after the
 * queues' bounce regions, keeping one spare). */
void
bio_lend_setup (int nqueues)
{
  uint64_t max = 0;

  if (bio_zero_copy == -1)
    bio_zero_copy = strcmp (bio_driver, "virtio-blk-vhost-user") == 0;
  if (!bio_zero_copy || !bio_needs_mem_regions || bio_buf_align > 16) {
    bio_zero_copy = 0;
    return;
  }
  /* A vhost-user backend without memory slots takes its regions as one
   * table (8 at most): adding one re-sends the table, which such a
   * backend applies by unmapping every region, under the requests of
   * other threads in flight.  One with slots takes them one at a time,
   * and has more. */
  if (blkio_get_uint64 (bio_b, "max-mem-regions", &max) < 0 ||
      max < BIO_LEND_MIN_REGIONS) {
    nbdkit_debug ("zero-copy: off, the device takes %" PRIu64 " memory "
                  "regions (needs %d)", max, BIO_LEND_MIN_REGIONS);
    bio_zero_copy = 0;
    return;
  }
  bio_lend_max = max > (uint64_t) nqueues + 2 ?
    (unsigned) (max - nqueues - 2) : 0;
  if (bio_lend_max > BIO_LEND_MAX_CHUNKS)
    bio_lend_max = BIO_LEND_MAX_CHUNKS;
  if (bio_lend_max == 0 ||
      (!bio_lend_key_ok &&
       pthread_key_create (&bio_lend_key, bio_lend_thread_exit) != 0)) {
    bio_zero_copy = 0;
    return;
  }
  bio_lend_key_ok = true;
  bio_lend_opener = getpid ();
  /* Large buffers in chunks of their own, for good (see the top). */
  mallopt (M_MMAP_THRESHOLD, BIO_LEND_MIN);
  nbdkit_debug ("zero-copy: up to %u request buffers of %d KiB or more "
                "lent to the device", bio_lend_max, BIO_LEND_MIN / 1024);
}
