/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * core-util.h - helpers shared by the core unit tests (test-core-*.c).
 *
 * The tests use only the public API.  Every check prints where it failed,
 * what was expected and the calling thread's libblkio error message, then
 * exits 1; skips print a reason and exit 77.
 */
#ifndef TESTS_LIB_CORE_UTIL_H
#define TESTS_LIB_CORE_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/test-util.h"

/* Valgrind does not apply the signal mask io_uring_enter() waits with,
 * so a signal cannot interrupt such a wait under it. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define CU_HAVE_VALGRIND_H 1
#endif
#endif
static inline bool cu_under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");

#ifdef CU_HAVE_VALGRIND_H
    if (RUNNING_ON_VALGRIND)
        return true;
#endif
    return p && strstr(p, "vgpreload");
}

/* ---- temporary files ---- */

static char cu_tmpdir[256];

static void cu_cleanup_tmpdir(void)
{
    char cmd[300];

    if (cu_tmpdir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cu_tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "warning: could not remove %s\n", cu_tmpdir);
        cu_tmpdir[0] = '\0';
    }
}

/* A per-test temporary directory, removed at exit.  Not under /dev/shm:
 * some tests need O_DIRECT, which tmpfs refuses. */
static inline const char *cu_dir(void)
{
    if (!cu_tmpdir[0]) {
        snprintf(cu_tmpdir, sizeof(cu_tmpdir), "%s/blkio-core-XXXXXX",
                 t_tmpdir());
        if (!mkdtemp(cu_tmpdir)) {
            snprintf(cu_tmpdir, sizeof(cu_tmpdir), "/tmp/blkio-core-XXXXXX");
            if (!mkdtemp(cu_tmpdir))
                T_FAIL("mkdtemp: %s", strerror(errno));
        }
        atexit(cu_cleanup_tmpdir);
    }
    return cu_tmpdir;
}

/* Create <tmpdir>/<name> of `size` bytes filled with `fill`; returns a
 * static path (one per call site is enough for these tests). */
static inline char *cu_temp_file(const char *name, size_t size, int fill)
{
    static char paths[8][300];
    static int next;
    char *path = paths[next++ % 8];
    char buf[4096];
    int fd;

    snprintf(path, 300, "%s/%s", cu_dir(), name);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        T_FAIL("open %s: %s", path, strerror(errno));
    memset(buf, fill, sizeof(buf));
    for (size_t off = 0; off < size; off += sizeof(buf)) {
        size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);
        if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
            T_FAIL("pwrite %s: %s", path, strerror(errno));
    }
    close(fd);
    return path;
}

/* Open file descriptors of this process, to catch leaks across
 * create/destroy (valgrind adds its own, but the same ones before/after). */
#include <dirent.h>
static inline int cu_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;   /* the directory's own fd */
}

/* ---- instances ---- */

/* blkio_create() that skips when the driver is not available here
 * (-ENOSYS: io_uring disabled in the kernel, or driver not in this build). */
static inline struct blkio *cu_create(const char *driver)
{
    struct blkio *b = NULL;
    int ret = blkio_create(driver, &b);

    if (ret == -ENOSYS)
        t_skip("driver %s not available: %s", driver, blkio_get_error_msg());
    if (ret < 0)
        T_FAIL("blkio_create(\"%s\") returned %d (%s): %s", driver, ret,
               strerror(-ret), blkio_get_error_msg());
    CHECK(b != NULL);
    return b;
}

enum cu_state { CU_CREATED, CU_CONNECTED, CU_STARTED };

/* An io_uring instance on `path`, brought up to `state`. */
static inline struct blkio *cu_io_uring(const char *path, enum cu_state state)
{
    struct blkio *b = cu_create("io_uring");

    CHECK_RET(blkio_set_str(b, "path", path), 0);
    if (state >= CU_CONNECTED)
        CHECK_RET(blkio_connect(b), 0);
    if (state >= CU_STARTED)
        CHECK_RET(blkio_start(b), 0);
    return b;
}

/* Wait for exactly one completion (up to 10 s, so a hang fails). */
static inline struct blkio_completion cu_wait_one(struct blkioq *q)
{
    return t_wait_one(q, 10);
}

#endif /* TESTS_LIB_CORE_UTIL_H */
