/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * blkio-copy - copy one libblkio device to another.
 *
 *   blkio-copy [-d DEPTH] [-s CHUNK] SRC DST
 *
 * SRC and DST are DRIVER[:PROPERTY=VALUE[,PROPERTY=VALUE...]], for example
 * io_uring:path=/tmp/a,direct=true.  DST must be as large as SRC unless it
 * can grow (can-grow: a regular file).  The whole source capacity is copied
 * with DEPTH (default 8) chunks of CHUNK bytes (default 1 MiB) in flight:
 * each chunk is read from SRC and, once read, written to DST, then reused
 * for the next unread part.  Both queues are waited on through their
 * completion fds in epoll.  DST is flushed at the end.  Uses only the
 * public <blkio.h>, like any outside program.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <blkio.h>

struct copy_dev {
    const char *spec;
    struct blkio *b;
    struct blkioq *q;
    uint64_t capacity;
    bool can_grow;              /* writes past the end extend it */
    int request_alignment;
    int buf_alignment;
    bool needs_mem_regions;
    uint64_t deferred;          /* bit i: property i waits for connect */
};

struct copy_slot {
    uint64_t off;
    size_t len;
    bool writing;
};

static int copy_fail(const char *what, const struct copy_dev *d)
{
    fprintf(stderr, "blkio-copy: %s: %s: %s\n", d->spec, what,
            blkio_get_error_msg());
    return -1;
}

/* Set "k=v,k=v" properties; those only settable after connect are
 * handled in the second pass (after_connect). */
static int copy_set_props(struct copy_dev *d, const char *props,
                          bool after_connect)
{
    char *list, *save = NULL;
    int ret = 0, i = 0;

    if (!props)
        return 0;
    list = strdup(props);
    if (!list)
        return -1;
    for (char *kv = strtok_r(list, ",", &save); kv;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');

        if (!eq) {
            fprintf(stderr, "blkio-copy: %s: expected PROPERTY=VALUE, got "
                    "'%s'\n", d->spec, kv);
            ret = -1;
            break;
        }
        *eq = '\0';
        /* The second pass sets only what the first could not. */
        if (after_connect && !(d->deferred & (1ull << (i % 64)))) {
            i++;
            continue;
        }
        ret = blkio_set_str(d->b, kv, eq + 1);
        if (ret == -ENODEV && !after_connect) {   /* after connect */
            d->deferred |= 1ull << (i++ % 64);
            ret = 0;            /* next pass */
            continue;
        }
        i++;
        if (ret < 0) {
            *eq = '=';
            ret = copy_fail(kv, d);
            break;
        }
    }
    free(list);
    return ret;
}

static int copy_open(struct copy_dev *d, const char *spec)
{
    char *driver = strdup(spec);
    char *props;
    int ret;

    d->spec = spec;
    if (!driver)
        return -1;
    props = strchr(driver, ':');
    if (props)
        *props++ = '\0';
    ret = blkio_create(driver, &d->b);
    if (ret < 0) {
        copy_fail("blkio_create", d);
        goto out;
    }
    ret = copy_set_props(d, props, false);
    if (ret < 0)
        goto out;
    ret = blkio_connect(d->b);
    if (ret < 0) {
        copy_fail("blkio_connect", d);
        goto out;
    }
    ret = copy_set_props(d, props, true);
    if (ret < 0)
        goto out;
    if (blkio_get_uint64(d->b, "capacity", &d->capacity) < 0 ||
        blkio_get_bool(d->b, "can-grow", &d->can_grow) < 0 ||
        blkio_get_int(d->b, "request-alignment", &d->request_alignment) < 0 ||
        blkio_get_int(d->b, "buf-alignment", &d->buf_alignment) < 0 ||
        blkio_get_bool(d->b, "needs-mem-regions", &d->needs_mem_regions) < 0) {
        ret = copy_fail("reading properties", d);
        goto out;
    }
    ret = blkio_start(d->b);
    if (ret < 0) {
        copy_fail("blkio_start", d);
        goto out;
    }
    d->q = blkio_get_queue(d->b, 0);
    if (!d->q) {
        fprintf(stderr, "blkio-copy: %s: no queue 0\n", spec);
        ret = -1;
    }
out:
    free(driver);
    return ret < 0 ? -1 : 0;
}

