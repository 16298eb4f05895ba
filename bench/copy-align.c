/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * copy-align - what the alignment of nbdkit's request buffer costs a
 * vhost-user backend that reads from the page cache into it.
 *
 * Three processes play a 1 MiB read served over NBD, one request at a
 * time, as in nbdkit 1.32's default model:
 *   device  pread()s 1 MiB from a cached FILE into shared memory (as
 *           qemu-storage-daemon reads into the memory regions it maps);
 *   server  writes the reply to a Unix socket (as nbdkit sends it), either
 *           straight from the device's buffer (lent) or after a memcpy()
 *           from a page-aligned chunk into its own buffer (bounce);
 *   client  reads the reply (as fio does).
 * Modes: lent+0, lent+16 (where glibc puts a large malloc()'s buffer:
 * 16 bytes past a page), lent+64, bounce+16.  The kernel copies the page
 * cache into the buffer; where source and destination sit at different
 * offsets within a cache line, that copy costs more on CPUs without fast
 * string moves (no "erms" or "fsrm" in /proc/cpuinfo).
 *
 * Rounds run every mode once each, in turn; printed are the medians of the
 * device's and the server's thread CPU (µs per request), of requests per
 * second, and of the per-round ratio of the device's CPU to lent+0's in
 * the same round, as one JSON object per mode.
 *
 *   copy-align FILE [ROUNDS] [SECONDS] [MODE]     (defaults 5, 1, all)
 *
 * With MODE, only that mode runs (bench/compare.py interleaves the modes
 * itself, one run each).
 *
 * FILE must be at least 64 MiB and should be in the page cache.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQ     (1u << 20)
#define NMODES  4
#define MAXROUNDS 64

struct mode {
    const char *name;
    size_t off;         /* the buffer's offset past a page boundary */
    int bounce;         /* device reads into a chunk, server copies */
};

static const struct mode modes[NMODES] = {
    { "lent+0", 0, 0 }, { "lent+16", 16, 0 }, { "lent+64", 64, 0 },
    { "bounce+16", 16, 1 },
};

