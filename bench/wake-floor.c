/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * wake-floor - the CPU a driver must spend per request at depth 1 when it
 * sleeps for each completion, with no driver at all.
 *
 * Two threads play driver and device over two eventfds, as a virtio kick
 * and call do.  The driver writes the kick fd and sleeps in an
 * edge-triggered epoll_wait() on the call fd, as the virtio-blk driver
 * does; the device sleeps in read() on the kick fd, writes two cache lines
 * (the used ring index and a status byte stand-ins) and writes the call fd.
 * The driver reads both lines back.  Prints the driver thread's user and
 * system time per round trip: what any library pays per request at depth 1
 * before it does any work of its own.
 *
 *   wake-floor [ROUND_TRIPS [SECONDS]]   (default 200000, no time limit)
 *
 * With SECONDS the measured part also ends after that long, whichever
 * comes first (the benchmark gives it the engine's runtime; the rate of
 * round trips moves 10x between machines).  Prints the round trips done,
 * their rate and the driver thread's CPU per round trip.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* The two lines the device writes, each on a cache line of its own. */
struct floor_lines {
    _Alignas(64) volatile uint32_t used_idx;
    _Alignas(64) volatile uint8_t status;
};

static struct floor_lines lines;
static int kick_fd, call_fd;

static void *device_main(void *arg)
{
    uint64_t v;

    (void)arg;
    for (;;) {
        if (read(kick_fd, &v, sizeof(v)) != sizeof(v))
            return NULL;
        lines.status = (uint8_t)(lines.status + 1);
        lines.used_idx = lines.used_idx + 1;
        v = 1;
        if (write(call_fd, &v, sizeof(v)) != sizeof(v))
            return NULL;
    }
}

/* One request: kick, then sleep until the index moves (at most 5 s:
 * a device thread that stopped answering ends the run). */
static int round_trip(int ep, uint32_t *seen)
{
    struct epoll_event ev;
    uint64_t one = 1;
    int r;

    if (write(kick_fd, &one, sizeof(one)) != sizeof(one))
        return -1;
    while (lines.used_idx == *seen) {
        r = epoll_wait(ep, &ev, 1, 5000);
        if (r == 0)
            errno = ETIMEDOUT;
        if (r == 0 || (r < 0 && errno != EINTR))
            return -1;
    }
    *seen = lines.used_idx;
    (void)lines.status;
    return 0;
}

static double now_s(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Up to n round trips, and for at most limit seconds where limit > 0.
 * Returns the number done, or -1 on failure. */
static long run(int ep, uint32_t *seen, long n, double limit)
{
    double t0 = now_s();
    long done = 0;

    while (done < n) {
        if (round_trip(ep, seen) < 0)
            return -1;
        /* The clock only every 256 round trips: a tenth of a µs each. */
        if (++done % 256 == 0 && limit > 0 && now_s() - t0 >= limit)
            break;
    }
    return done;
}

static double usec(const struct timeval *a, const struct timeval *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e6 +
           (double)(b->tv_usec - a->tv_usec);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
    double limit = argc > 2 ? strtod(argv[2], NULL) : 0, t0, t1;
    long done;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
    struct rusage r0, r1;
    uint32_t seen = 0;
    pthread_t dev;
    int ep;

    if (n <= 0) {
        fprintf(stderr, "wake-floor: ROUND_TRIPS must be a positive "
                "number, not '%s'\n", argv[1]);
        return 2;
    }
    if (argc > 2 && !(limit > 0)) {
        fprintf(stderr, "wake-floor: SECONDS must be a positive number, "
                "not '%s'\n", argv[2]);
        return 2;
    }
    kick_fd = eventfd(0, EFD_CLOEXEC);
    call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (kick_fd < 0 || call_fd < 0 || ep < 0 ||
        epoll_ctl(ep, EPOLL_CTL_ADD, call_fd, &ev) < 0 ||
        pthread_create(&dev, NULL, device_main, NULL) != 0) {
        perror("wake-floor: setup");
        return 1;
    }
    /* Warm-up: a tenth of the count or of the time, unmeasured. */
    if (run(ep, &seen, n / 10, limit / 10) < 0)
        goto fail;
    getrusage(RUSAGE_THREAD, &r0);
    t0 = now_s();
    done = run(ep, &seen, n, limit);
    if (done < 0)
        goto fail;
    getrusage(RUSAGE_THREAD, &r1);
    t1 = now_s();
    printf("{\"round_trips\": %ld, \"per_s\": %.0f, \"user_us\": %.3f, "
           "\"sys_us\": %.3f, \"cpu_us\": %.3f}\n", done,
           done / (t1 > t0 ? t1 - t0 : 1e-9),
           usec(&r0.ru_utime, &r1.ru_utime) / done,
           usec(&r0.ru_stime, &r1.ru_stime) / done,
           (usec(&r0.ru_utime, &r1.ru_utime) +
            usec(&r0.ru_stime, &r1.ru_stime)) / done);
    return 0;
fail:
    perror("wake-floor: round trip");
    return 1;
}
