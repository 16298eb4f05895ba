/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * hangup-watch.h - a thread that watches a transport's connection and,
 * when the peer hangs up, marks the device dead and signals every
 * regular queue's completion fd.  Without it an event loop that waits on
 * completion fds alone (no blkioq_do_io() asleep to see the connection
 * go) would wait for ever on a backend that died with its requests.
 */
#ifndef BLKIO_VIRTIO_HANGUP_WATCH_H
#define BLKIO_VIRTIO_HANGUP_WATCH_H

#include <pthread.h>
#include <stdbool.h>

struct blkio;

struct vblk_hangup_watch {
    pthread_mutex_t lock;       /* adding, starting and stopping */
    int *fds;                   /* completion fds to signal, cap of them */
    unsigned nfds;              /* atomic: published slots of fds */
    unsigned cap;
    int hangup_fd;              /* the transport's connection */
    int stop_fd;                /* eventfd: the thread's stop signal */
    pthread_t thread;
    bool running;               /* a thread was started ... */
    unsigned fork_gen;          /* atomic: ... in this fork generation */
};

void vblk_hangup_watch_init(struct vblk_hangup_watch *w);
/* Watch hangup_fd (later calls must pass the same fd) and signal fd when
 * it hangs up; starts the thread at the first call, with room for
 * b->num_queues fds.  Returns 0 or a negative errno after
 * blkio_set_error(). */
int vblk_hangup_watch_add(struct vblk_hangup_watch *w, struct blkio *b,
                          int hangup_fd, int fd);
/* Stop signalling fd (its queue is going), and watch on for the others
 * if restart.  Must come before fd is closed. */
void vblk_hangup_watch_remove(struct vblk_hangup_watch *w, struct blkio *b,
                              int fd, bool restart);
/* Stop the thread and forget the fds.  Idempotent. */
void vblk_hangup_watch_stop(struct vblk_hangup_watch *w);
/* Stop, and release w. */
void vblk_hangup_watch_fini(struct vblk_hangup_watch *w);

/* The thread does not survive fork(): a child that uses the device starts
 * its own.  One relaxed load when nothing forked. */
extern unsigned vblk_fork_generation;
void vblk_hangup_watch_restart(struct vblk_hangup_watch *w, struct blkio *b);

static inline void vblk_hangup_watch_check_fork(struct vblk_hangup_watch *w,
                                                struct blkio *b)
{
    if (__builtin_expect(__atomic_load_n(&w->fork_gen, __ATOMIC_RELAXED) !=
                         __atomic_load_n(&vblk_fork_generation,
                                         __ATOMIC_RELAXED), 0))
        vblk_hangup_watch_restart(w, b);
}

#endif /* BLKIO_VIRTIO_HANGUP_WATCH_H */