static double thread_cpu(void)
{
    struct timespec t;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* Read or write exactly len bytes; 0 at end of file. */
static int xfer(int fd, char *p, size_t len, int writing)
{
    while (len) {
        ssize_t r = writing ? write(fd, p, len) : read(fd, p, len);

        if (r <= 0)
            return 0;
        p += r;
        len -= (size_t)r;
    }
    return 1;
}

static void client(int sock)
{
    char *b = malloc(REQ);

    while (b && xfer(sock, b, REQ, 0))
        ;
    _exit(0);
}

/* One request per byte on ctl; a 0 byte ends it: reply with the CPU. */
static void server(int ctl, int sock, char *lent, const char *chunk, int bounce)
{
    char *own = mmap(NULL, 2 * REQ, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    double cpu = 0;
    char c;

    if (own == MAP_FAILED)
        die("mmap");
    own += lent - (char *)((uintptr_t)lent & ~(uintptr_t)4095);
    while (read(ctl, &c, 1) == 1 && c) {
        double t = thread_cpu();
        const char *src = lent;

        if (bounce) {
            memcpy(own, chunk, REQ);
            src = own;
        }
        if (!xfer(sock, (char *)src, REQ, 1))
            die("write");
        cpu += thread_cpu() - t;
        if (write(ctl, &c, 1) != 1)
            die("write");
    }
    if (write(ctl, &cpu, sizeof cpu) != sizeof cpu)
        die("write");
    _exit(0);
}

/* One mode for `seconds`: device CPU, server CPU (µs/req), req/s. */
static void run_mode(int fd, off_t fsize, char *shm, const struct mode *m,
                     double seconds, double out[3])
{
    char *lent = shm + m->off, *chunk = shm + 2 * REQ;
    char *dst = m->bounce ? chunk : lent;
    int ctl[2], data[2];
    double dev = 0, srv = 0, t0;
    long n = 0;
    off_t pos = 0;
    pid_t pc, ps;
    char c = 1;

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, ctl) ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, data))
        die("socketpair");
    if ((pc = fork()) == 0) {
        close(data[0]);
        client(data[1]);
    }
    if ((ps = fork()) == 0) {
        close(data[1]);
        server(ctl[1], data[0], lent, chunk, m->bounce);
    }
    close(data[0]);
    close(data[1]);
    close(ctl[1]);
    t0 = now();
    while (now() - t0 < seconds) {
        double t = thread_cpu();

        if (pread(fd, dst, REQ, pos) != (ssize_t)REQ)
            die("pread");
        dev += thread_cpu() - t;
        n++;
        pos = pos + 2 * REQ <= fsize ? pos + REQ : 0;
        if (write(ctl[0], &c, 1) != 1 || read(ctl[0], &c, 1) != 1)
            die("server");
    }
    out[2] = n / (now() - t0);
    c = 0;
    if (write(ctl[0], &c, 1) != 1 || read(ctl[0], &srv, sizeof srv) != sizeof srv)
        die("server");
    waitpid(ps, NULL, 0);
    kill(pc, SIGKILL);
    waitpid(pc, NULL, 0);
    close(ctl[0]);
    out[0] = dev / n * 1e6;
    out[1] = srv / n * 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    int rounds = argc > 2 ? atoi(argv[2]) : 5;
    double seconds = argc > 3 ? atof(argv[3]) : 1;
    const char *only = argc > 4 ? argv[4] : NULL;
    static double res[NMODES][3][MAXROUNDS];
    bool run[NMODES];
    int nrun = 0;
    struct stat st;
    char *shm;
    int fd, mfd;

    if (argc < 2 || rounds < 1 || rounds > MAXROUNDS || seconds <= 0) {
        fprintf(stderr, "usage: copy-align FILE [ROUNDS 1-%d] [SECONDS] [MODE]\n",
                MAXROUNDS);
        return 2;
    }
    for (int i = 0; i < NMODES; i++) {
        run[i] = !only || strcmp(only, modes[i].name) == 0;
        nrun += run[i];
    }
    if (!nrun) {
        fprintf(stderr, "copy-align: unknown mode %s (lent+0, lent+16, "
                "lent+64 or bounce+16)\n", only);
        return 2;
    }
    fd = open(argv[1], O_RDONLY);
    if (fd < 0 || fstat(fd, &st))
        die(argv[1]);
    if (st.st_size < 64 * (off_t)REQ) {
        fprintf(stderr, "copy-align: %s: smaller than 64 MiB\n", argv[1]);
        return 2;
    }
    /* Shared like a memory region the device maps: buffer, then chunk. */
    mfd = memfd_create("copy-align", MFD_CLOEXEC);
    if (mfd < 0 || ftruncate(mfd, 4 * REQ))
        die("memfd");
    shm = mmap(NULL, 4 * REQ, PROT_READ | PROT_WRITE,
               MAP_SHARED | MAP_POPULATE, mfd, 0);
    if (shm == MAP_FAILED)
        die("mmap");
    for (int r = 0; r < rounds; r++)
        for (int k = 0; k < NMODES; k++) {
            int i = (k + r) % NMODES;
            double out[3];

            if (!run[i])
                continue;
            run_mode(fd, st.st_size, shm, &modes[i], seconds, out);
            for (int f = 0; f < 3; f++)
                res[i][f][r] = out[f];
        }
    for (int i = 0; i < NMODES; i++) {
        double ratio[MAXROUNDS];
        char vs[32] = "null";   /* no lent+0 run to compare with */

        if (!run[i])
            continue;
        if (run[0]) {
            for (int r = 0; r < rounds; r++)
                ratio[r] = res[i][0][r] / res[0][0][r];
            snprintf(vs, sizeof vs, "%.2f", median(ratio, rounds));
        }
        printf("{\"mode\": \"%s\", \"device_us\": %.1f, \"server_us\": %.1f, "
               "\"req_per_s\": %.0f, \"device_vs_lent0\": %s, "
               "\"rounds\": %d}\n", modes[i].name,
               median(res[i][0], rounds), median(res[i][1], rounds),
               median(res[i][2], rounds), vs, rounds);
    }
    return 0;
}
