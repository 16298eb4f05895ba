/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * blkio-bench - measure the libblkio request path.
 *
 * Uses only the public <blkio.h>, so it runs unchanged against this library
 * or the released libblkio.  Each thread owns one queue and keeps --iodepth
 * requests in flight: every completion batch returned by one blkioq_do_io()
 * call is re-queued as a whole and submitted by the next call, so the
 * program adds little per request beyond one xorshift step and a histogram
 * increment.  Time is read once per batch, not once per request.
 *
 *   blkio-bench --driver io_uring --path /var/tmp/f --prop direct=true \
 *               --rw randread --bs 4k --iodepth 16 --runtime 5 [--json]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <blkio.h>

enum bench_rw { BENCH_READ, BENCH_WRITE, BENCH_RANDREAD, BENCH_RANDWRITE };
enum bench_mode { BENCH_MODE_BLOCKING, BENCH_MODE_EVENT, BENCH_MODE_POLL };

static const char *const bench_rw_names[] = {
    "read", "write", "randread", "randwrite",
};
static const char *const bench_mode_names[] = {
    "blocking", "event", "poll",
};

/* Options */
static const char *bench_driver = "io_uring";
static const char *bench_path;
static char **bench_props;              /* "KEY=VALUE" strings */
static int bench_nprops;
static int bench_threads = 1;
static int bench_iodepth = 1;
static enum bench_rw bench_rw = BENCH_RANDREAD;
static uint64_t bench_bs = 4096;
static double bench_runtime = 5.0;
static double bench_ramp;
static bool bench_poll_queues;
static enum bench_mode bench_mode = BENCH_MODE_BLOCKING;
static uint64_t bench_size;             /* 0: whole device */
static bool bench_json;
static bool bench_mem_regions;          /* map the buffers even if not needed */
static bool bench_layout_mapped;        /* the buffers are a mapped region */
static int bench_submit_batch;          /* 0: a whole completion batch */
static int bench_rate;                  /* requests/s in all; 0: flat out */
static uint64_t bench_seed = 0x9e3779b97f4a7c15ull;

/*
 * Latency histogram: log-linear buckets over nanoseconds.  Values below
 * 2^HIST_SUB_BITS get one bucket each; above, each power of two is split
 * into 2^(HIST_SUB_BITS-1) buckets, so a bucket is at most ~3% wide.
 */
#define HIST_SUB_BITS 6
#define HIST_HALF     (1u << (HIST_SUB_BITS - 1))
#define HIST_BUCKETS  ((1u << HIST_SUB_BITS) + (64 - HIST_SUB_BITS) * HIST_HALF)

static inline unsigned hist_index(uint64_t v)
{
    if (v < (1u << HIST_SUB_BITS))
        return (unsigned)v;
    unsigned msb = 63 - (unsigned)__builtin_clzll(v);
    unsigned e = msb - HIST_SUB_BITS + 1;
    return (1u << HIST_SUB_BITS) + (e - 1) * HIST_HALF +
           (unsigned)((v >> e) - HIST_HALF);
}

/* Middle of the bucket, in nanoseconds. */
static double hist_value(unsigned idx)
{
    if (idx < (1u << HIST_SUB_BITS))
        return idx;
    unsigned rel = idx - (1u << HIST_SUB_BITS);
    unsigned e = rel / HIST_HALF + 1;
    uint64_t lo = (uint64_t)(rel % HIST_HALF + HIST_HALF) << e;
    return (double)lo + (double)(1ull << e) / 2.0;
}

struct bench_thread {
    int index;
    pthread_t tid;
    struct blkioq *q;
    int completion_fd;
    int epfd;

    unsigned char *bufs;                /* iodepth * bs bytes */
    uint64_t *submit_ns;                /* per slot */
    struct blkio_completion *comps;     /* iodepth entries */

    uint64_t rng;
    uint64_t region_start;              /* sequential: this thread's share */
    uint64_t region_blocks;
    uint64_t cursor;
    uint64_t next_slot_ns;              /* --rate: when the next may go */

    /* Results of the measurement window */
    uint64_t ios;
    uint64_t lat_sum_ns;
    uint64_t elapsed_ns;
    double user_s, sys_s;
    uint64_t batches;
    uint64_t empty_polls;
    int err;
    uint64_t hist[HIST_BUCKETS];
} __attribute__((aligned(64)));

