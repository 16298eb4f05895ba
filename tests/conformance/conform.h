/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * conform.h - the trace every conformance scenario prints.
 *
 * A scenario is written against <blkio.h> alone and runs unchanged on any
 * libblkio.so.1.  It prints one line per observation, "label = value":
 * return values as errno names, property values, data checksums; nothing
 * that differs between two correct runs (pointers, fds, messages).  The
 * runner (conform-run.sh) runs it once on each library and compares the
 * traces label by label (conform-compare.py).
 */
#ifndef CONFORM_H
#define CONFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <blkio.h>

/* "0", "-EINVAL", ... for <= 0; the number itself for > 0. */
const char *cf_errname(int ret);

/* Print "label = value" (printf-style label). */
void cf_line(const char *value, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Print "label = errname(ret)" and return ret. */
int cf_ret(int ret, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* FNV-1a 64 of a buffer, for data comparisons. */
uint64_t cf_hash(const void *buf, size_t len);

/* Stop the scenario (exit 1) after printing why: the rest would only
 * repeat the failure. */
void cf_die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                 noreturn));

/* The instance a scenario works on: created with the driver and the
 * creation-time properties from the command line (NAME=VALUE). */
struct cf_setup {
    const char *driver;
    int nprops;
    char **props;        /* "name=value" */
};

/* blkio_create() and the setup properties; traces nothing (setup is not
 * under test); dies on failure. */
struct blkio *cf_create(const struct cf_setup *s);
/* cf_create + blkio_connect (+ blkio_start when start), traced. */
struct blkio *cf_open(const struct cf_setup *s, bool start);

/* Submit nothing; wait for one completion on q; trace its ret under
 * label; returns it (or the do_io error). */
int cf_wait1(struct blkioq *q, const char *label);

/* Scenarios (conform-*.c). */
int cf_lifecycle(const struct cf_setup *s);
int cf_props(const struct cf_setup *s);
int cf_queues(const struct cf_setup *s);
int cf_mem(const struct cf_setup *s);
int cf_io(const struct cf_setup *s);
int cf_cfd(const struct cf_setup *s);
int cf_poll(const struct cf_setup *s);
int cf_readonly(const struct cf_setup *s);
int cf_zones(const struct cf_setup *s);

#endif /* CONFORM_H */
