/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * util.h - helpers shared by the io_uring driver tests (test-io-uring-*.c).
 *
 * ok(expr)            expr must return >= 0; otherwise print expr, its return
 *                     value and blkio_get_error_msg(), then fail.
 * err(expr, expected) expr must return exactly the negative errno `expected`
 *                     and leave a non-empty error message.
 * check(cond)         a plain condition.
 * skip_if(cond, why)  print the reason and exit 77, which meson counts as a
 *                     skip.
 *
 * They fail through tests/common/test-util.h (exit 1), whose CHECK*,
 * T_FAIL, data patterns and t_aligned_alloc() the tests use as well.
 *
 * Temporary files go to $TMPDIR (default /var/tmp, a real disk file system
 * here, unlike a tmpfs /tmp) and are unlinked at exit.
 */
#ifndef TESTS_LIB_UTIL_H
#define TESTS_LIB_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/test-util.h"

#define ok(expr)                                                             \
    ({                                                                       \
        long ok_ret_ = (long)(expr);                                         \
        if (ok_ret_ < 0)                                                     \
            T_FAIL_MSG("%s returned %ld (%s)", #expr, ok_ret_,               \
                       strerror((int)-ok_ret_));                             \
        ok_ret_;                                                             \
    })

/* An error return must come with a message. */
#define err(expr, expected)                                                  \
    do {                                                                     \
        CHECK_RET(expr, expected);                                           \
        if (blkio_get_error_msg()[0] == '\0')                                \
            T_FAIL("%s failed without an error message", #expr);             \
    } while (0)

#define check(cond) CHECK(cond)

#define skip_if(cond, reason)                                                \
    do {                                                                     \
        if (cond)                                                            \
            t_skip("%s", (reason));                                          \
    } while (0)

/* ---- temporary files ---- */

#define UT_MAX_FILES 8
static char ut_files[UT_MAX_FILES][256];
static int ut_nfiles;

static void ut_cleanup(void)
{
    for (int i = 0; i < ut_nfiles; i++)
        unlink(ut_files[i]);
}

/* Create a temporary file of `size` bytes (sparse) in dir (NULL: $TMPDIR or
 * /var/tmp); returns its path, removed at exit. */
static inline const char *ut_temp_file_in(const char *dir, uint64_t size)
{
    char *p;
    int fd;

    if (!dir)
        dir = t_tmpdir();
    check(ut_nfiles < UT_MAX_FILES);
    p = ut_files[ut_nfiles];
    snprintf(p, sizeof(ut_files[0]), "%s/blkio-test-XXXXXX", dir);
    fd = mkstemp(p);
    if (fd < 0) {
        fprintf(stderr, "mkstemp %s: %s\n", p, strerror(errno));
        abort();
    }
    if (ut_nfiles++ == 0)
        atexit(ut_cleanup);
    check(ftruncate(fd, (off_t)size) == 0);
    close(fd);
    return p;
}

static inline const char *ut_temp_file(uint64_t size)
{
    return ut_temp_file_in(NULL, size);
}

/* pread/pwrite the whole range through the file system, to check what the
 * library did behind its back. */
static inline void ut_pread_file(const char *path, void *buf, size_t len,
                                 off_t off)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    check(fd >= 0);
    check(pread(fd, buf, len, off) == (ssize_t)len);
    close(fd);
}

static inline void ut_pwrite_file(const char *path, const void *buf,
                                  size_t len, off_t off)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);

    check(fd >= 0);
    check(pwrite(fd, buf, len, off) == (ssize_t)len);
    close(fd);
}

/* ---- which system calls the library made ---- */

/* Valgrind makes read system calls of its own on the process's behalf:
 * under it, tests check only the data, not which path it took. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

/* A counter of this process's /proc/self/io: "syscr" (read-type system
 * calls, which io_uring's reads do not count in) or "syscw".  Skips the
 * test without task I/O accounting.  Fetching it is one read() itself,
 * counted after the value is taken. */
static inline uint64_t ut_proc_io(const char *key)
{
    char line[128];
    size_t klen = strlen(key);
    uint64_t n = UINT64_MAX;
    FILE *f = fopen("/proc/self/io", "r");

    if (!f)
        t_skip("/proc/self/io: %s (no task I/O accounting)",
               strerror(errno));
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            n = strtoull(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    check(n != UINT64_MAX);
    return n;
}

/* Exactly n system calls of kind key were made since before was sampled
 * (not counting the sampling). */
#define ut_check_calls(key, before, n)                                       \
    do {                                                                     \
        if (!RUNNING_ON_VALGRIND)                                            \
            check(ut_proc_io(key) - (before) -                               \
                  (strcmp((key), "syscr") == 0) == (n));                     \
    } while (0)

/* ---- instances ---- */

/* Create, connect and start an io_uring instance on path. */
static inline struct blkio *ut_start(const char *path, bool direct,
                                     bool read_only)
{
    struct blkio *b;

    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", path));
    ok(blkio_set_bool(b, "direct", direct));
    ok(blkio_set_bool(b, "read-only", read_only));
    ok(blkio_connect(b));
    ok(blkio_start(b));
    return b;
}

/* An O_DIRECT io_uring instance on path, connected but not started; skips
 * where the file system refuses O_DIRECT. */
static inline struct blkio *ut_connect_direct(const char *path)
{
    struct blkio *b;

    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", path));
    ok(blkio_set_bool(b, "direct", true));
    if (blkio_connect(b) < 0)
        t_skip("O_DIRECT not supported here: %s", blkio_get_error_msg());
    return b;
}

/* Wait for exactly one completion, however long it takes, and return its
 * ret. */
static inline int ut_wait1(struct blkioq *q, void *expected_user_data)
{
    struct blkio_completion c = t_wait_one(q, 0);

    check(c.user_data == expected_user_data);
    return c.ret;
}

#endif /* TESTS_LIB_UTIL_H */