static struct bench_thread *bench_tds;
static uint64_t bench_nblocks;          /* bs-sized blocks in the range */
static uint64_t bench_start_ns, bench_measure_ns, bench_end_ns;
static pthread_barrier_t bench_barrier;
static atomic_bool bench_stop;

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double tv_s(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

/* xorshift64*: a few cycles per offset, plenty random for spreading I/O. */
static inline uint64_t bench_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static inline uint64_t bench_next_offset(struct bench_thread *t)
{
    if (bench_rw == BENCH_RANDREAD || bench_rw == BENCH_RANDWRITE) {
        /* Multiply-shift maps [0, 2^64) onto [0, nblocks) without a div. */
        uint64_t blk = (uint64_t)(((unsigned __int128)bench_rand(&t->rng) *
                                   bench_nblocks) >> 64);
        return blk * bench_bs;
    }
    uint64_t off = (t->region_start + t->cursor) * bench_bs;
    if (++t->cursor == t->region_blocks)
        t->cursor = 0;
    return off;
}

static inline void bench_submit(struct bench_thread *t, unsigned slot,
                                uint64_t now)
{
    void *buf = t->bufs + (size_t)slot * bench_bs;
    uint64_t off = bench_next_offset(t);

    t->submit_ns[slot] = now;
    if (bench_rw == BENCH_READ || bench_rw == BENCH_RANDREAD)
        blkioq_read(t->q, off, buf, bench_bs, (void *)(uintptr_t)slot, 0);
    else
        blkioq_write(t->q, off, buf, bench_bs, (void *)(uintptr_t)slot, 0);
}

/* Wait for at least one completion the way --mode asks; returns the count. */
static int bench_reap(struct bench_thread *t)
{
    int n;

    switch (bench_mode) {
    case BENCH_MODE_BLOCKING:
        return blkioq_do_io(t->q, t->comps, 1, bench_iodepth, NULL);

    case BENCH_MODE_POLL:
        for (;;) {
            n = blkioq_do_io(t->q, t->comps, 0, bench_iodepth, NULL);
            if (n != 0)
                return n;
            t->empty_polls++;
            if (atomic_load_explicit(&bench_stop, memory_order_relaxed))
                return 0;
        }

    case BENCH_MODE_EVENT:
        for (;;) {
            /* Submits what was queued and takes what is already there. */
            n = blkioq_do_io(t->q, t->comps, 0, bench_iodepth, NULL);
            if (n != 0)
                return n;
            t->empty_polls++;

            struct epoll_event ev;
            int r = epoll_wait(t->epfd, &ev, 1, 1000);
            if (r < 0 && errno != EINTR)
                return -errno;
            if (r > 0) {
                /* Reset the eventfd before looking again, so a completion
                 * that lands after the next do_io still wakes us. */
                uint64_t cnt;
                if (read(t->completion_fd, &cnt, sizeof(cnt)) < 0 &&
                    errno != EAGAIN)
                    return -errno;
            }
            if (atomic_load_explicit(&bench_stop, memory_order_relaxed))
                return 0;
        }
    }
    return -EINVAL;
}

/* A failed do_io or request stops every thread; the first error is kept. */
static void bench_fail(struct bench_thread *t, const char *what, int err,
                       const char *msg)
{
    fprintf(stderr, "blkio-bench: thread %d: %s: %s: %s\n", t->index, what,
            strerror(-err), msg ? msg : "");
    if (!t->err)
        t->err = err;
    atomic_store(&bench_stop, true);
}

/* Submit what is queued without waiting (--submit-batch). */
static void bench_flush_submissions(struct bench_thread *t)
{
    int r = blkioq_do_io(t->q, NULL, 0, 0, NULL);
    if (r < 0)
        bench_fail(t, "blkioq_do_io", r, blkio_get_error_msg());
}

/*
 * Fill the queue with --submit-batch requests per do_io call.  This
 * matters on devices that complete everything one kick gave them at once
 * (the VM's virtio-blk here): a depth submitted in one go then arrives and
 * leaves together forever after and never overlaps work.
 */
static void bench_fill(struct bench_thread *t, uint64_t now)
{
    for (int i = 0; i < bench_iodepth; i++) {
        bench_submit(t, (unsigned)i, now);
        if (bench_submit_batch && (i + 1) % bench_submit_batch == 0)
            bench_flush_submissions(t);
    }
}

/* Latencies and counts of one completion batch. */
static void bench_account(struct bench_thread *t, int n, uint64_t now,
                          bool measuring)
{
    for (int i = 0; i < n; i++) {
        const struct blkio_completion *c = &t->comps[i];
        if (c->ret != 0)
            bench_fail(t, "request failed", c->ret, c->error_msg);
        if (measuring) {
            uint64_t lat = now - t->submit_ns[(uintptr_t)c->user_data];
            t->hist[hist_index(lat)]++;
            t->lat_sum_ns += lat;
        }
    }
    if (measuring) {
        t->ios += (uint64_t)n;
        t->batches++;
    }
}

/*
 * --rate: a thread re-queues a request no earlier than its next slot, its
 * share of the rate apart, sleeping until then.  This plays clients that
 * each send one request at a time at a given rate (the default model's
 * NBD connections) so that a backend's cost per request can be read at
 * the rate a goal needs rather than flat out.  A thread that falls
 * behind does not catch up in a burst: its slots restart from now.
 * Returns the time after the wait.
 */
static uint64_t bench_pace(struct bench_thread *t, uint64_t now)
{
    uint64_t gap = (uint64_t)bench_threads * 1000000000u / (uint64_t)bench_rate;

    if (t->next_slot_ns + gap < now)
        t->next_slot_ns = now;
    else
        t->next_slot_ns += gap;
    if (t->next_slot_ns <= now)
        return now;
    struct timespec ts = {
        .tv_sec = (time_t)(t->next_slot_ns / 1000000000u),
        .tv_nsec = (long)(t->next_slot_ns % 1000000000u),
    };
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
    return now_ns();
}

/* Re-queue the whole batch; the next do_io submits it at once.
 * --submit-batch N submits every N requests instead (fio's default
 * pattern is N=1), and --rate each at its slot. */
static void bench_requeue(struct bench_thread *t, int n, uint64_t now)
{
    for (int i = 0; i < n; i++) {
        if (bench_rate)
            now = bench_pace(t, now);
        bench_submit(t, (unsigned)(uintptr_t)t->comps[i].user_data, now);
        /* A paced request goes at its slot, not with the next one. */
        if ((bench_rate ||
             (bench_submit_batch && (i + 1) % bench_submit_batch == 0)) &&
            i + 1 < n)
            bench_flush_submissions(t);
    }
}

/* Let the rest finish so the queue is idle before blkio_destroy(). */
static void bench_drain(struct bench_thread *t, unsigned inflight)
{
    while (inflight > 0) {
        int n = blkioq_do_io(t->q, t->comps, (int)inflight, bench_iodepth,
                             NULL);
        if (n < 0) {
            bench_fail(t, "draining", n, blkio_get_error_msg());
            break;
        }
        inflight -= (unsigned)n;
    }
}

static void *bench_thread_main(void *opaque)
{
    struct bench_thread *t = opaque;
    struct rusage ru0, ru1;
    uint64_t t0 = 0, now;
    unsigned inflight;
    bool measuring = false;

    pthread_barrier_wait(&bench_barrier);

    now = now_ns();
    if (bench_ramp <= 0) {
        getrusage(RUSAGE_THREAD, &ru0);
        t0 = now;
        measuring = true;
    }
    bench_fill(t, now);
    inflight = (unsigned)bench_iodepth;

    for (;;) {
        int n = bench_reap(t);
        if (n < 0) {
            bench_fail(t, "blkioq_do_io", n, blkio_get_error_msg());
            break;
        }
        now = now_ns();
        inflight -= (unsigned)n;

        if (!measuring && now >= bench_measure_ns) {
            getrusage(RUSAGE_THREAD, &ru0);
            t0 = now;
            measuring = true;
        }
        bench_account(t, n, now, measuring);
        if (now >= bench_end_ns || t->err ||
            atomic_load_explicit(&bench_stop, memory_order_relaxed))
            break;
        bench_requeue(t, n, now);
        inflight += (unsigned)n;
    }

    if (measuring) {
        getrusage(RUSAGE_THREAD, &ru1);
        t->elapsed_ns = now - t0;
        t->user_s = tv_s(&ru1.ru_utime) - tv_s(&ru0.ru_utime);
        t->sys_s = tv_s(&ru1.ru_stime) - tv_s(&ru0.ru_stime);
    }
    bench_drain(t, inflight);
    return NULL;
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -1;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    case 't': case 'T': v <<= 40; end++; break;
    }
    if (*end == 'i' || *end == 'I')
        end++;
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end)
        return -1;
    *out = v;
    return 0;
}

