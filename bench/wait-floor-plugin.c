/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nbdkit-wait-floor-plugin - the cheapest plugin whose every request waits
 * on another process, for bench/compare.py (built, never installed).
 *
 * A read is a kick and a call, as with a virtio device: the plugin writes
 * a byte to the connection's kick pipe and sleeps in read() on its call
 * pipe; a device process, forked when nbdkit serves, sleeps in
 * epoll_wait() on every kick pipe and answers each kick with a byte on
 * the call pipe.  Two system calls per request on nbdkit's side, the
 * fewest a sleeping wait can make; pipes rather than eventfds so that the
 * read ends (with EOF) if the device process is gone, instead of waiting
 * for ever.  Nothing
 * else is done: the data is zeroes, as with nbdkit's null plugin.  The
 * requests of a connection are serialized, as nbdkit-blkio-plugin asks of
 * nbdkit 1.32 by default.  So nbdkit's CPU per request with this plugin is
 * what any plugin pays in that model to wait on a device, before the
 * device does any work: nbdkit's own floor plus one sleep and one wake-up.
 *
 *   nbdkit ./nbdkit-wait-floor-plugin.so size=SIZE
 *
 * The device process is nbdkit's only child (bench/compare.py counts its
 * CPU apart).  Up to WF_PAIRS connections at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#define WF_PAIRS 64

/* One connection's kick and call pipes, made before the fork: nbdkit
 * keeps the kick's write end and the call's read end, the device the
 * other two. */
struct wf_pair {
  int kick[2], call[2];
  int used;
};

static int64_t wf_size = -1;
static struct wf_pair wf_pairs[WF_PAIRS];
static pthread_mutex_t wf_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t wf_device = -1;

/* size=SIZE: the size of the disk. */
static int
wf_config (const char *key, const char *value)
{
  if (strcmp (key, "size") != 0) {
    nbdkit_error ("unknown parameter '%s' (only size= is known)", key);
    return -1;
  }
  wf_size = nbdkit_parse_size (value);
  return wf_size < 0 ? -1 : 0;
}

static int
wf_config_complete (void)
{
  if (wf_size < 0) {
    nbdkit_error ("size= is required, e.g. size=512M");
    return -1;
  }
  return 0;
}

/* The device process: answer every kick with a call, until nbdkit goes. */
static void __attribute__ ((noreturn))
wf_device_main (void)
{
  struct epoll_event ev[WF_PAIRS];
  int ep = epoll_create1 (0), i, n;
  char v;

  prctl (PR_SET_PDEATHSIG, SIGKILL);
  if (getppid () == 1 || ep < 0)
    _exit (0);
  for (i = 0; i < WF_PAIRS; i++) {
    struct epoll_event e = { .events = EPOLLIN, .data.u32 = i };

    close (wf_pairs[i].kick[1]);
    close (wf_pairs[i].call[0]);
    if (epoll_ctl (ep, EPOLL_CTL_ADD, wf_pairs[i].kick[0], &e) < 0)
      _exit (1);
  }
  for (;;) {
    n = epoll_wait (ep, ev, WF_PAIRS, -1);
    if (n < 0 && errno != EINTR)
      _exit (1);
    for (i = 0; i < n; i++) {
      struct wf_pair *p = &wf_pairs[ev[i].data.u32];

      if (read (p->kick[0], &v, 1) != 1)
        _exit (0);              /* nbdkit closed its end */
      if (write (p->call[1], &v, 1) != 1)
        _exit (1);
    }
  }
}

/* Make the pipes and fork the device once nbdkit has forked into the
 * background (if it does): the device dies with its parent. */
static int
wf_after_fork (void)
{
  int i;

  for (i = 0; i < WF_PAIRS; i++) {
    if (pipe2 (wf_pairs[i].kick, O_CLOEXEC) < 0 ||
        pipe2 (wf_pairs[i].call, O_CLOEXEC) < 0) {
      nbdkit_error ("pipe2: %m");
      return -1;
    }
  }
  wf_device = fork ();
  if (wf_device < 0) {
    nbdkit_error ("fork: %m");
    return -1;
  }
  if (wf_device == 0)
    wf_device_main ();
  for (i = 0; i < WF_PAIRS; i++) {
    close (wf_pairs[i].kick[0]);
    close (wf_pairs[i].call[1]);
  }
  return 0;
}

static void
wf_unload (void)
{
  if (wf_device > 0) {
    kill (wf_device, SIGKILL);
    waitpid (wf_device, NULL, 0);
  }
}

static void *
wf_open (int readonly)
{
  int i;

  pthread_mutex_lock (&wf_lock);
  for (i = 0; i < WF_PAIRS && wf_pairs[i].used; i++)
    ;
  if (i < WF_PAIRS)
    wf_pairs[i].used = 1;
  pthread_mutex_unlock (&wf_lock);
  if (i == WF_PAIRS) {
    nbdkit_error ("more than %d connections at once", WF_PAIRS);
    return NULL;
  }
  return &wf_pairs[i];
}

static void
wf_close (void *handle)
{
  struct wf_pair *p = handle;

  pthread_mutex_lock (&wf_lock);
  p->used = 0;
  pthread_mutex_unlock (&wf_lock);
}

static int64_t
wf_get_size (void *handle)
{
  return wf_size;
}

/* One kick, one sleep until the call: the device's whole round trip. */
static int
wf_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
          uint32_t flags)
{
  struct wf_pair *p = handle;
  char v = 1;

  if (write (p->kick[1], &v, 1) != 1 || read (p->call[0], &v, 1) != 1) {
    nbdkit_error ("the device process is gone");
    errno = EIO;
    return -1;
  }
  memset (buf, 0, count);
  return 0;
}

#define THREAD_MODEL NBDKIT_THREAD_MODEL_SERIALIZE_REQUESTS

static struct nbdkit_plugin plugin = {
  .name = "wait-floor",
  .version = "1",
  .config = wf_config,
  .config_complete = wf_config_complete,
  .config_help = "size=SIZE    (required) the size of the disk",
  .after_fork = wf_after_fork,
  .unload = wf_unload,
  .open = wf_open,
  .close = wf_close,
  .get_size = wf_get_size,
  .pread = wf_pread,
};

NBDKIT_REGISTER_PLUGIN (plugin)
