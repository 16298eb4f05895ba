/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * test-util.h - what every C test suite needs: failing with a location,
 * skipping with a reason, checked property getters, a started instance,
 * waiting for a completion and reproducible data patterns.
 *
 * The suites' own headers (tests/lib/core-util.h, tests/lib/util.h,
 * tests/nvme/nvme-util.h, ...) include this one and add only what is
 * specific to them (where the device comes from, sysfs, FUSE, ...).
 *
 * A failed check prints file:line, what failed and the calling thread's
 * libblkio error message (T_FAIL: without it), then exits 1 (so atexit
 * handlers still remove temporary files and test devices); a skip prints
 * "SKIP: reason" on stdout and exits 77, which meson counts as skipped.
 */
#ifndef TESTS_COMMON_TEST_UTIL_H
#define TESTS_COMMON_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blkio.h"

#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

/* ---- failing and skipping ---- */

/*
 * Print file:line, the message and, when lib_msg is not NULL, the libblkio
 * error message, then exit.  T_FAIL leaves libblkio out: a white-box test
 * that compiles a driver into itself does not link the library.
 */
static inline void __attribute__((noreturn, format(printf, 4, 5)))
t_fail_at(const char *file, int line, const char *lib_msg, const char *fmt,
          ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (lib_msg)
        fprintf(stderr, " (last error message: \"%s\")", lib_msg);
    fprintf(stderr, "\n");
    exit(T_EXIT_FAIL);
}

#define T_FAIL(...) t_fail_at(__FILE__, __LINE__, NULL, __VA_ARGS__)
/* The same with the calling thread's libblkio error message. */
#define T_FAIL_MSG(...)                                                      \
    t_fail_at(__FILE__, __LINE__, blkio_get_error_msg(), __VA_ARGS__)