static int parse_enum(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: blkio-bench --path PATH [options]\n"
"  --driver NAME        libblkio driver (default io_uring)\n"
"  --path PATH          file, device or socket\n"
"  --prop KEY=VALUE     set a property (repeatable; e.g. direct=true)\n"
"  --threads N          threads, one queue each (default 1)\n"
"  --iodepth N          requests in flight per thread (default 1)\n"
"  --rw MODE            read|write|randread|randwrite (default randread)\n"
"  --bs SIZE            request size (default 4k)\n"
"  --runtime SECONDS    measured time (default 5)\n"
"  --ramp SECONDS       unmeasured warm-up first (alias --warmup)\n"
"  --poll               use poll queues (num-poll-queues=N, num-queues=0)\n"
"  --mode MODE          blocking: do_io min=1; event: completion fd + epoll;\n"
"                       poll: busy do_io min=0 (default blocking)\n"
"  --size SIZE          use only the first SIZE bytes\n"
"  --submit-batch N     submit every N re-queued requests (default 0: each\n"
"                       completion batch in one do_io; fio does 1)\n"
"  --rate N             at most N requests/s in all: each thread waits for\n"
"                       its share before re-queueing (default 0: flat out)\n"
"  --seed N             random offset seed\n"
"  --mem-regions        allocate and map the buffers as a memory region\n"
"                       even where the driver does not need one\n"
"  --json               print one JSON object\n");
}

