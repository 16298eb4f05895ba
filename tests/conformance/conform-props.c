/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Properties: every name any driver has, read with every typed getter and
 * written with every typed setter in every state, plus bad values and the
 * string conversions.  A write always stores the value the property
 * already has (or a harmless one), so the instance stays usable.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conform.h"

enum cf_type { B, I, U, S };

/* Every property name of libblkio 1.5's drivers, with its type, and the
 * value a setter uses when the property cannot be read. */
static const struct {
    const char *name;
    enum cf_type type;
    int safe_int;
} cf_props_all[] = {
    { "can-add-queues", B, 0 }, { "driver", S, 0 }, { "read-only", B, 0 },
    { "capacity", U, 0 }, { "max-queues", I, 0 }, { "num-queues", I, 1 },
    { "num-poll-queues", I, 0 }, { "supports-poll-queues", B, 0 },
    { "max-mem-regions", U, 0 }, { "may-pin-mem-regions", B, 0 },
    { "mem-region-alignment", U, 0 }, { "needs-mem-regions", B, 0 },
    { "needs-mem-region-fd", B, 0 }, { "optimal-io-alignment", I, 0 },
    { "optimal-io-size", I, 0 }, { "request-alignment", I, 0 },
    { "flush-needed", B, 0 }, { "buf-alignment", I, 0 },
    { "can-grow", B, 0 }, { "max-segments", I, 0 },
    { "max-segment-len", I, 0 }, { "max-transfer", I, 0 },
    { "optimal-buf-alignment", I, 0 }, { "supports-fua-natively", B, 0 },
    { "max-write-zeroes-len", U, 0 }, { "discard-alignment", I, 0 },
    { "discard-alignment-offset", I, 0 }, { "max-discard-len", U, 0 },
    /* driver-specific */
    { "direct", B, 0 }, { "fd", I, -1 }, { "path", S, 0 },
    { "num-entries", I, 128 }, { "queue-size", I, 256 },
    { "max-queue-size", I, 0 }, { "zoned", I, 0 },
    { "max-active-zones", I, 0 }, { "max-open-zones", I, 0 },
    { "zone-size", U, 0 }, { "nr-zones", U, 0 }, { "append-support", B, 0 },
    { "zone-append-max-bytes", U, 0 },
    { "max_active_zones", I, 0 }, { "max_open_zones", I, 0 },
    { "zone_size", U, 0 }, { "nr_zones", U, 0 }, { "append_support", B, 0 },
    { "zone_append_max_bytes", U, 0 },
    { "no-such-property", I, 0 },
};

#define NPROPS (sizeof(cf_props_all) / sizeof(*cf_props_all))

/* A string value as the trace shows it: a setup path (which differs
 * between runs) by its name. */
static void cf_str_line(const struct cf_setup *s, const char *v,
                        const char *label, const char *name)
{
    for (int i = 0; i < s->nprops; i++) {
        const char *eq = strchr(s->props[i], '=');
        if (eq && strcmp(eq + 1, v) == 0 && strchr(v, '/')) {
            char tag[80];
            snprintf(tag, sizeof(tag), "<setup %.*s>",
                     (int)(eq - s->props[i]), s->props[i]);
            cf_line(tag, "%s %s value", label, name);
            return;
        }
    }
    cf_line(v, "%s %s value", label, name);
}

/* Read the property with all four getters. */
static void cf_get_all(struct blkio *b, const struct cf_setup *s,
                       const char *st, const char *name)
{
    /* Filled with a sentinel first: what a failed get leaves behind is
     * part of the trace too (libblkio 1.5 stores 0, NULL for a string). */
    bool bv = true;
    int iv = 7;
    uint64_t uv = 7;
    char *sv = (char *)"sentinel", buf[32];

    if (cf_ret(blkio_get_bool(b, name, &bv), "%s.get_bool %s", st, name) == 0)
        cf_line(bv ? "true" : "false", "%s.get_bool %s value", st, name);
    else
        cf_line(bv ? "true" : "false", "%s.get_bool %s failed, left", st,
                name);
    if (cf_ret(blkio_get_int(b, name, &iv), "%s.get_int %s", st, name) == 0) {
        snprintf(buf, sizeof(buf), "%d", iv);
        cf_line(buf, "%s.get_int %s value", st, name);
    } else {
        snprintf(buf, sizeof(buf), "%d", iv);
        cf_line(buf, "%s.get_int %s failed, left", st, name);
    }
    if (cf_ret(blkio_get_uint64(b, name, &uv), "%s.get_uint64 %s", st,
               name) == 0) {
        snprintf(buf, sizeof(buf), "%" PRIu64, uv);
        cf_line(buf, "%s.get_uint64 %s value", st, name);
    } else {
        snprintf(buf, sizeof(buf), "%" PRIu64, uv);
        cf_line(buf, "%s.get_uint64 %s failed, left", st, name);
    }
    if (cf_ret(blkio_get_str(b, name, &sv), "%s.get_str %s", st, name) == 0) {
        char label[64];
        snprintf(label, sizeof(label), "%s.get_str", st);
        cf_str_line(s, sv ? sv : "(null)", label, name);
        free(sv);
    } else {
        cf_line(sv ? "not NULL" : "NULL", "%s.get_str %s failed, left", st,
                name);
    }
}

/* Write the property with all four setters, each storing the value it
 * has (as that type), or the table's harmless value. */
