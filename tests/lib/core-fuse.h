/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * core-fuse.h - a regular file whose reads complete only when the test says
 * so, for the tests that need a request that does not complete (timeouts,
 * interrupted waits).
 *
 * A tiny FUSE server speaking the kernel protocol (<linux/fuse.h>) directly
 * on /dev/fuse, in a thread of the test: one directory with one file,
 * "disk", of a given size.  While reads are held, READ requests are kept
 * unanswered; cu_fuse_release() answers them (with a byte pattern) and
 * lets later reads through.  Needs root (mount(2)); cu_fuse_start() returns
 * NULL with a reason when that is not possible, for the caller to skip.
 */
#ifndef TESTS_LIB_CORE_FUSE_H
#define TESTS_LIB_CORE_FUSE_H

#include <linux/fuse.h>
#include <pthread.h>
#include <sys/mount.h>
#include <sys/uio.h>

#include "core-util.h"

#define CU_FUSE_FILL   0x5c   /* every byte of the file */
#define CU_FUSE_MAXREQ 64

struct cu_fuse {
    int fd;
    char mnt[300];
    char file[320];
    uint64_t size;
    pthread_t thread;
    pthread_mutex_t lock;
    bool hold;                          /* keep READs unanswered */
    uint64_t held[CU_FUSE_MAXREQ];      /* their unique ids ... */
    uint32_t held_size[CU_FUSE_MAXREQ]; /* ... and lengths */
    int nheld;
    int reads_seen;
};

static struct cu_fuse *cu_fuse_current;

static void cu_fuse_reply(struct cu_fuse *f, uint64_t unique, int error,
                          const void *data, size_t len)
{
    struct fuse_out_header h = {
        .len = (uint32_t)(sizeof(h) + len), .error = error, .unique = unique,
    };
    struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)data, len } };

    /* ENOENT: the request was interrupted and is gone; fine. */
    if (writev(f->fd, iov, len ? 2 : 1) < 0 && errno != ENOENT)
        fprintf(stderr, "fuse reply to %llu: %s\n",
                (unsigned long long)unique, strerror(errno));
}

static void cu_fuse_attr(struct cu_fuse *f, uint64_t node,
                         struct fuse_attr *a)
{
    memset(a, 0, sizeof(*a));
    a->ino = node;
    a->nlink = 1;
    a->blksize = 4096;
    if (node == 1) {
        a->mode = S_IFDIR | 0755;
        a->nlink = 2;
    } else {
        a->mode = S_IFREG | 0600;
        a->size = f->size;
        a->blocks = (f->size + 511) / 512;
    }
}

static void cu_fuse_read_reply(struct cu_fuse *f, uint64_t unique,
                               uint32_t size)
{
    static char data[65536];

    memset(data, CU_FUSE_FILL, sizeof(data));
    if (size > sizeof(data))
        size = sizeof(data);
    cu_fuse_reply(f, unique, 0, data, size);
}

static void cu_fuse_handle(struct cu_fuse *f, const struct fuse_in_header *in,
                           const void *arg)
{
    switch (in->opcode) {
    case FUSE_INIT: {
        const struct fuse_init_in *ii = arg;
        struct fuse_init_out o = {
            .major = FUSE_KERNEL_VERSION,
            .minor = FUSE_KERNEL_MINOR_VERSION,
            .max_readahead = ii->max_readahead,
            .max_background = 16,
            .congestion_threshold = 12,
            .max_write = 65536,
            .time_gran = 1,
        };
        cu_fuse_reply(f, in->unique, 0, &o, sizeof(o));
        break;
    }
    case FUSE_LOOKUP:
        if (in->nodeid == 1 && strcmp(arg, "disk") == 0) {
            struct fuse_entry_out o = { .nodeid = 2, .generation = 1 };
            cu_fuse_attr(f, 2, &o.attr);
            cu_fuse_reply(f, in->unique, 0, &o, sizeof(o));
        } else {
            cu_fuse_reply(f, in->unique, -ENOENT, NULL, 0);
        }
        break;
    case FUSE_GETATTR: {
        struct fuse_attr_out o = { .attr_valid = 0 };
        cu_fuse_attr(f, in->nodeid, &o.attr);
        cu_fuse_reply(f, in->unique, 0, &o, sizeof(o));
        break;
    }
    case FUSE_OPEN: {
        /* Direct I/O: every read reaches us, none is served from cache. */
        struct fuse_open_out o = { .fh = 1, .open_flags = FOPEN_DIRECT_IO };
        cu_fuse_reply(f, in->unique, 0, &o, sizeof(o));
        break;
    }
    case FUSE_READ: {
        const struct fuse_read_in *r = arg;
        pthread_mutex_lock(&f->lock);
        f->reads_seen++;
        if (f->hold && f->nheld < CU_FUSE_MAXREQ) {
            f->held[f->nheld] = in->unique;
            f->held_size[f->nheld++] = r->size;
        } else {
            cu_fuse_read_reply(f, in->unique, r->size);
        }
        pthread_mutex_unlock(&f->lock);
        break;
    }
    case FUSE_WRITE: {
        const struct fuse_write_in *w = arg;
        struct fuse_write_out o = { .size = w->size };
        cu_fuse_reply(f, in->unique, 0, &o, sizeof(o));
        break;
    }
    case FUSE_FLUSH:
    case FUSE_RELEASE:
    case FUSE_FSYNC:
    case FUSE_OPENDIR:
    case FUSE_RELEASEDIR:
        cu_fuse_reply(f, in->unique, 0, NULL, 0);
        break;
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
    case FUSE_INTERRUPT:
        break;   /* no reply expected; held reads stay held */
    default:
        cu_fuse_reply(f, in->unique, -ENOSYS, NULL, 0);
        break;
    }
}