enum {
    OPT_DRIVER = 256, OPT_PATH, OPT_PROP, OPT_THREADS, OPT_IODEPTH, OPT_RW,
    OPT_BS, OPT_RUNTIME, OPT_RAMP, OPT_POLL, OPT_MODE, OPT_SIZE, OPT_JSON,
    OPT_SEED, OPT_RATE, OPT_SUBMIT_BATCH, OPT_MEM_REGIONS, OPT_HELP,
};

static const struct option bench_options[] = {
    { "driver",  required_argument, NULL, OPT_DRIVER },
    { "path",    required_argument, NULL, OPT_PATH },
    { "prop",    required_argument, NULL, OPT_PROP },
    { "threads", required_argument, NULL, OPT_THREADS },
    { "numjobs", required_argument, NULL, OPT_THREADS },
    { "iodepth", required_argument, NULL, OPT_IODEPTH },
    { "rw",      required_argument, NULL, OPT_RW },
    { "bs",      required_argument, NULL, OPT_BS },
    { "runtime", required_argument, NULL, OPT_RUNTIME },
    { "ramp",    required_argument, NULL, OPT_RAMP },
    { "warmup",  required_argument, NULL, OPT_RAMP },
    { "poll",    no_argument,       NULL, OPT_POLL },
    { "mode",    required_argument, NULL, OPT_MODE },
    { "size",    required_argument, NULL, OPT_SIZE },
    { "json",    no_argument,       NULL, OPT_JSON },
    { "mem-regions", no_argument,   NULL, OPT_MEM_REGIONS },
    { "seed",    required_argument, NULL, OPT_SEED },
    { "submit-batch", required_argument, NULL, OPT_SUBMIT_BATCH },
    { "rate",    required_argument, NULL, OPT_RATE },
    { "help",    no_argument,       NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
};

static void bench_add_prop(const char *kv)
{
    if (!strchr(kv, '=')) {
        fprintf(stderr, "blkio-bench: --prop %s: expected KEY=VALUE\n", kv);
        exit(2);
    }
    bench_props = realloc(bench_props,
                          sizeof(*bench_props) * (size_t)(bench_nprops + 1));
    if (!bench_props) {
        perror("realloc");
        exit(1);
    }
    bench_props[bench_nprops++] = (char *)kv;
}

/* A count option: --submit-batch (0 allowed), --threads, --iodepth,
 * --rate (0 allowed, up to 100 million). */
static int bench_parse_count_max(const char *arg, long min, long max)
{
    char *end;
    long v = strtol(arg, &end, 10);

    if (end == arg || *end || v < min || v > max) {
        fprintf(stderr, "blkio-bench: invalid count: %s\n", arg);
        exit(2);
    }
    return (int)v;
}

static int bench_parse_count(const char *arg, long min)
{
    return bench_parse_count_max(arg, min, 65536);
}

static int bench_parse_name(const char *opt, const char *arg,
                            const char *const *names, int n)
{
    int v = parse_enum(arg, names, n);
    if (v < 0) {
        fprintf(stderr, "blkio-bench: invalid --%s: %s\n", opt, arg);
        exit(2);
    }
    return v;
}

/* --bs, --size, --seed: a size with an optional k/M/G/T suffix. */
static uint64_t bench_parse_size(int c, const char *arg)
{
    uint64_t v;
    if (parse_size(arg, &v) < 0 || (c == OPT_BS && v == 0)) {
        fprintf(stderr, "blkio-bench: invalid size: %s\n", arg);
        exit(2);
    }
    return v;
}

/* --runtime (must be positive), --ramp: seconds. */
static double bench_parse_seconds(int c, const char *arg)
{
    char *end;
    double d = strtod(arg, &end);
    if (end == arg || *end || d < 0 || (c == OPT_RUNTIME && d <= 0)) {
        fprintf(stderr, "blkio-bench: invalid seconds: %s\n", arg);
        exit(2);
    }
    return d;
}

static void parse_args(int argc, char **argv)
{
    int c;

    while ((c = getopt_long(argc, argv, "", bench_options, NULL)) != -1) {
        switch (c) {
        case OPT_DRIVER: bench_driver = optarg; break;
        case OPT_PATH: bench_path = optarg; break;
        case OPT_PROP: bench_add_prop(optarg); break;
        case OPT_SUBMIT_BATCH: bench_submit_batch = bench_parse_count(optarg, 0); break;
        case OPT_RATE: bench_rate = bench_parse_count_max(optarg, 0, 100000000); break;
        case OPT_THREADS: bench_threads = bench_parse_count(optarg, 1); break;
        case OPT_IODEPTH: bench_iodepth = bench_parse_count(optarg, 1); break;
        case OPT_RW:
            bench_rw = (enum bench_rw)bench_parse_name("rw", optarg,
                                                       bench_rw_names, 4);
            break;
        case OPT_MODE:
            bench_mode = (enum bench_mode)bench_parse_name("mode", optarg,
                                                           bench_mode_names, 3);
            break;
        case OPT_BS: bench_bs = bench_parse_size(c, optarg); break;
        case OPT_SIZE: bench_size = bench_parse_size(c, optarg); break;
        case OPT_SEED:
            bench_seed = bench_parse_size(c, optarg);
            if (!bench_seed)
                bench_seed = 1;
            break;
        case OPT_RUNTIME: bench_runtime = bench_parse_seconds(c, optarg); break;
        case OPT_RAMP: bench_ramp = bench_parse_seconds(c, optarg); break;
        case OPT_POLL: bench_poll_queues = true; break;
        case OPT_JSON: bench_json = true; break;
        case OPT_MEM_REGIONS: bench_mem_regions = true; break;
        case OPT_HELP: usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc) {
        fprintf(stderr, "blkio-bench: unexpected argument: %s\n", argv[optind]);
        exit(2);
    }
    if (bench_poll_queues && bench_mode == BENCH_MODE_EVENT) {
        fprintf(stderr, "blkio-bench: poll queues have no completion fd; "
                "use --mode blocking or poll\n");
        exit(2);
    }
}

/*
 * Set one KEY=VALUE property.  Some properties may only be set before
 * connect (path, direct, ...), others only after (num-entries on some
 * drivers, queue-size, ...): try before connect, and keep what failed for
 * a second attempt after connect, where a failure is final.
 */
static int bench_set_prop(struct blkio *b, const char *kv, bool final)
{
    char key[256];
    const char *eq = strchr(kv, '=');
    size_t klen = (size_t)(eq - kv);

    if (klen >= sizeof(key))
        klen = sizeof(key) - 1;
    memcpy(key, kv, klen);
    key[klen] = '\0';

    int ret = blkio_set_str(b, key, eq + 1);
    if (ret < 0 && final)
        fprintf(stderr, "blkio-bench: error setting property: %s: %s\n",
                kv, blkio_get_error_msg());
    return ret;
}

static int bench_setup_queue(struct bench_thread *t, struct blkio *b,
                             unsigned char *bufs, size_t stride)
{
    t->q = bench_poll_queues ? blkio_get_poll_queue(b, t->index)
                             : blkio_get_queue(b, t->index);
    if (!t->q) {
        fprintf(stderr, "blkio-bench: no queue %d: %s\n", t->index,
                blkio_get_error_msg());
        return -1;
    }
    t->bufs = bufs + (size_t)t->index * stride;
    t->submit_ns = calloc((size_t)bench_iodepth, sizeof(*t->submit_ns));
    t->comps = calloc((size_t)bench_iodepth, sizeof(*t->comps));
    if (!t->submit_ns || !t->comps) {
        perror("calloc");
        return -1;
    }
    t->rng = bench_seed ^ ((uint64_t)(t->index + 1) * 0xbf58476d1ce4e5b9ull);
    if (!t->rng)
        t->rng = 1;

    uint64_t share = bench_nblocks / (uint64_t)bench_threads;
    if (share == 0)
        share = bench_nblocks;
    t->region_start = share == bench_nblocks ? 0 : share * (uint64_t)t->index;
    t->region_blocks = share;

    t->completion_fd = -1;
    t->epfd = -1;
    if (bench_mode == BENCH_MODE_EVENT) {
        t->completion_fd = blkioq_get_completion_fd(t->q);
        if (t->completion_fd < 0) {
            fprintf(stderr, "blkio-bench: queue %d has no completion fd\n",
                    t->index);
            return -1;
        }
        t->epfd = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = 0 };
        if (t->epfd < 0 ||
            epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->completion_fd, &ev) < 0) {
            perror("epoll");
            return -1;
        }
        blkioq_set_completion_fd_enabled(t->q, true);
    }
    return 0;
}

