/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * core-fuse.h - a regular file whose reads complete only when the test says
 * so, for the tests that need a request that does not complete (timeouts,
 * interrupted waits).
 *
 * A tiny FUSE server speaking the kernel protocol (<linux/fuse.h>) directly
 * on /dev/fuse: one directory with one file, "disk", of a given size, every
 * byte CU_FUSE_FILL.  While reads are held, READ requests stay unanswered;
 * cu_fuse_release() answers them and lets later reads through.
 *
 * The server is a child process, not a thread, and the test keeps no
 * /dev/fuse descriptor: a test that dies while a read is held must not
 * deadlock against its own server (the kernel waits for the answer
 * uninterruptibly).  If the server dies, the connection is aborted and held
 * reads fail; if the test dies, the server sees its control socket close,
 * unmounts and exits.  Interrupted reads are answered with -EINTR.
 *
 * Reads go through the page cache (no FOPEN_DIRECT_IO, no readahead):
 * io_uring then tries them without blocking, gets -EAGAIN for a page that
 * is not cached, and hands them to a worker thread, so the submitting
 * thread never waits for the server.  Each held read must therefore touch
 * pages no earlier read has cached.
 *
 * Needs root (mount(2)); cu_fuse_start() returns NULL with a reason when
 * that is not possible, for the caller to skip.
 */
#ifndef TESTS_LIB_CORE_FUSE_H
#define TESTS_LIB_CORE_FUSE_H

#include <linux/fuse.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "core-util.h"

#define CU_FUSE_FILL   0x5c
#define CU_FUSE_MAXREQ 64

struct cu_fuse {
    char mnt[300];
    char file[320];
    pid_t pid;      /* server */
    int ctl;        /* control socket to the server */
};

/* ---- server side (child process) ---- */

struct cu_fuse_server {
    int fd;
    uint64_t size;
    bool hold;
    uint64_t held[CU_FUSE_MAXREQ];
    uint32_t held_size[CU_FUSE_MAXREQ];
    int nheld;
};

static void cu_fuse_reply(struct cu_fuse_server *s, uint64_t unique,
                          int error, const void *data, size_t len)
{
    struct fuse_out_header h = {
        .len = (uint32_t)(sizeof(h) + len), .error = error, .unique = unique,
    };
    struct iovec iov[2] = { { &h, sizeof(h) }, { (void *)data, len } };

    /* ENOENT: the request was interrupted and is gone already. */
    if (writev(s->fd, iov, len ? 2 : 1) < 0 && errno != ENOENT)
        fprintf(stderr, "fuse server: reply to %llu: %s\n",
                (unsigned long long)unique, strerror(errno));
}

static void cu_fuse_attr(const struct cu_fuse_server *s, uint64_t node,
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
        a->size = s->size;
        a->blocks = (s->size + 511) / 512;
    }
}

static void cu_fuse_read_reply(struct cu_fuse_server *s, uint64_t unique,
                               uint32_t size)
{
    static char data[131072];

    memset(data, CU_FUSE_FILL, sizeof(data));
    if (size > sizeof(data))
        size = sizeof(data);
    cu_fuse_reply(s, unique, 0, data, size);
}

