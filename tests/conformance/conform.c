/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * conform - conformance scenarios, written against <blkio.h> only, that
 * print a canonical trace of what the library answers.  Run once on each
 * libblkio.so.1 and compare (see conform-run.sh).
 *
 *   conform SCENARIO DRIVER [NAME=VALUE...]
 *
 * NAME=VALUE are the creation-time properties (path, fd, direct, ...)
 * every instance of the scenario gets before blkio_connect().  The
 * scenario prints the trace on stdout; a line "end = ok" closes a trace
 * that ran to its end.  The loaded library's file goes to stderr.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conform.h"

#define E(n) [n] = "-" #n

static const char *const cf_errnames[] = {
    E(EPERM), E(ENOENT), E(ESRCH), E(EINTR), E(EIO), E(ENXIO), E(E2BIG),
    E(EBADF), E(EAGAIN), E(ENOMEM), E(EACCES), E(EFAULT), E(EBUSY),
    E(EEXIST), E(EXDEV), E(ENODEV), E(ENOTDIR), E(EISDIR), E(EINVAL),
    E(ENFILE), E(EMFILE), E(ENOTTY), E(EFBIG), E(ENOSPC), E(ESPIPE),
    E(EROFS), E(ERANGE), E(ENOSYS), E(ENODATA), E(ETIME), E(EPROTO),
    E(EOVERFLOW), E(EILSEQ), E(ENOTSUP), E(ECONNREFUSED), E(ENOTCONN),
    E(ETIMEDOUT), E(ECANCELED), E(EMSGSIZE), E(ENOTBLK), E(ECONNRESET),
    E(EPIPE), E(EDOM), E(ENAMETOOLONG),
};

const char *cf_errname(int ret)
{
    static __thread char buf[32];

    if (ret < 0 && -ret < (int)(sizeof(cf_errnames) / sizeof(*cf_errnames))
        && cf_errnames[-ret])
        return cf_errnames[-ret];
    if (ret < 0)
        snprintf(buf, sizeof(buf), "-E%d", -ret);
    else
        snprintf(buf, sizeof(buf), "%d", ret);
    return buf;
}

static void cf_vline(const char *value, const char *fmt, va_list ap)
{
    vprintf(fmt, ap);
    printf(" = %s\n", value);
    fflush(stdout);
}

void cf_line(const char *value, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cf_vline(value, fmt, ap);
    va_end(ap);
}

int cf_ret(int ret, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    cf_vline(cf_errname(ret), fmt, ap);
    va_end(ap);
    return ret;
}