/* Quantile q (0..1) over the merged histogram, in microseconds. */
static double hist_quantile_us(const uint64_t *hist, uint64_t total, double q)
{
    if (total == 0)
        return 0;
    uint64_t want = (uint64_t)(q * (double)total);
    if (want >= total)
        want = total - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += hist[i];
        if (seen > want)
            return hist_value(i) / 1000.0;
    }
    return 0;
}

/* Create, connect, set the properties and the queues, start. */
static struct blkio *bench_open(void)
{
    struct blkio *b = NULL;
    bool *prop_done = NULL;
    int ret = blkio_create(bench_driver, &b);

    if (ret < 0) {
        fprintf(stderr, "blkio-bench: blkio_create: %s: %s\n", bench_driver,
                blkio_get_error_msg());
        return NULL;
    }
    if (bench_path && blkio_set_str(b, "path", bench_path) < 0) {
        fprintf(stderr, "blkio-bench: error setting property: path=%s: %s\n",
                bench_path, blkio_get_error_msg());
        goto fail;
    }
    prop_done = calloc((size_t)bench_nprops + 1, sizeof(*prop_done));
    if (!prop_done)
        goto fail;
    for (int i = 0; i < bench_nprops; i++)
        prop_done[i] = bench_set_prop(b, bench_props[i], false) == 0;

