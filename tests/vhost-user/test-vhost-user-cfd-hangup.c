/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the backend dies while an event loop waits on completion
 * fds alone, with no blkioq_do_io() asleep to see the connection go
 * (DIFFERENCES D16).  Every regular queue's completion fd must become
 * readable within seconds, and blkioq_do_io() with min_completions 0
 * must then return the request in flight, failed.  The daemon is stopped
 * (SIGSTOP) before the requests go out, so that they are still in flight
 * when it is killed.  A third queue is removed first (its fd must not be
 * signalled once closed, and the others are still watched).
 *
 * With "fork": the device is started, then the process forks (as nbdkit
 * does after opening it) and the child runs the event loop.  The parent
 * stops itself meanwhile, so that only the child's own watch can wake it.
 */
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vu-util.h"

#define NQ 2

static pid_t parent;

static void drain(int fd)
{
    uint64_t cnt;

    while (read(fd, &cnt, sizeof(cnt)) > 0)
        ;
}

/* Wait for the stopped daemon's queues to fail: fd readable, then the
 * request back from blkioq_do_io(min 0) with an error. */
static void expect_failed(struct blkioq *q, int fd, int i)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    struct blkio_completion c;
    uint64_t cnt;
    int n = 0;

    if (poll(&p, 1, 5000) != 1)
        T_FAIL_MSG("queue %d: the completion fd is not readable 5 s after "
                   "the backend died", i);
    /* Spurious events are allowed: read and look until the request comes
     * back (it must, promptly). */
    for (int tries = 0; n == 0 && tries < 100; tries++) {
        if (read(fd, &cnt, sizeof(cnt)) < 0)
            CHECK(errno == EAGAIN);
        n = blkioq_do_io(q, &c, 0, 1, NULL);
        if (n == 0)
            usleep(10 * 1000);
    }
    CHECK_RET(n, 1);
    if (c.ret != -ENOTCONN && c.ret != -EIO)
        T_FAIL_MSG("queue %d: the request completed with %d (%s), expected "
                   "ENOTCONN or EIO", i, c.ret, strerror(-c.ret));
}

static void event_loop(struct blkio *b, uint8_t *buf, pid_t daemon)
{
    struct blkioq *q[NQ];
    int fd[NQ];

    for (int i = 0; i < NQ; i++) {
        q[i] = blkio_get_queue(b, i);
        CHECK(q[i]);
        fd[i] = blkioq_get_completion_fd(q[i]);
        CHECK(fd[i] >= 0);
        blkioq_set_completion_fd_enabled(q[i], true);
        drain(fd[i]);
    }
    CHECK(kill(daemon, SIGSTOP) == 0);
    for (int i = 0; i < NQ; i++) {
        blkioq_read(q[i], (uint64_t)i * 4096, buf + i * 4096, 4096, NULL, 0);
        CHECK_RET(blkioq_do_io(q[i], NULL, 0, 0, NULL), 0);
    }
    CHECK(kill(daemon, SIGKILL) == 0);
    for (int i = 0; i < NQ; i++)
        expect_failed(q[i], fd[i], i);
}

/* The child: go on once the parent is stopped (state T), and let it go
 * on whatever happens. */
static void resume_parent(void)
{
    kill(parent, SIGCONT);
}

static void wait_parent_stopped(void)
{
    char path[64], state = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)parent);
    for (int i = 0; i < 500 && state != 'T'; i++) {
        FILE *f = fopen(path, "r");

        if (!f || fscanf(f, "%*d (%*[^)]) %c", &state) != 1)
            state = 0;
        if (f)
            fclose(f);
        if (state != 'T')
            usleep(10 * 1000);
    }
    CHECK(state == 'T');
}

int main(int argc, char **argv)
{
    pid_t daemon = (pid_t)vu_env_u64("VU_QSD_PID");
    bool forked = argc > 1 && strcmp(argv[1], "fork") == 0;
    struct blkio *b = vu_start(forked ? NQ : NQ + 1, 0);
    struct blkio_mem_region r;
    uint8_t *buf = t_region(b, NQ * 4096, &r);
    pid_t child;
    int status;

    CHECK(daemon > 0);
    if (!forked) {
        /* A queue removed first: the others are still watched. */
        CHECK_RET(blkio_remove_queue(b, NQ), 0);
        event_loop(b, buf, daemon);
        blkio_unmap_mem_region(b, &r);
        blkio_destroy(&b);
        return 0;
    }
    parent = getpid();
    child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        atexit(resume_parent);
        wait_parent_stopped();
        event_loop(b, buf, daemon);
        blkio_unmap_mem_region(b, &r);
        blkio_destroy(&b);
        return 0;
    }
    CHECK(kill(getpid(), SIGSTOP) == 0);
    CHECK(waitpid(child, &status, 0) == child);
    blkio_unmap_mem_region(b, &r);
    blkio_destroy(&b);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