/* How long requests in flight may go without a completion before the
 * copy gives up on the devices. */
#define COPY_STALL_MS 60000

/* Wait until either queue's completion fd is readable, then clear it. */
static int copy_wait(int ep, struct copy_dev *src, struct copy_dev *dst)
{
    struct epoll_event ev[2];
    uint64_t cnt;
    int n = epoll_wait(ep, ev, 2, COPY_STALL_MS);

    if (n < 0 && errno != EINTR) {
        perror("blkio-copy: epoll_wait");
        return -1;
    }
    if (n == 0) {
        fprintf(stderr, "blkio-copy: no completion for %d s with requests "
                "in flight: the device stopped answering\n",
                COPY_STALL_MS / 1000);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        struct copy_dev *d = ev[i].data.ptr;
        ssize_t r = read(blkioq_get_completion_fd(d->q), &cnt, sizeof(cnt));
        (void)r;    /* EAGAIN: someone else took the event already */
    }
    (void)src;
    (void)dst;
    return 0;
}

int main(int argc, char **argv)
{
    struct copy_dev src = { 0 }, dst = { 0 };
    struct blkio_mem_region region = { 0 };
    struct copy_slot *slots = NULL;
    struct blkio_completion c[64];
    uint64_t next = 0, done = 0;
    size_t chunk = 1u << 20;
    size_t align;
    int depth = 8, opt, ep = -1, inflight = 0, status = 1;
    bool region_src = false, region_dst = false;
    unsigned char *buf;

    while ((opt = getopt(argc, argv, "d:s:")) != -1) {
        switch (opt) {
        case 'd':
            depth = atoi(optarg);
            break;
        case 's':
            chunk = (size_t)strtoull(optarg, NULL, 0);
            break;
        default:
            goto usage;
        }
    }
    if (argc - optind != 2 || depth < 1 || depth > 64 || chunk == 0)
        goto usage;

    if (copy_open(&src, argv[optind]) < 0 ||
        copy_open(&dst, argv[optind + 1]) < 0)
        goto out;
    if (dst.capacity < src.capacity && !dst.can_grow) {
        fprintf(stderr, "blkio-copy: %s has capacity %" PRIu64 ", smaller "
                "than the %" PRIu64 " bytes of %s\n", dst.spec, dst.capacity,
                src.capacity, src.spec);
        goto out;
    }
    align = (size_t)(src.request_alignment > dst.request_alignment ?
                     src.request_alignment : dst.request_alignment);
    if (chunk % align) {
        fprintf(stderr, "blkio-copy: chunk size %zu is not a multiple of "
                "request-alignment %zu\n", chunk, align);
        goto out;
    }

    /* One memory region for all chunks; libblkio aligns it for us, and
     * drivers that need regions get it mapped. */
    if (blkio_alloc_mem_region(src.b, &region, chunk * (size_t)depth) < 0) {
        copy_fail("blkio_alloc_mem_region", &src);
        goto out;
    }
    if (src.needs_mem_regions) {
        if (blkio_map_mem_region(src.b, &region) < 0) {
            copy_fail("blkio_map_mem_region", &src);
            goto out;
        }
        region_src = true;
    }
    if (dst.needs_mem_regions) {
        if (blkio_map_mem_region(dst.b, &region) < 0) {
            copy_fail("blkio_map_mem_region", &dst);
            goto out;
        }
        region_dst = true;
    }
    buf = region.addr;

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("blkio-copy: epoll_create1");
        goto out;
    }
    {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &src };

        /* The completion fds signal only once enabled (the manual). */
        blkioq_set_completion_fd_enabled(src.q, true);
        blkioq_set_completion_fd_enabled(dst.q, true);
        if (epoll_ctl(ep, EPOLL_CTL_ADD, blkioq_get_completion_fd(src.q),
                      &ev) < 0) {
            perror("blkio-copy: epoll_ctl");
            goto out;
        }
        ev.data.ptr = &dst;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, blkioq_get_completion_fd(dst.q),
                      &ev) < 0) {
            perror("blkio-copy: epoll_ctl");
            goto out;
        }
    }

    slots = calloc((size_t)depth, sizeof(*slots));
    if (!slots)
        goto out;

    /* Start a read in every slot. */
    for (int i = 0; i < depth && next < src.capacity; i++) {
        struct copy_slot *s = &slots[i];

        s->off = next;
        s->len = src.capacity - next < chunk ? src.capacity - next : chunk;
        s->writing = false;
        next += s->len;
        blkioq_read(src.q, s->off, buf + (size_t)i * chunk, s->len, s, 0);
        inflight++;
    }

    while (inflight > 0) {
        int progress = 0;

        for (int pass = 0; pass < 2; pass++) {
            struct copy_dev *d = pass == 0 ? &src : &dst;
            int n = blkioq_do_io(d->q, c, 0, 64, NULL);

            if (n < 0) {
                copy_fail("blkioq_do_io", d);
                goto out;
            }
            progress += n;
            for (int k = 0; k < n; k++) {
                struct copy_slot *s = c[k].user_data;
                unsigned char *p = buf + (size_t)(s - slots) * chunk;

                if (c[k].ret < 0) {
                    fprintf(stderr, "blkio-copy: %s at offset %" PRIu64
                            ": %s: %s\n", s->writing ? "write" : "read",
                            s->off, strerror(-c[k].ret),
                            c[k].error_msg ? c[k].error_msg : "");
                    goto out;
                }
                if (!s->writing) {
                    s->writing = true;
                    blkioq_write(dst.q, s->off, p, s->len, s, 0);
                    continue;
                }
                done += s->len;
                inflight--;
                if (next < src.capacity) {
                    s->off = next;
                    s->len = src.capacity - next < chunk ?
                             src.capacity - next : chunk;
                    s->writing = false;
                    next += s->len;
                    blkioq_read(src.q, s->off, p, s->len, s, 0);
                    inflight++;
                }
            }
        }
        /* Submit what was just queued (do_io above did, for requests
         * queued before it); then sleep if nothing happened. */
        if (blkioq_do_io(src.q, NULL, 0, 0, NULL) < 0 ||
            blkioq_do_io(dst.q, NULL, 0, 0, NULL) < 0) {
            fprintf(stderr, "blkio-copy: blkioq_do_io: %s\n",
                    blkio_get_error_msg());
            goto out;
        }
        if (!progress && inflight > 0 && copy_wait(ep, &src, &dst) < 0)
            goto out;
    }

    blkioq_flush(dst.q, NULL, 0);
    if (blkioq_do_io(dst.q, c, 1, 1, NULL) != 1 || c[0].ret < 0) {
        fprintf(stderr, "blkio-copy: flush of %s failed: %s\n", dst.spec,
                c[0].ret < 0 ? strerror(-c[0].ret) : blkio_get_error_msg());
        goto out;
    }
    if (done != src.capacity) {
        fprintf(stderr, "blkio-copy: copied %" PRIu64 " of %" PRIu64
                " bytes\n", done, src.capacity);
        goto out;
    }
    status = 0;

out:
    if (ep >= 0)
        close(ep);
    free(slots);
    if (region.addr) {
        if (region_dst)
            blkio_unmap_mem_region(dst.b, &region);
        if (region_src)
            blkio_unmap_mem_region(src.b, &region);
        blkio_free_mem_region(src.b, &region);
    }
    blkio_destroy(&src.b);
    blkio_destroy(&dst.b);
    return status;

usage:
    fprintf(stderr, "usage: blkio-copy [-d DEPTH] [-s CHUNK] "
            "DRIVER[:PROP=VALUE,...] DRIVER[:PROP=VALUE,...]\n");
    return 2;
}