static void cf_set_all(struct blkio *b, const char *st, size_t k)
{
    const char *name = cf_props_all[k].name;
    bool bv = false;
    int iv = cf_props_all[k].safe_int;
    uint64_t uv = 0;
    char *sv = NULL;
    char ibuf[16];

    if (blkio_get_bool(b, name, &bv) < 0)
        bv = false;
    if (blkio_get_int(b, name, &iv) < 0)
        iv = cf_props_all[k].safe_int;
    if (blkio_get_uint64(b, name, &uv) < 0)
        uv = 0;
    cf_ret(blkio_set_bool(b, name, bv), "%s.set_bool %s", st, name);
    cf_ret(blkio_set_int(b, name, iv), "%s.set_int %s", st, name);
    cf_ret(blkio_set_uint64(b, name, uv), "%s.set_uint64 %s", st, name);
    if (blkio_get_str(b, name, &sv) == 0) {
        cf_ret(blkio_set_str(b, name, sv), "%s.set_str %s", st, name);
        free(sv);
    } else if (cf_props_all[k].type != S) {
        /* A value of the property's type, as a string. */
        snprintf(ibuf, sizeof(ibuf), "%d", iv);
        cf_ret(blkio_set_str(b, name, cf_props_all[k].type == B ? "false"
                                                               : ibuf),
               "%s.set_str %s", st, name);
    }
    /* A string that is not of the type: is it parsed before the access
     * is checked (a read-only property, the wrong state)? */
    if (cf_props_all[k].type != S)
        cf_ret(blkio_set_str(b, name, "x"), "%s.set_str %s 'x'", st, name);
}

static void cf_matrix(struct blkio *b, const struct cf_setup *s,
                      const char *st)
{
    for (size_t k = 0; k < NPROPS; k++) {
        cf_get_all(b, s, st, cf_props_all[k].name);
        cf_set_all(b, st, k);
    }
}

/* Set an int to bad values, show what it reads, restore it. */
static void cf_bad_ints(struct blkio *b, const char *st, const char *name,
                        const int *vals, int n)
{
    int orig, v;
    char buf[16];

    if (cf_ret(blkio_get_int(b, name, &orig), "%s.bad %s orig", st,
               name) < 0)
        return;
    for (int i = 0; i < n; i++) {
        cf_ret(blkio_set_int(b, name, vals[i]), "%s.bad set_int %s %d", st,
               name, vals[i]);
        if (blkio_get_int(b, name, &v) == 0) {
            snprintf(buf, sizeof(buf), "%d", v);
            cf_line(buf, "%s.bad set_int %s %d reads", st, name, vals[i]);
        }
    }
    cf_ret(blkio_set_int(b, name, orig), "%s.bad %s restore", st, name);
}

/* String conversions into an int, a bool and a string property. */
static void cf_conversions(struct blkio *b, const char *st, const char *name,
                           const char *const *vals, int n)
{
    char *orig = NULL, *v = NULL;

    if (cf_ret(blkio_get_str(b, name, &orig), "%s.conv %s orig", st,
               name) < 0)
        return;
    for (int i = 0; i < n; i++) {
        cf_ret(blkio_set_str(b, name, vals[i]), "%s.conv %s '%s'", st, name,
               vals[i]);
        if (blkio_get_str(b, name, &v) == 0) {
            cf_line(v, "%s.conv %s '%s' reads", st, name, vals[i]);
            free(v);
        }
    }
    cf_ret(blkio_set_str(b, name, orig), "%s.conv %s restore", st, name);
    free(orig);
}

static const char *const cf_bool_strs[] = {
    "true", "false", "1", "0", "yes", "no", "on", "off", "TRUE", "True",
    "maybe", "", " true", "2",
};
static const char *const cf_int_strs[] = {
    "1", "2", " 1", "1 ", "+1", "0x1", "01", "1x", "", "-1",
    "99999999999", "1.0",
};

int cf_props(const struct cf_setup *s)
{
    static const int bad_queues[] = { -1, 0, 1 << 30 };
    static const int bad_entries[] = { -1, 0, 3, 100, 1 << 20 };
    static const int bad_qsize[] = { -1, 0, 3, 1 << 20 };
    struct blkio *b = cf_create(s);

    cf_matrix(b, s, "created");
    cf_conversions(b, "created", "read-only", cf_bool_strs,
                   sizeof(cf_bool_strs) / sizeof(*cf_bool_strs));
    cf_ret(blkio_set_bool(b, "read-only", false), "created.read-only reset");

    if (cf_ret(blkio_connect(b), "connect") < 0)
        cf_die("blkio_connect failed");
    cf_matrix(b, s, "connected");
    cf_bad_ints(b, "connected", "num-queues", bad_queues, 3);
    cf_bad_ints(b, "connected", "num-poll-queues", bad_queues, 3);
    cf_bad_ints(b, "connected", "num-entries", bad_entries, 5);
    cf_bad_ints(b, "connected", "queue-size", bad_qsize, 4);
    cf_conversions(b, "connected", "num-queues", cf_int_strs,
                   sizeof(cf_int_strs) / sizeof(*cf_int_strs));
    cf_ret(blkio_set_int(b, "num-queues", 1), "connected.num-queues reset");

    if (cf_ret(blkio_start(b), "start") < 0)
        cf_die("blkio_start failed");
    cf_matrix(b, s, "started");
    blkio_destroy(&b);
    return 0;
}
