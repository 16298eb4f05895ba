/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * hangup-watch.c - see hangup-watch.h.
 *
 * blkioq_do_io() sleeps on the call fd and the connection together
 * (virtio-blk-io.c), so a waiter inside the library sees a hang-up.  An
 * event loop that polls the completion fd itself does not: nobody writes
 * to it once the backend is gone.  One thread per device sleeps in
 * poll() on the connection and, if it hangs up, marks the device dead and
 * adds 1 to each regular queue's completion fd; the loop's next
 * blkioq_do_io() then fails the requests in flight.  The thread is off
 * the request path: nothing on it takes the lock or wakes the thread.
 * The lock orders starting and stopping among the application's threads
 * only; the thread itself never takes it.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "internal.h"
#include "sys-io.h"
#include "hangup-watch.h"
#include "virtio-blk.h"

unsigned vblk_fork_generation;

static pthread_once_t vblk_atfork_once = PTHREAD_ONCE_INIT;

/* In a forked child the watch threads of the parent do not exist. */
static void vblk_atfork_child(void)
{
    __atomic_add_fetch(&vblk_fork_generation, 1, __ATOMIC_RELAXED);
}

static void vblk_atfork_register(void)
{
    pthread_atfork(NULL, NULL, vblk_atfork_child);
}

void vblk_hangup_watch_init(struct vblk_hangup_watch *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    w->hangup_fd = -1;
    w->stop_fd = -1;
    w->fork_gen = __atomic_load_n(&vblk_fork_generation, __ATOMIC_RELAXED);
}

struct vblk_watch_arg {
    struct vblk_hangup_watch *w;
    struct blkio *b;
};

static void *vblk_hangup_watch_main(void *arg)
{
    struct vblk_hangup_watch *w = ((struct vblk_watch_arg *)arg)->w;
    struct blkio *b = ((struct vblk_watch_arg *)arg)->b;
    struct pollfd p[2] = {
        { .fd = w->hangup_fd, .events = POLLRDHUP },
        { .fd = w->stop_fd, .events = POLLIN },
    };
    unsigned n;

    free(arg);
    pthread_setname_np(pthread_self(), "blkio-hangup");
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return NULL;
        }
        if (p[1].revents)
            return NULL;        /* stopped */
        if (p[0].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL))
            break;
    }
    /* No lock: the fds array never moves while the thread runs, and a
     * slot is published (nfds, release) after its fd is stored.  A
     * parent's thread holding a lock at fork() would leave it held in
     * the child. */
    virtio_blk_mark_dead(b);
    n = __atomic_load_n(&w->nfds, __ATOMIC_ACQUIRE);
    for (unsigned i = 0; i < n; i++)
        blkio_sys_eventfd_add1(w->fds[i]);
    return NULL;
}

/* Start the thread (w->lock held), with every signal blocked so that the
 * application's handlers never run on it.  The default stack: a smaller
 * one fails where the program's static TLS does not fit in it. */
static int vblk_hangup_watch_start(struct vblk_hangup_watch *w,
                                   struct blkio *b)
{
    struct vblk_watch_arg *arg = malloc(sizeof(*arg));
    sigset_t all, old;
    int err;

    if (!arg)
        return -ENOMEM;
    *arg = (struct vblk_watch_arg){ .w = w, .b = b };
    w->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->stop_fd < 0) {
        free(arg);
        return -errno;
    }
    pthread_once(&vblk_atfork_once, vblk_atfork_register);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    err = pthread_create(&w->thread, NULL, vblk_hangup_watch_main, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err) {
        free(arg);
        close(w->stop_fd);
        w->stop_fd = -1;
        return -err;
    }
    w->running = true;
    __atomic_store_n(&w->fork_gen,
                     __atomic_load_n(&vblk_fork_generation, __ATOMIC_RELAXED),
                     __ATOMIC_RELAXED);
    return 0;
}