static void cu_fuse_handle(struct cu_fuse_server *s,
                           const struct fuse_in_header *in, const void *arg)
{
    switch (in->opcode) {
    case FUSE_INIT: {
        const struct fuse_init_in *ii = arg;
        /* Asynchronous reads: the page cache sends READ without waiting
         * for it, so io_uring can wait for the page instead of blocking
         * the submitting thread. */
        struct fuse_init_out o = {
            .flags = ii->flags & FUSE_ASYNC_READ,
            .major = FUSE_KERNEL_VERSION,
            .minor = FUSE_KERNEL_MINOR_VERSION,
            .max_readahead = 0,
            .max_background = 16,
            .congestion_threshold = 12,
            .max_write = 65536,
            .time_gran = 1,
        };
        cu_fuse_reply(s, in->unique, 0, &o, sizeof(o));
        break;
    }
    case FUSE_LOOKUP:
        if (in->nodeid == 1 && strcmp(arg, "disk") == 0) {
            struct fuse_entry_out o = { .nodeid = 2, .generation = 1 };
            cu_fuse_attr(s, 2, &o.attr);
            cu_fuse_reply(s, in->unique, 0, &o, sizeof(o));
        } else {
            cu_fuse_reply(s, in->unique, -ENOENT, NULL, 0);
        }
        break;
    case FUSE_GETATTR: {
        struct fuse_attr_out o = { .attr_valid = 0 };
        cu_fuse_attr(s, in->nodeid, &o.attr);
        cu_fuse_reply(s, in->unique, 0, &o, sizeof(o));
        break;
    }
    case FUSE_OPEN: {
        struct fuse_open_out o = { .fh = 1 };
        cu_fuse_reply(s, in->unique, 0, &o, sizeof(o));
        break;
    }
    case FUSE_READ: {
        const struct fuse_read_in *r = arg;
        if (s->hold && s->nheld < CU_FUSE_MAXREQ) {
            s->held[s->nheld] = in->unique;
            s->held_size[s->nheld++] = r->size;
        } else {
            cu_fuse_read_reply(s, in->unique, r->size);
        }
        break;
    }
    case FUSE_INTERRUPT: {
        const struct fuse_interrupt_in *ii = arg;
        for (int i = 0; i < s->nheld; i++) {
            if (s->held[i] == ii->unique) {
                cu_fuse_reply(s, ii->unique, -EINTR, NULL, 0);
                s->held[i] = s->held[--s->nheld];
                s->held_size[i] = s->held_size[s->nheld];
                break;
            }
        }
        break;
    }
    case FUSE_WRITE: {
        const struct fuse_write_in *w = arg;
        struct fuse_write_out o = { .size = w->size };
        cu_fuse_reply(s, in->unique, 0, &o, sizeof(o));
        break;
    }
    case FUSE_FLUSH:
    case FUSE_RELEASE:
    case FUSE_FSYNC:
    case FUSE_OPENDIR:
    case FUSE_RELEASEDIR:
        cu_fuse_reply(s, in->unique, 0, NULL, 0);
        break;
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
        break;   /* no reply expected */
    default:
        cu_fuse_reply(s, in->unique, -ENOSYS, NULL, 0);
        break;
    }
}

/* Control commands: 'h' hold, 'r' release, 'c' count; answer: int32. */
static bool cu_fuse_control(struct cu_fuse_server *s, int ctl)
{
    char cmd;
    int32_t n;

    if (read(ctl, &cmd, 1) != 1)
        return false;
    switch (cmd) {
    case 'h':
        s->hold = true;
        break;
    case 'r':
        s->hold = false;
        for (int i = 0; i < s->nheld; i++)
            cu_fuse_read_reply(s, s->held[i], s->held_size[i]);
        s->nheld = 0;
        break;
    default:
        break;
    }
    n = s->nheld;
    return write(ctl, &n, sizeof(n)) == (ssize_t)sizeof(n);
}

static void __attribute__((noreturn))
cu_fuse_serve(int fd, int ctl, uint64_t size, const char *mnt)
{
    struct cu_fuse_server s = { .fd = fd, .size = size };
    static char buf[131072 + 4096] __attribute__((aligned(8)));

    for (;;) {
        struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
                               { .fd = ctl, .events = POLLIN } };

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents && !cu_fuse_control(&s, ctl))
            break;   /* the test is gone or asked us to stop */
        if (p[0].revents & (POLLERR | POLLHUP | POLLNVAL))
            break;
        if (p[0].revents & POLLIN) {
            ssize_t n = read(fd, buf, sizeof(buf));
            if (n < 0) {
                if (errno == EINTR || errno == ENOENT || errno == EAGAIN)
                    continue;
                break;   /* ENODEV: unmounted */
            }
            if ((size_t)n >= sizeof(struct fuse_in_header))
                cu_fuse_handle(&s, (const struct fuse_in_header *)buf,
                               buf + sizeof(struct fuse_in_header));
        }
    }
    umount2(mnt, MNT_DETACH);
    _exit(0);
}

