/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: random-pattern data integrity across all queues with many
 * requests in flight, in one of three completion modes (argv[1]):
 * "blocking" (do_io with min_completions), "event" (completion fds +
 * poll()), "poll" (poll queues, do_io with min 0), "threads" (one thread
 * per queue, blocking, all at once).  Writes of random
 * sizes cover a 24 MiB area once, then reads of other random sizes (some
 * vectored) bring it back for comparison.
 */
#include <poll.h>
#include <pthread.h>

#include "vu-util.h"

#define AREA   (24u << 20)
#define NQ     4
#define DEPTH  48

enum mode { BLOCKING, EVENT, POLL, THREADS };

struct job {
    uint64_t off;
    uint32_t len;
};

static struct job *make_jobs(uint64_t *seed, size_t *njobs)
{
    struct job *jobs = calloc(AREA / 512, sizeof(*jobs));
    uint64_t off = 0;
    size_t n = 0;

    CHECK(jobs);
    while (off < AREA) {
        uint32_t len = (uint32_t)(1 + t_rand(seed) % 256) * 512;  /* <=128K */
        if (off + len > AREA)
            len = (uint32_t)(AREA - off);
        jobs[n].off = off;
        jobs[n].len = len;
        n++;
        off += len;
    }
    /* Shuffle so that neighbours go to different queues and times. */
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = t_rand(seed) % (i + 1);
        struct job t = jobs[i];
        jobs[i] = jobs[j];
        jobs[j] = t;
    }
    *njobs = n;
    return jobs;
}

static void run_queues(struct blkio *b, enum mode mode, bool write,
                       uint8_t *buf, const struct job *jobs, size_t njobs,
                       int first, int nq)
{
    struct blkioq *qs[NQ];
    int inflight[NQ] = { 0 };
    int fds[NQ];
    size_t next = 0, done = 0;
    struct iovec iovs[NQ][DEPTH][3];
    int iov_slot[NQ] = { 0 };
    time_t t0 = time(NULL);

    for (int i = 0; i < nq; i++) {
        qs[i] = mode == POLL ? blkio_get_poll_queue(b, first + i)
                             : blkio_get_queue(b, first + i);
        CHECK(qs[i]);
        fds[i] = blkioq_get_completion_fd(qs[i]);
        if (mode == EVENT) {
            CHECK(fds[i] >= 0);
            blkioq_set_completion_fd_enabled(qs[i], true);
        } else if (mode == POLL) {
            CHECK(fds[i] == -1);
        }
    }

    while (done < njobs) {
        struct blkio_completion c[DEPTH];

        if (time(NULL) - t0 > 30)
            T_FAIL_MSG("no progress: %zu of %zu done", done, njobs);
        /* Fill every queue up to DEPTH. */
        for (int i = 0; i < nq && next < njobs; i++) {
            while (inflight[i] < DEPTH && next < njobs) {
                const struct job *j = &jobs[next++];
                uint8_t *p = buf + j->off;

                if (!write && j->len >= 3 * 512 && (next & 1)) {
                    /* Vectored read with odd-sized pieces. */
                    struct iovec *v = iovs[i][iov_slot[i]++ % DEPTH];
                    size_t a = 100, bb = j->len / 2 - 100;

                    v[0] = (struct iovec){ p, a };
                    v[1] = (struct iovec){ p + a, bb };
                    v[2] = (struct iovec){ p + a + bb, j->len - a - bb };
                    blkioq_readv(qs[i], j->off, v, 3, (void *)j, 0);
                } else if (write) {
                    blkioq_write(qs[i], j->off, p, j->len, (void *)j, 0);
                } else {
                    blkioq_read(qs[i], j->off, p, j->len, (void *)j, 0);
                }
                inflight[i]++;
            }
        }

        if (mode == EVENT) {
            struct pollfd pfd[NQ];
            int r;

            /* Submit, then sleep until a completion fd fires. */
            for (int i = 0; i < nq; i++) {
                CHECK(blkioq_do_io(qs[i], NULL, 0, 0, NULL) >= 0);
                pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
            }
            r = poll(pfd, (nfds_t)nq, 10000);
            if (r <= 0)
                T_FAIL_MSG("poll on completion fds returned %d", r);
            for (int i = 0; i < nq; i++) {
                uint64_t v;
                if (pfd[i].revents & POLLIN)
                    CHECK(read(fds[i], &v, 8) == 8);
            }
        }

        for (int i = 0; i < nq; i++) {
            int min = (mode == BLOCKING || mode == THREADS) && inflight[i] ? 1 : 0;
            struct timespec t = { .tv_sec = 10 };
            int r = blkioq_do_io(qs[i], c, min, DEPTH, &t);

            if (r < 0)
                T_FAIL_MSG("queue %d: blkioq_do_io: %s", i, strerror(-r));
            for (int k = 0; k < r; k++) {
                const struct job *j = c[k].user_data;
                if (c[k].ret != 0)
                    T_FAIL_MSG("%s at %llu+%u failed: %s (%s)",
                               write ? "write" : "read",
                               (unsigned long long)j->off, j->len,
                               strerror(-c[k].ret), c[k].error_msg);
            }
            inflight[i] -= r;
            done += (size_t)r;
        }
    }
}