uint64_t cf_hash(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void cf_die(const char *fmt, ...)
{
    va_list ap;

    printf("died = ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf(" (%s)\n", blkio_get_error_msg());
    exit(1);
}

struct blkio *cf_create(const struct cf_setup *s)
{
    struct blkio *b = NULL;
    int ret = blkio_create(s->driver, &b);

    if (ret < 0)
        cf_die("blkio_create(%s) returned %s", s->driver, cf_errname(ret));
    for (int i = 0; i < s->nprops; i++) {
        char name[64];
        const char *eq = strchr(s->props[i], '=');
        size_t n = eq ? (size_t)(eq - s->props[i]) : 0;

        if (!eq || n >= sizeof(name))
            cf_die("bad setup property '%s'", s->props[i]);
        memcpy(name, s->props[i], n);
        name[n] = '\0';
        ret = blkio_set_str(b, name, eq + 1);
        if (ret < 0)
            cf_die("setting %s returned %s", s->props[i], cf_errname(ret));
    }
    return b;
}

struct blkio *cf_open(const struct cf_setup *s, bool start)
{
    struct blkio *b = cf_create(s);

    if (cf_ret(blkio_connect(b), "setup.connect") < 0)
        cf_die("blkio_connect failed");
    if (start && cf_ret(blkio_start(b), "setup.start") < 0)
        cf_die("blkio_start failed");
    return b;
}

int cf_wait1(struct blkioq *q, const char *label)
{
    struct blkio_completion c;
    struct timespec t = { .tv_sec = 10 };
    int n = blkioq_do_io(q, &c, 1, 1, &t);

    if (n != 1) {
        cf_line(n < 0 ? cf_errname(n) : "no completion", "%s", label);
        return n < 0 ? n : -ETIME;
    }
    return cf_ret(c.ret, "%s", label);
}

/* ---- life cycle: every call in every state ---- */

static void cf_life_created(struct blkio *b)
{
    struct blkio_mem_region r;
    int v = -1;
    bool bv = false;
    uint64_t u = 0;

    cf_ret(blkio_start(b), "created.start");
    cf_ret(blkio_get_int(b, "max-queues", &v), "created.get max-queues");
    cf_ret(blkio_get_bool(b, "supports-poll-queues", &bv),
           "created.get supports-poll-queues");
    cf_ret(blkio_get_uint64(b, "capacity", &u), "created.get capacity");
    cf_ret(blkio_set_int(b, "num-queues", 1), "created.set num-queues");
    cf_ret(blkio_set_int(b, "num-poll-queues", 0),
           "created.set num-poll-queues");
    cf_line(blkio_get_queue(b, 0) ? "queue" : "NULL", "created.get_queue 0");
    cf_line(blkio_get_poll_queue(b, 0) ? "queue" : "NULL",
            "created.get_poll_queue 0");
    cf_ret(blkio_add_queue(b), "created.add_queue");
    cf_ret(blkio_add_poll_queue(b), "created.add_poll_queue");
    cf_ret(blkio_remove_queue(b, 0), "created.remove_queue 0");
    cf_ret(blkio_remove_poll_queue(b, 0), "created.remove_poll_queue 0");
    cf_ret(blkio_alloc_mem_region(b, &r, 1 << 20), "created.alloc_mem_region");
}

static void cf_life_connected(struct blkio *b, const struct cf_setup *s)
{
    struct blkio_mem_region r;
    int v = -1;

    cf_ret(blkio_connect(b), "connected.connect again");
    cf_ret(blkio_set_bool(b, "read-only", false), "connected.set read-only");
    for (int i = 0; i < s->nprops; i++) {
        char name[64];
        const char *eq = strchr(s->props[i], '=');
        size_t n = (size_t)(eq - s->props[i]);

        memcpy(name, s->props[i], n);
        name[n] = '\0';
        cf_ret(blkio_set_str(b, name, eq + 1), "connected.set %s", name);
    }
    cf_ret(blkio_get_int(b, "max-queues", &v), "connected.get max-queues");
    cf_line(blkio_get_queue(b, 0) ? "queue" : "NULL",
            "connected.get_queue 0");
    cf_ret(blkio_add_queue(b), "connected.add_queue");
    cf_ret(blkio_remove_queue(b, 0), "connected.remove_queue 0");
    cf_ret(blkio_alloc_mem_region(b, &r, 1 << 20),
           "connected.alloc_mem_region");
}

static void cf_life_started(struct blkio *b)
{
    cf_ret(blkio_start(b), "started.start again");
    cf_ret(blkio_connect(b), "started.connect again");
    cf_ret(blkio_set_int(b, "num-queues", 1), "started.set num-queues");
    cf_ret(blkio_set_bool(b, "read-only", false), "started.set read-only");
    cf_line(blkio_get_queue(b, 0) ? "queue" : "NULL", "started.get_queue 0");
    cf_line(blkio_get_queue(b, 1) ? "queue" : "NULL", "started.get_queue 1");
    cf_line(blkio_get_queue(b, -1) ? "queue" : "NULL",
            "started.get_queue -1");
}

int cf_lifecycle(const struct cf_setup *s)
{
    struct blkio *b = (struct blkio *)&b;

    cf_ret(blkio_create("no-such-driver", &b), "create no-such-driver");
    cf_line(b ? "set" : "NULL", "create no-such-driver *bp");
    cf_ret(blkio_create("", &b), "create empty name");
    /* (blkio_destroy() of a NULL instance crashes libblkio 1.5.) */

    /* io_uring drivers: a negative fd other than -1 ("unset") and no
     * path is a bad file descriptor, not a missing property. */
    if (strstr(s->driver, "io_uring") &&
        cf_ret(blkio_create(s->driver, &b), "create bare") == 0) {
        cf_ret(blkio_set_int(b, "fd", -5), "set fd -5");
        cf_ret(blkio_connect(b), "connect fd -5 without path");
        blkio_destroy(&b);
    }

    b = cf_create(s);
    cf_life_created(b);
    cf_ret(blkio_connect(b), "connect");
    cf_life_connected(b, s);
    cf_ret(blkio_start(b), "start");
    cf_life_started(b);
    blkio_destroy(&b);
    cf_line(b ? "set" : "NULL", "destroy started *bp");

    /* Destroy in the created and connected states. */
    b = cf_create(s);
    blkio_destroy(&b);
    cf_line(b ? "set" : "NULL", "destroy created *bp");
    b = cf_create(s);
    cf_ret(blkio_connect(b), "connect 2");
    blkio_destroy(&b);
    cf_line(b ? "set" : "NULL", "destroy connected *bp");

    /* A failed start (no queues at all) leaves the instance connected. */
    b = cf_create(s);
    cf_ret(blkio_connect(b), "connect 3");
    cf_ret(blkio_set_int(b, "num-queues", 0), "set num-queues 0");
    cf_ret(blkio_start(b), "start without queues");
    cf_ret(blkio_set_int(b, "num-queues", 1), "set num-queues 1 after");
    cf_ret(blkio_start(b), "start after failed start");
    blkio_destroy(&b);
    return 0;
}

/* ---- main ---- */

static const struct {
    const char *name;
    int (*fn)(const struct cf_setup *s);
} cf_scenarios[] = {
    { "lifecycle", cf_lifecycle },
    { "props", cf_props },
    { "queues", cf_queues },
    { "mem", cf_mem },
    { "io", cf_io },
    { "cfd", cf_cfd },
    { "poll", cf_poll },
    { "readonly", cf_readonly },
    { "zones", cf_zones },
};

int main(int argc, char **argv)
{
    struct cf_setup s;
    Dl_info info;

    if (argc < 3) {
        fprintf(stderr, "usage: %s SCENARIO DRIVER [NAME=VALUE...]\n",
                argv[0]);
        return 2;
    }
    if (dladdr((void *)blkio_create, &info) && info.dli_fname)
        fprintf(stderr, "library: %s\n", info.dli_fname);
    s.driver = argv[2];
    s.nprops = argc - 3;
    s.props = argv + 3;
    for (size_t i = 0; i < sizeof(cf_scenarios) / sizeof(*cf_scenarios);
         i++) {
        if (strcmp(cf_scenarios[i].name, argv[1]) == 0) {
            int ret = cf_scenarios[i].fn(&s);
            printf("end = %s\n", ret == 0 ? "ok" : "failed");
            return ret == 0 ? 0 : 1;
        }
    }
    fprintf(stderr, "%s: unknown scenario '%s'\n", argv[0], argv[1]);
    return 2;
}