    if (blkio_connect(b) < 0) {
        fprintf(stderr, "blkio-bench: blkio_connect: %s\n",
                blkio_get_error_msg());
        goto fail;
    }
    for (int i = 0; i < bench_nprops; i++)
        if (!prop_done[i] && bench_set_prop(b, bench_props[i], true) < 0)
            goto fail;

    if (bench_poll_queues) {
        ret = blkio_set_int(b, "num-queues", 0);
        if (ret == 0)
            ret = blkio_set_int(b, "num-poll-queues", bench_threads);
    } else {
        ret = blkio_set_int(b, "num-queues", bench_threads);
    }
    if (ret < 0) {
        fprintf(stderr, "blkio-bench: setting %d %squeues: %s\n",
                bench_threads, bench_poll_queues ? "poll " : "",
                blkio_get_error_msg());
        goto fail;
    }
    if (blkio_start(b) < 0) {
        fprintf(stderr, "blkio-bench: blkio_start: %s\n", blkio_get_error_msg());
        goto fail;
    }
    free(prop_done);
    return b;

fail:
    free(prop_done);
    blkio_destroy(&b);
    return NULL;
}

/* The request range (bench_nblocks) and the buffer layout the device asks
 * for: page aligned (which satisfies any buf-alignment we expect), one slot
 * per request in flight, threads on separate pages. */
struct bench_layout {
    size_t stride;              /* bytes per thread */
    size_t total;               /* bytes for all threads */
    size_t align;
    bool needs_mem_regions;
};

static int bench_geometry(struct blkio *b, struct bench_layout *l)
{
    uint64_t capacity, mem_align = 1;
    int req_align = 1, buf_align = 1, opt_buf_align = 1;

    if (blkio_get_uint64(b, "capacity", &capacity) < 0) {
        fprintf(stderr, "blkio-bench: capacity: %s\n", blkio_get_error_msg());
        return -1;
    }
    blkio_get_int(b, "request-alignment", &req_align);
    blkio_get_int(b, "buf-alignment", &buf_align);
    blkio_get_int(b, "optimal-buf-alignment", &opt_buf_align);
    blkio_get_bool(b, "needs-mem-regions", &l->needs_mem_regions);
    blkio_get_uint64(b, "mem-region-alignment", &mem_align);

    if (req_align > 0 && bench_bs % (uint64_t)req_align) {
        fprintf(stderr, "blkio-bench: --bs %" PRIu64 " is not a multiple of "
                "request-alignment %d\n", bench_bs, req_align);
        return -1;
    }
    uint64_t range = bench_size && bench_size < capacity ? bench_size : capacity;
    bench_nblocks = range / bench_bs;
    if (bench_nblocks == 0) {
        fprintf(stderr, "blkio-bench: range %" PRIu64 " is smaller than "
                "--bs %" PRIu64 "\n", range, bench_bs);
        return -1;
    }

    l->align = 4096;
    if ((size_t)buf_align > l->align)
        l->align = (size_t)buf_align;
    if ((size_t)opt_buf_align > l->align)
        l->align = (size_t)opt_buf_align;
    l->stride = ((size_t)bench_iodepth * bench_bs + l->align - 1) &
                ~(l->align - 1);
    l->total = l->stride * (size_t)bench_threads;
    if (bench_mem_regions)
        l->needs_mem_regions = true;
    if (l->needs_mem_regions && mem_align > 1)
        l->total = (l->total + mem_align - 1) / mem_align * mem_align;
    return 0;
}