static void *cu_fuse_main(void *arg)
{
    struct cu_fuse *f = arg;
    static char buf[65536 + 4096] __attribute__((aligned(8)));

    for (;;) {
        ssize_t n = read(f->fd, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR || errno == ENOENT)
                continue;
            break;   /* ENODEV: unmounted, or the fd was shut down */
        }
        if ((size_t)n < sizeof(struct fuse_in_header))
            continue;
        cu_fuse_handle(f, (const struct fuse_in_header *)buf,
                       buf + sizeof(struct fuse_in_header));
    }
    return NULL;
}

/* Answer the held reads and stop holding. */
static inline void cu_fuse_release(struct cu_fuse *f)
{
    pthread_mutex_lock(&f->lock);
    f->hold = false;
    for (int i = 0; i < f->nheld; i++)
        cu_fuse_read_reply(f, f->held[i], f->held_size[i]);
    f->nheld = 0;
    pthread_mutex_unlock(&f->lock);
}

static inline void cu_fuse_hold(struct cu_fuse *f)
{
    pthread_mutex_lock(&f->lock);
    f->hold = true;
    pthread_mutex_unlock(&f->lock);
}

static inline int cu_fuse_held(struct cu_fuse *f)
{
    int n;

    pthread_mutex_lock(&f->lock);
    n = f->nheld;
    pthread_mutex_unlock(&f->lock);
    return n;
}

static inline void cu_fuse_stop(struct cu_fuse *f)
{
    if (!f || f->fd < 0)
        return;
    cu_fuse_release(f);
    /* Detach first so nothing new arrives, then end the connection: the
     * server's read() fails and the thread ends. */
    umount2(f->mnt, MNT_DETACH);
    close(f->fd);
    f->fd = -1;
    pthread_join(f->thread, NULL);
    pthread_mutex_destroy(&f->lock);
    rmdir(f->mnt);
    if (cu_fuse_current == f)
        cu_fuse_current = NULL;
    free(f);
}

static void cu_fuse_atexit(void)
{
    cu_fuse_stop(cu_fuse_current);
}

/* Mount the file system; on failure return NULL with `why` filled in. */
static inline struct cu_fuse *cu_fuse_start(uint64_t size, char *why,
                                            size_t whylen)
{
    struct cu_fuse *f = calloc(1, sizeof(*f));
    char opts[128];

    CHECK(f != NULL);
    f->size = size;
    pthread_mutex_init(&f->lock, NULL);
    snprintf(f->mnt, sizeof(f->mnt), "%s/fuse", cu_dir());
    snprintf(f->file, sizeof(f->file), "%s/disk", f->mnt);
    if (mkdir(f->mnt, 0700) < 0)
        T_FAIL("mkdir %s: %s", f->mnt, strerror(errno));

    f->fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (f->fd < 0) {
        snprintf(why, whylen, "open /dev/fuse: %s", strerror(errno));
        goto fail;
    }
    snprintf(opts, sizeof(opts),
             "fd=%d,rootmode=40000,user_id=%u,group_id=%u", f->fd,
             (unsigned)getuid(), (unsigned)getgid());
    if (mount("blkio-core-test", f->mnt, "fuse.blkio-core-test",
              MS_NOSUID | MS_NODEV, opts) < 0) {
        snprintf(why, whylen, "mount -t fuse: %s", strerror(errno));
        close(f->fd);
        goto fail;
    }
    CHECK_RET(pthread_create(&f->thread, NULL, cu_fuse_main, f), 0);
    cu_fuse_current = f;
    /* Registered after cu_dir()'s cleanup, so it runs before it. */
    atexit(cu_fuse_atexit);
    return f;

fail:
    rmdir(f->mnt);
    pthread_mutex_destroy(&f->lock);
    free(f);
    return NULL;
}

#endif /* TESTS_LIB_CORE_FUSE_H */