static inline void __attribute__((noreturn, format(printf, 1, 2)))
t_skip(const char *fmt, ...)
{
    va_list ap;

    printf("SKIP: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    exit(T_EXIT_SKIP);
}

/* A condition that must hold. */
#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond))                                                         \
            T_FAIL_MSG("%s", #cond);                                         \
    } while (0)

/* A call that must return exactly `expected` (0, a count or -errno). */
#define CHECK_RET(expr, expected)                                            \
    do {                                                                     \
        long r_ = (long)(expr);                                              \
        long e_ = (long)(expected);                                          \
        if (r_ != e_)                                                        \
            T_FAIL_MSG("%s returned %ld (%s), expected %ld (%s)", #expr,     \
                       r_, r_ < 0 ? strerror((int)-r_) : "-", e_,            \
                       e_ < 0 ? strerror((int)-e_) : "-");                   \
    } while (0)

/* Two values that must be equal, printed signed or unsigned. */
#define CHECK_EQ(a, b)                                                       \
    do {                                                                     \
        long long a_ = (long long)(a), b_ = (long long)(b);                  \
        if (a_ != b_)                                                        \
            T_FAIL("%s = %lld, expected %s = %lld", #a, a_, #b, b_);         \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                   \
    do {                                                                     \
        unsigned long long a_ = (a), b_ = (b);                               \
        if (a_ != b_)                                                        \
            T_FAIL("%s = %llu, expected %s = %llu", #a, a_, #b, b_);         \
    } while (0)

/* The calling thread's error message must contain `needle`. */
#define CHECK_MSG(needle)                                                    \
    do {                                                                     \
        const char *m_ = blkio_get_error_msg();                              \
        if (!m_ || !strstr(m_, (needle)))                                    \
            T_FAIL("error message \"%s\" does not contain \"%s\"",           \
                   m_ ? m_ : "(null)", (needle));                            \
    } while (0)

/* ---- properties ---- */

static inline uint64_t t_get_u64(struct blkio *b, const char *name)
{
    uint64_t v;

    CHECK_RET(blkio_get_uint64(b, name, &v), 0);
    return v;
}

static inline int t_get_int(struct blkio *b, const char *name)
{
    int v;

    CHECK_RET(blkio_get_int(b, name, &v), 0);
    return v;
}

static inline bool t_get_bool(struct blkio *b, const char *name)
{
    bool v;

    CHECK_RET(blkio_get_bool(b, name, &v), 0);
    return v;
}

/* A property that must read back as `want`; failures name the caller's
 * line and the property. */
static inline void t_expect_read_ok(const char *file, int line,
                                    const char *name, int ret)
{
    if (ret != 0)
        t_fail_at(file, line, blkio_get_error_msg(),
                  "reading %s returned %d (%s)", name, ret, strerror(-ret));
}

static inline void t_expect_u64_at(const char *file, int line,
                                   struct blkio *b, const char *name,
                                   uint64_t want)
{
    uint64_t v = 0;

    t_expect_read_ok(file, line, name, blkio_get_uint64(b, name, &v));
    if (v != want)
        t_fail_at(file, line, NULL, "%s is %llu, expected %llu", name,
                  (unsigned long long)v, (unsigned long long)want);
}

static inline void t_expect_int_at(const char *file, int line,
                                   struct blkio *b, const char *name, int want)
{
    int v = 0;

    t_expect_read_ok(file, line, name, blkio_get_int(b, name, &v));
    if (v != want)
        t_fail_at(file, line, NULL, "%s is %d, expected %d", name, v, want);
}

static inline void t_expect_bool_at(const char *file, int line,
                                    struct blkio *b, const char *name,
                                    bool want)
{
    bool v = false;

    t_expect_read_ok(file, line, name, blkio_get_bool(b, name, &v));
    if (v != want)
        t_fail_at(file, line, NULL, "%s is %d, expected %d", name, v, want);
}

#define t_expect_u64(b, name, want)                                          \
    t_expect_u64_at(__FILE__, __LINE__, (b), (name), (want))
#define t_expect_int(b, name, want)                                          \
    t_expect_int_at(__FILE__, __LINE__, (b), (name), (want))
#define t_expect_bool(b, name, want)                                         \
    t_expect_bool_at(__FILE__, __LINE__, (b), (name), (want))

/* ---- instances, buffers, completions ---- */

/* create + path + read-only + connect, then the queue counts and start. */
static inline struct blkio *t_open(const char *driver, const char *path,
                                   bool read_only, int num_queues,
                                   int num_poll_queues)
{
    struct blkio *b = NULL;

    CHECK_RET(blkio_create(driver, &b), 0);
    CHECK_RET(blkio_set_str(b, "path", path), 0);
    CHECK_RET(blkio_set_bool(b, "read-only", read_only), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(blkio_set_int(b, "num-queues", num_queues), 0);
    CHECK_RET(blkio_set_int(b, "num-poll-queues", num_poll_queues), 0);
    CHECK_RET(blkio_start(b), 0);
    return b;
}

/* A memory region from the library, mapped for I/O. */
static inline void *t_region(struct blkio *b, size_t len,
                             struct blkio_mem_region *r)
{
    CHECK_RET(blkio_alloc_mem_region(b, r, len), 0);
    CHECK_RET(blkio_map_mem_region(b, r), 0);
    return r->addr;
}

static inline void t_region_free(struct blkio *b, struct blkio_mem_region *r)
{
    blkio_unmap_mem_region(b, r);
    blkio_free_mem_region(b, r);
}

/* Plain aligned memory (never NULL; len 0 still gets a byte). */
static inline void *t_aligned_alloc(size_t align, size_t len)
{
    void *p = NULL;

    if (align < sizeof(void *))
        align = sizeof(void *);
    if (posix_memalign(&p, align, len ? len : 1) != 0)
        T_FAIL("out of memory (%zu bytes aligned to %zu)", len, align);
    return p;
}

/*
 * Wait for exactly one completion, for at most timeout_s seconds (0: no
 * limit), so that a hang fails instead of blocking the suite.  Fields the
 * queue does not fill keep the 0xab poison.
 */
static inline struct blkio_completion t_wait_one(struct blkioq *q,
                                                 int timeout_s)
{
    struct blkio_completion c;
    struct timespec t = { .tv_sec = timeout_s };

    memset(&c, 0xab, sizeof(c));
    CHECK_RET(blkioq_do_io(q, &c, 1, 1, timeout_s ? &t : NULL), 1);
    return c;
}

/* One completion within 30 s: its ret, *msg its error_msg, which a failed
 * request must have. */
static inline int t_wait(struct blkioq *q, const char **msg)
{
    struct blkio_completion c = t_wait_one(q, 30);

    if (msg)
        *msg = c.error_msg;
    if (c.ret < 0 && !c.error_msg)
        T_FAIL("completion with ret %d has no error_msg", c.ret);
    return c.ret;
}

/* ---- data ---- */

/* xorshift64*: reproducible pseudo-random numbers, one state per user. */
static inline uint64_t t_rand(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Plain xorshift64, 32 bits of it (the VM suites' offsets and lengths). */
static inline uint32_t t_rand32(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 11);
}

/* order[] = a random permutation of 0..n-1 drawn from rnd(state). */
static inline void t_shuffle(uint32_t *order, uint32_t n,
                             uint32_t (*rnd)(uint64_t *), uint64_t *state)
{
    for (uint32_t i = 0; i < n; i++)
        order[i] = i;
    for (uint32_t i = n ? n - 1 : 0; i > 0; i--) {
        uint32_t j = rnd(state) % (i + 1), t = order[i];

        order[i] = order[j];
        order[j] = t;
    }
}

/* Random bytes that depend only on the seed. */
static inline void t_fill_random(void *buf, size_t len, uint64_t seed)
{
    uint64_t s = seed | 1;
    uint8_t *p = buf;

    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(t_rand(&s) >> 56);
}

/*
 * A pattern that tells both where data belongs and which write put it
 * there: 64-bit words derived from the byte offset `off` on the device,
 * xored with a generation number.  len is a multiple of 8.
 */
static inline uint64_t t_pattern_word(uint64_t off, uint32_t gen)
{
    return (off * 0x9e3779b97f4a7c15ull) ^ gen;
}

static inline void t_fill_pattern(void *buf, size_t len, uint64_t off,
                                  uint32_t gen)
{
    uint64_t *p = buf;

    for (size_t i = 0; i < len / 8; i++)
        p[i] = t_pattern_word(off + i * 8, gen);
}

static inline bool t_verify_pattern(const void *buf, size_t len, uint64_t off,
                                    uint32_t gen)
{
    const uint64_t *p = buf;

    for (size_t i = 0; i < len / 8; i++)
        if (p[i] != t_pattern_word(off + i * 8, gen))
            return false;
    return true;
}

static inline bool t_is_zero(const void *buf, size_t len)
{
    const uint8_t *p = buf;

    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* Where temporary files go: $TMPDIR, else /var/tmp (a disk file system
 * that takes O_DIRECT, unlike a tmpfs /tmp). */
static inline const char *t_tmpdir(void)
{
    const char *dir = getenv("TMPDIR");

    return dir && *dir ? dir : "/var/tmp";
}

#endif /* TESTS_COMMON_TEST_UTIL_H */