/* The request buffers: a mapped memory region where the driver needs one,
 * or with --mem-regions (as libblkio's own example blkio-bench and QEMU
 * always do, which lets a driver prepare the memory once). */
static unsigned char *bench_alloc_bufs(struct blkio *b,
                                       const struct bench_layout *l,
                                       struct blkio_mem_region *region,
                                       bool *have_region)
{
    unsigned char *bufs;

    if (l->needs_mem_regions) {
        if (blkio_alloc_mem_region(b, region, l->total) < 0) {
            fprintf(stderr, "blkio-bench: blkio_alloc_mem_region: %zu: %s\n",
                    l->total, blkio_get_error_msg());
            return NULL;
        }
        *have_region = true;
        if (blkio_map_mem_region(b, region) < 0) {
            fprintf(stderr, "blkio-bench: blkio_map_mem_region: %s\n",
                    blkio_get_error_msg());
            return NULL;
        }
        bufs = region->addr;
        bench_layout_mapped = true;
    } else {
        void *p;
        int ret = posix_memalign(&p, l->align, l->total);
        if (ret) {
            fprintf(stderr, "blkio-bench: posix_memalign: %s\n", strerror(ret));
            return NULL;
        }
        bufs = p;
    }
    /* A non-zero pattern: writes must not look like zero pages. */
    for (size_t i = 0; i < l->total; i++)
        bufs[i] = (unsigned char)(i * 131 + 7);
    return bufs;
}

/* Start the threads together, measure, join. */
static void bench_run_threads(void)
{
    pthread_barrier_init(&bench_barrier, NULL, (unsigned)bench_threads + 1);
    for (int i = 0; i < bench_threads; i++) {
        int ret = pthread_create(&bench_tds[i].tid, NULL, bench_thread_main,
                                 &bench_tds[i]);
        if (ret) {
            fprintf(stderr, "blkio-bench: pthread_create: %s\n", strerror(ret));
            exit(1);    /* the barrier would wait forever */
        }
    }
    /* Times are relative to when all threads exist; the barrier publishes
     * them to the threads. */
    uint64_t now = now_ns();
    bench_start_ns = now;
    bench_measure_ns = now + (uint64_t)(bench_ramp * 1e9);
    bench_end_ns = bench_measure_ns + (uint64_t)(bench_runtime * 1e9);
    pthread_barrier_wait(&bench_barrier);
    for (int i = 0; i < bench_threads; i++)
        pthread_join(bench_tds[i].tid, NULL);
}

/* The threads' results merged. */
struct bench_totals {
    uint64_t ios, lat_sum, batches, empty;
    double iops, user, sys, elapsed_max;
    int err;
};

static uint64_t bench_hist[HIST_BUCKETS];

static void bench_merge(struct bench_totals *r)
{
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < bench_threads; i++) {
        struct bench_thread *t = &bench_tds[i];
        for (unsigned j = 0; j < HIST_BUCKETS; j++)
            bench_hist[j] += t->hist[j];
        r->ios += t->ios;
        r->lat_sum += t->lat_sum_ns;
        r->batches += t->batches;
        r->empty += t->empty_polls;
        if (t->elapsed_ns) {
            r->iops += (double)t->ios / ((double)t->elapsed_ns / 1e9);
            if ((double)t->elapsed_ns / 1e9 > r->elapsed_max)
                r->elapsed_max = (double)t->elapsed_ns / 1e9;
        }
        r->user += t->user_s;
        r->sys += t->sys_s;
        if (t->err)
            r->err = t->err;
    }
}