/* ---- test side ---- */

static int32_t cu_fuse_cmd(struct cu_fuse *f, char cmd)
{
    int32_t n = -1;

    if (write(f->ctl, &cmd, 1) != 1 ||
        read(f->ctl, &n, sizeof(n)) != (ssize_t)sizeof(n))
        T_FAIL("fuse server does not answer: %s", strerror(errno));
    return n;
}

/* Hold reads from now on. */
static inline void cu_fuse_hold(struct cu_fuse *f)
{
    cu_fuse_cmd(f, 'h');
}

/* Answer the held reads and stop holding. */
static inline void cu_fuse_release(struct cu_fuse *f)
{
    cu_fuse_cmd(f, 'r');
}

/* Number of reads the server is holding. */
static inline int cu_fuse_held(struct cu_fuse *f)
{
    return cu_fuse_cmd(f, 'c');
}

/* Wait (up to 5 s) until the server holds n reads. */
static inline void cu_fuse_wait_held(struct cu_fuse *f, int n)
{
    for (int i = 0; i < 5000; i++) {
        if (cu_fuse_held(f) >= n)
            return;
        usleep(1000);
    }
    T_FAIL("the fuse server never saw %d read(s), holds %d", n,
           cu_fuse_held(f));
}

static struct cu_fuse *cu_fuse_current;

static inline void cu_fuse_stop(struct cu_fuse *f)
{
    int status;

    if (!f)
        return;
    if (f->pid > 0) {
        close(f->ctl);   /* the server unmounts and exits */
        if (waitpid(f->pid, &status, 0) < 0)
            fprintf(stderr, "waitpid fuse server: %s\n", strerror(errno));
        f->pid = -1;
    }
    umount2(f->mnt, MNT_DETACH);
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
    int fd, sv[2];

    CHECK(f != NULL);
    snprintf(f->mnt, sizeof(f->mnt), "%s/fuse", cu_dir());
    snprintf(f->file, sizeof(f->file), "%s/disk", f->mnt);
    if (mkdir(f->mnt, 0700) < 0)
        T_FAIL("mkdir %s: %s", f->mnt, strerror(errno));

    fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "open /dev/fuse: %s", strerror(errno));
        goto fail;
    }
    snprintf(opts, sizeof(opts),
             "fd=%d,rootmode=40000,user_id=%u,group_id=%u", fd,
             (unsigned)getuid(), (unsigned)getgid());
    if (mount("blkio-core-test", f->mnt, "fuse.blkio-core-test",
              MS_NOSUID | MS_NODEV, opts) < 0) {
        snprintf(why, whylen, "mount -t fuse: %s", strerror(errno));
        close(fd);
        goto fail;
    }
    CHECK_RET(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fflush(stdout);
    fflush(stderr);
    f->pid = fork();
    CHECK(f->pid >= 0);
    if (f->pid == 0) {
        sigset_t all;

        /* Signals meant for the test are not for us. */
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(sv[0]);
        cu_fuse_serve(fd, sv[1], size, f->mnt);
    }
    close(sv[1]);
    close(fd);   /* only the server holds the connection */
    f->ctl = sv[0];
    cu_fuse_current = f;
    /* Registered after cu_dir()'s cleanup, so it runs before it. */
    atexit(cu_fuse_atexit);
    return f;

fail:
    rmdir(f->mnt);
    free(f);
    return NULL;
}

#endif /* TESTS_LIB_CORE_FUSE_H */