int vblk_hangup_watch_add(struct vblk_hangup_watch *w, struct blkio *b,
                          int hangup_fd, int fd)
{
    int ret = 0;

    pthread_mutex_lock(&w->lock);
    if (!w->fds) {
        /* Room for every regular queue, made once: the thread reads the
         * array without the lock. */
        w->cap = b->num_queues > 0 ? (unsigned)b->num_queues : 1;
        w->fds = calloc(w->cap, sizeof(*w->fds));
        if (!w->fds) {
            ret = blkio_set_error(-ENOMEM, "out of memory watching the "
                                  "connection");
            goto out;
        }
    }
    if (w->nfds == w->cap) {
        ret = blkio_set_error(-EINVAL, "queue %u is more than the %u the "
                              "connection watch was made for", w->nfds,
                              w->cap);
        goto out;
    }
    w->fds[w->nfds] = fd;
    __atomic_store_n(&w->nfds, w->nfds + 1, __ATOMIC_RELEASE);
    /* A thread that cannot be had (a thread limit) is no reason to fail
     * the start: without it, a hang-up is still seen by blkioq_do_io(),
     * as libblkio 1.5 sees it, only an fd-only waiter is not woken. */
    if (!w->running) {
        w->hangup_fd = hangup_fd;
        vblk_hangup_watch_start(w, b);
    }
out:
    pthread_mutex_unlock(&w->lock);
    return ret;
}

/* Stop and forget the thread (w->lock held).  One started before a
 * fork() is not ours to join in the child, and its stop fd is shared
 * with the parent's: only our copy is closed. */
static void vblk_hangup_watch_end(struct vblk_hangup_watch *w)
{
    bool ours = w->fork_gen == __atomic_load_n(&vblk_fork_generation,
                                               __ATOMIC_RELAXED);

    if (!w->running)
        return;
    if (ours) {
        blkio_sys_eventfd_add1(w->stop_fd);
        pthread_join(w->thread, NULL);
    }
    close(w->stop_fd);
    w->stop_fd = -1;
    w->running = false;
}

void vblk_hangup_watch_restart(struct vblk_hangup_watch *w, struct blkio *b)
{
    pthread_mutex_lock(&w->lock);
    if (w->fork_gen == __atomic_load_n(&vblk_fork_generation,
                                       __ATOMIC_RELAXED)) {
        pthread_mutex_unlock(&w->lock);    /* another thread did it */
        return;
    }
    vblk_hangup_watch_end(w);
    /* A failed start leaves the loop as it was before this thread
     * existed: blkioq_do_io() still sees a hang-up when it waits. */
    if (w->nfds == 0 || vblk_hangup_watch_start(w, b) < 0)
        __atomic_store_n(&w->fork_gen,
                         __atomic_load_n(&vblk_fork_generation,
                                         __ATOMIC_RELAXED),
                         __ATOMIC_RELAXED);
    pthread_mutex_unlock(&w->lock);
}

void vblk_hangup_watch_remove(struct vblk_hangup_watch *w, struct blkio *b,
                              int fd, bool restart)
{
    unsigned n = 0;

    pthread_mutex_lock(&w->lock);
    /* The thread reads the array without the lock: stop it first.  The
     * fd is closed after this returns and its number may be reused. */
    vblk_hangup_watch_end(w);
    for (unsigned i = 0; i < w->nfds; i++)
        if (w->fds[i] != fd)
            w->fds[n++] = w->fds[i];
    w->nfds = n;
    if (n == 0) {
        /* The last queue went (a failed start): the next start may have
         * more queues. */
        free(w->fds);
        w->fds = NULL;
        w->cap = 0;
    } else if (restart) {
        vblk_hangup_watch_start(w, b);
    }
    pthread_mutex_unlock(&w->lock);
}

void vblk_hangup_watch_stop(struct vblk_hangup_watch *w)
{
    pthread_mutex_lock(&w->lock);
    vblk_hangup_watch_end(w);
    free(w->fds);
    w->fds = NULL;
    w->nfds = w->cap = 0;
    pthread_mutex_unlock(&w->lock);
}

void vblk_hangup_watch_fini(struct vblk_hangup_watch *w)
{
    vblk_hangup_watch_stop(w);
    pthread_mutex_destroy(&w->lock);
}
