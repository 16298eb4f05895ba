/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * fail-malloc.h - a malloc() that fails on demand, for the tests of what
 * the library does without memory.  It replaces glibc's in the test
 * program (and so in the library it links); ASan and valgrind replace
 * malloc() themselves, so under them the test skips
 * (fail_malloc_skip_if_replaced).  Include it once, in the test's file.
 */
#ifndef TESTS_LIB_FAIL_MALLOC_H
#define TESTS_LIB_FAIL_MALLOC_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../common/test-util.h"

/* Fail every allocation while fail_malloc_all is set, and those of
 * exactly fail_malloc_size bytes (0: none).  Under ASan nothing reads
 * them (the test skips), hence unused. */
static bool fail_malloc_all __attribute__((unused));
static size_t fail_malloc_size __attribute__((unused));

#if !defined(__SANITIZE_ADDRESS__)
extern void *__libc_malloc(size_t n);

void *malloc(size_t n)
{
    if (fail_malloc_all || (fail_malloc_size && n == fail_malloc_size))
        return NULL;
    return __libc_malloc(n);
}
#endif

static inline void fail_malloc_skip_if_replaced(void)
{
    const char *pre = getenv("LD_PRELOAD");

#if defined(__SANITIZE_ADDRESS__)
    t_skip("ASan replaces malloc()");
#endif
    if (pre && strstr(pre, "vgpreload"))
        t_skip("valgrind replaces malloc()");
}

#endif /* TESTS_LIB_FAIL_MALLOC_H */