struct thread_arg {
    struct blkio *b;
    bool write;
    uint8_t *buf;
    const struct job *jobs;
    size_t njobs;
    int index;
};

static void *thread_main(void *opaque)
{
    struct thread_arg *a = opaque;

    run_queues(a->b, THREADS, a->write, a->buf, a->jobs, a->njobs, a->index,
               1);
    return NULL;
}

static void run(struct blkio *b, enum mode mode, bool write, uint8_t *buf,
                const struct job *jobs, size_t njobs)
{
    pthread_t th[NQ];
    struct thread_arg args[NQ];
    size_t per = njobs / NQ;

    if (mode != THREADS) {
        run_queues(b, mode, write, buf, jobs, njobs, 0, NQ);
        return;
    }
    /* Each thread owns one queue and a slice of the jobs. */
    for (int i = 0; i < NQ; i++) {
        args[i] = (struct thread_arg){
            .b = b, .write = write, .buf = buf, .jobs = jobs + i * per,
            .njobs = i == NQ - 1 ? njobs - i * per : per, .index = i,
        };
        CHECK(pthread_create(&th[i], NULL, thread_main, &args[i]) == 0);
    }
    for (int i = 0; i < NQ; i++)
        pthread_join(th[i], NULL);
}

int main(int argc, char **argv)
{
    enum mode mode = BLOCKING;
    struct blkio *b;
    struct blkio_mem_region wr, rd;
    uint8_t *wbuf, *rbuf;
    uint64_t seed = 0x1234abcd ^ (uint64_t)time(NULL);
    struct job *wjobs, *rjobs;
    size_t nw, nr;

    if (argc > 1 && strcmp(argv[1], "event") == 0)
        mode = EVENT;
    else if (argc > 1 && strcmp(argv[1], "poll") == 0)
        mode = POLL;
    else if (argc > 1 && strcmp(argv[1], "threads") == 0)
        mode = THREADS;

    b = mode == POLL ? vu_start(0, NQ) : vu_start(NQ, 0);
    wbuf = t_region(b, AREA, &wr);
    rbuf = t_region(b, AREA, &rd);
    t_fill_random(wbuf, AREA, seed);
    memset(rbuf, 0xee, AREA);

    wjobs = make_jobs(&seed, &nw);
    rjobs = make_jobs(&seed, &nr);
    run(b, mode, true, wbuf, wjobs, nw);
    run(b, mode, false, rbuf, rjobs, nr);

    for (size_t i = 0; i < AREA; i++)
        if (wbuf[i] != rbuf[i])
            T_FAIL_MSG("data mismatch at byte %zu: wrote 0x%02x, read 0x%02x "
                       "(seed 0x%llx)", i, wbuf[i], rbuf[i],
                       (unsigned long long)seed);
    printf("%s: %zu writes, %zu reads verified\n", argv[1] ? argv[1] : "",
           nw, nr);
    free(wjobs);
    free(rjobs);
    blkio_destroy(&b);
    return 0;
}