static void bench_report(const struct bench_totals *r)
{
    double mib_s = r->iops * (double)bench_bs / (1024.0 * 1024.0);
    double lat_mean = r->ios ? (double)r->lat_sum / (double)r->ios / 1000.0 : 0;
    double p50 = hist_quantile_us(bench_hist, r->ios, 0.50);
    double p99 = hist_quantile_us(bench_hist, r->ios, 0.99);
    double cpu_per_req = r->ios ? (r->user + r->sys) * 1e6 / (double)r->ios : 0;
    double cpu_util = r->elapsed_max > 0 ?
                      (r->user + r->sys) / r->elapsed_max * 100.0 : 0;
    double per_batch = r->batches ? (double)r->ios / (double)r->batches : 0.0;

    if (bench_json) {
        printf("{\"driver\": \"%s\", \"path\": \"%s\", \"rw\": \"%s\", "
               "\"bs\": %" PRIu64 ", \"iodepth\": %d, \"threads\": %d, "
               "\"mode\": \"%s\", \"poll_queues\": %s, \"submit_batch\": %d, "
               "\"runtime_s\": %.3f, \"ios\": %" PRIu64 ", "
               "\"kiops\": %.3f, \"mib_s\": %.2f, "
               "\"lat_mean_us\": %.2f, \"lat_p50_us\": %.2f, "
               "\"lat_p99_us\": %.2f, "
               "\"cpu_user_s\": %.3f, \"cpu_sys_s\": %.3f, "
               "\"cpu_us_per_req\": %.4f, \"cpu_util_pct\": %.1f, "
               "\"reqs_per_batch\": %.2f, \"empty_polls\": %" PRIu64 ", "
               "\"mem_regions\": %s, "
               "\"error\": %d}\n",
               bench_driver, bench_path ? bench_path : "",
               bench_rw_names[bench_rw], bench_bs, bench_iodepth,
               bench_threads, bench_mode_names[bench_mode],
               bench_poll_queues ? "true" : "false", bench_submit_batch,
               r->elapsed_max, r->ios, r->iops / 1000.0, mib_s, lat_mean,
               p50, p99, r->user, r->sys, cpu_per_req, cpu_util, per_batch,
               r->empty, bench_layout_mapped ? "true" : "false", r->err);
        return;
    }
    printf("blkio-bench: driver=%s rw=%s bs=%" PRIu64 " iodepth=%d "
           "threads=%d mode=%s%s runtime=%.2fs\n",
           bench_driver, bench_rw_names[bench_rw], bench_bs,
           bench_iodepth, bench_threads, bench_mode_names[bench_mode],
           bench_poll_queues ? " poll-queues" : "", r->elapsed_max);
    printf("  %.1f kIOPS  %.1f MiB/s  lat mean %.2f us  p50 %.2f us  "
           "p99 %.2f us\n", r->iops / 1000.0, mib_s, lat_mean, p50, p99);
    printf("  cpu %.3f us/req (user %.2fs sys %.2fs, %.0f%%)  "
           "%.1f reqs/batch\n", cpu_per_req, r->user, r->sys, cpu_util,
           per_batch);
}

int main(int argc, char **argv)
{
    struct blkio *b;
    struct blkio_mem_region region = { 0 };
    struct bench_layout layout = { 0 };
    struct bench_totals totals;
    bool have_region = false;
    unsigned char *bufs = NULL;
    int exit_code = 1;

    parse_args(argc, argv);
    b = bench_open();
    if (!b)
        return 1;
    if (bench_geometry(b, &layout) < 0)
        goto out;
    bufs = bench_alloc_bufs(b, &layout, &region, &have_region);
    if (!bufs)
        goto out;

    bench_tds = aligned_alloc(64, sizeof(*bench_tds) * (size_t)bench_threads);
    if (!bench_tds) {
        perror("aligned_alloc");
        goto out;
    }
    memset(bench_tds, 0, sizeof(*bench_tds) * (size_t)bench_threads);
    for (int i = 0; i < bench_threads; i++) {
        bench_tds[i].index = i;
        bench_tds[i].epfd = -1;
    }
    for (int i = 0; i < bench_threads; i++) {
        if (bench_setup_queue(&bench_tds[i], b, bufs, layout.stride) < 0)
            goto out_threads;
    }
    bench_run_threads();
    bench_merge(&totals);
    bench_report(&totals);
    exit_code = totals.err ? 1 : 0;

out_threads:
    for (int i = 0; i < bench_threads && bench_tds; i++) {
        if (bench_tds[i].epfd >= 0)
            close(bench_tds[i].epfd);
        free(bench_tds[i].submit_ns);
        free(bench_tds[i].comps);
    }
    free(bench_tds);
out:
    if (have_region) {
        /* Unmapping an unmapped region is a no-op, so this is always safe. */
        blkio_unmap_mem_region(b, &region);
        blkio_free_mem_region(b, &region);
    } else {
        free(bufs);
    }
    blkio_destroy(&b);
    free(bench_props);
    return exit_code;
}
