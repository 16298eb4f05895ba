/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Properties: one table for the properties every driver has, one per
 * driver for its own.  Each entry says in which states the property may be
 * read and written and where its value lives in struct blkio, so access
 * rules, typed access and string conversion are written once here.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int blkio_prop_set_nonneg_int(struct blkio *b, const struct blkio_property *p,
                              const void *value)
{
    (void)b;
    int v = *(const int *)value;

    if (v < 0)
        return blkio_set_error(-EINVAL, "property '%s' must be >= 0, got %d",
                               p->name, v);
    return 0;
}

int blkio_prop_set_positive_int(struct blkio *b,
                                const struct blkio_property *p,
                                const void *value)
{
    (void)b;
    int v = *(const int *)value;

    if (v <= 0)
        return blkio_set_error(-EINVAL, "property '%s' must be > 0, got %d",
                               p->name, v);
    return 0;
}

static const struct blkio_property blkio_common_props[] = {
    /* Available after blkio_create() */
    BLKIO_PROP("can-add-queues", PROP_BOOL, ST_ALL, 0, can_add_queues, NULL),
    BLKIO_PROP("driver", PROP_STR, ST_ALL, 0, driver_name, NULL),
    BLKIO_PROP("read-only", PROP_BOOL, ST_ALL, ST_CREATED, read_only, NULL),

    /* Device and queues */
    BLKIO_PROP("capacity", PROP_UINT64, ST_AFTER_CONNECT, 0, capacity, NULL),
    BLKIO_PROP("max-queues", PROP_INT, ST_AFTER_CONNECT, 0, max_queues, NULL),
    /* Settings: their defaults can be read from creation on. */
    BLKIO_PROP("num-queues", PROP_INT, ST_ALL, ST_CONNECTED,
               num_queues, blkio_prop_set_nonneg_int),
    BLKIO_PROP("num-poll-queues", PROP_INT, ST_ALL, ST_CONNECTED,
               num_poll_queues, blkio_prop_set_nonneg_int),
    BLKIO_PROP("supports-poll-queues", PROP_BOOL, ST_AFTER_CONNECT, 0,
               supports_poll_queues, NULL),

    /* Memory regions */
    BLKIO_PROP("max-mem-regions", PROP_UINT64, ST_AFTER_CONNECT, 0,
               max_mem_regions, NULL),
    BLKIO_PROP("may-pin-mem-regions", PROP_BOOL, ST_AFTER_CONNECT, 0,
               may_pin_mem_regions, NULL),
    BLKIO_PROP("mem-region-alignment", PROP_UINT64, ST_AFTER_CONNECT, 0,
               mem_region_alignment, NULL),
    BLKIO_PROP("needs-mem-regions", PROP_BOOL, ST_AFTER_CONNECT, 0,
               needs_mem_regions, NULL),
    BLKIO_PROP("needs-mem-region-fd", PROP_BOOL, ST_AFTER_CONNECT, 0,
               needs_mem_region_fd, NULL),

    /* All requests */
    BLKIO_PROP("optimal-io-alignment", PROP_INT, ST_AFTER_CONNECT, 0,
               optimal_io_alignment, NULL),
    BLKIO_PROP("optimal-io-size", PROP_INT, ST_AFTER_CONNECT, 0,
               optimal_io_size, NULL),
    BLKIO_PROP("request-alignment", PROP_INT, ST_AFTER_CONNECT, 0,
               request_alignment, NULL),
    BLKIO_PROP("flush-needed", PROP_BOOL, ST_AFTER_CONNECT, 0, flush_needed,
               NULL),

    /* Read and write */
    BLKIO_PROP("buf-alignment", PROP_INT, ST_AFTER_CONNECT, 0, buf_alignment,
               NULL),
    BLKIO_PROP("can-grow", PROP_BOOL, ST_AFTER_CONNECT, 0, can_grow, NULL),
    BLKIO_PROP("max-segments", PROP_INT, ST_AFTER_CONNECT, 0, max_segments,
               NULL),
    BLKIO_PROP("max-segment-len", PROP_INT, ST_AFTER_CONNECT, 0,
               max_segment_len, NULL),
    BLKIO_PROP("max-transfer", PROP_INT, ST_AFTER_CONNECT, 0, max_transfer,
               NULL),
    BLKIO_PROP("optimal-buf-alignment", PROP_INT, ST_AFTER_CONNECT, 0,
               optimal_buf_alignment, NULL),
    BLKIO_PROP("supports-fua-natively", PROP_BOOL, ST_AFTER_CONNECT, 0,
               supports_fua_natively, NULL),

    /* Write zeroes and discard */
    BLKIO_PROP("max-write-zeroes-len", PROP_UINT64, ST_AFTER_CONNECT, 0,
               max_write_zeroes_len, NULL),
    BLKIO_PROP("discard-alignment", PROP_INT, ST_AFTER_CONNECT, 0,
               discard_alignment, NULL),
    BLKIO_PROP("discard-alignment-offset", PROP_INT, ST_AFTER_CONNECT, 0,
               discard_alignment_offset, NULL),
    BLKIO_PROP("max-discard-len", PROP_UINT64, ST_AFTER_CONNECT, 0,
               max_discard_len, NULL),
};

static const char *const blkio_state_names[] = {
    [BLKIO_STATE_CREATED] = "blkio_create()",
    [BLKIO_STATE_CONNECTED] = "blkio_connect()",
    [BLKIO_STATE_STARTED] = "blkio_start()",
};

static const char *const blkio_type_names[] = {
    [PROP_BOOL] = "bool",
    [PROP_INT] = "int",
    [PROP_UINT64] = "uint64",
    [PROP_STR] = "str",
};

static const struct blkio_property *prop_find(const struct blkio *b,
                                              const char *name)
{
    for (size_t i = 0; i < b->drv->nprops; i++)
        if (strcmp(b->drv->props[i].name, name) == 0)
            return &b->drv->props[i];
    for (size_t i = 0; i < sizeof(blkio_common_props) /
                           sizeof(blkio_common_props[0]); i++)
        if (strcmp(blkio_common_props[i].name, name) == 0)
            return &blkio_common_props[i];
    return NULL;
}

/* The state from which on a mask allows access, for messages. */
static enum blkio_state prop_first_state(uint8_t mask)
{
    for (int s = BLKIO_STATE_CREATED; s <= BLKIO_STATE_STARTED; s++)
        if (mask & (1u << s))
            return (enum blkio_state)s;
    return BLKIO_STATE_STARTED;
}

/* The last state of mask (never BLKIO_STATE_STARTED when the instance is
 * past it). */
static enum blkio_state prop_last_state(uint8_t mask)
{
    for (int s = BLKIO_STATE_STARTED; s > BLKIO_STATE_CREATED; s--)
        if (mask & (1u << s))
            return (enum blkio_state)s;
    return BLKIO_STATE_CREATED;
}

/* Find a property and check that it may be read (or written) now as
 * `type` (PROP_STR: any type, converted).  value is the caller's value
 * argument, checked for NULL here once for all.  The order of the checks
 * is libblkio's: the name, then the type (-ENOTTY), then the access:
 * -EACCES for a read-only property, -ENODEV before the state it needs is
 * reached, -EBUSY after it is left. */
static int prop_lookup(struct blkio *b, const char *name, bool write,
                       enum blkio_prop_type type, const void *value,
                       const struct blkio_property **pp)
{
    const struct blkio_property *p;
    uint8_t mask;

    if (!b)
        return blkio_set_error(-EINVAL, "blkio instance is NULL");
    if (!name)
        return blkio_set_error(-EINVAL, "property name is NULL");
    if (!value)
        return blkio_set_error(-EINVAL, "value argument for property '%s' "
                               "is NULL", name);

    p = prop_find(b, name);
    if (!p)
        return blkio_set_error(-ENOENT, "unknown property name '%s'", name);
    if (type != PROP_STR && p->type != type)
        return blkio_set_error(-ENOTTY, "property '%s' has type %s, not %s",
                               p->name, blkio_type_names[p->type],
                               blkio_type_names[type]);

    mask = write ? p->writable : p->readable;
    if (!(mask & (1u << b->state))) {
        if (write && p->writable == 0)
            return blkio_set_error(-EACCES, "property '%s' is read-only",
                                   name);
        if (!write && p->readable == 0)
            return blkio_set_error(-EACCES, "property '%s' is write-only",
                                   name);
        enum blkio_state first = prop_first_state(mask);
        if (b->state < first)
            return blkio_set_error(-ENODEV,
                                   "property '%s' can only be %s after %s",
                                   name, write ? "set" : "read",
                                   blkio_state_names[first]);
        /* Name the call that ended the last state it could be set in. */
        return blkio_set_error(-EBUSY,
                               "property '%s' can only be %s before %s",
                               name, write ? "set" : "read",
                               blkio_state_names[prop_last_state(mask) + 1]);
    }
    if (!write && b->state != BLKIO_STATE_CREATED && b->drv->refresh_property)
        b->drv->refresh_property(b, p);
    *pp = p;
    return 0;
}

static void *prop_field(struct blkio *b, const struct blkio_property *p)
{
    return (char *)b + p->offset;
}

static int prop_get_typed(struct blkio *b, const char *name,
                          enum blkio_prop_type type, void *value)
{
    const struct blkio_property *p;
    int ret = prop_lookup(b, name, false, type, value, &p);

    if (ret < 0) {
        /* A failed read stores 0, as libblkio 1.5 does: a caller that
         * ignores the error reads no stale value. */
        if (value)
            memset(value, 0, type == PROP_BOOL  ? sizeof(bool)
                             : type == PROP_INT ? sizeof(int)
                                                : sizeof(uint64_t));
        return ret;
    }
    switch (type) {
    case PROP_BOOL:
        *(bool *)value = *(bool *)prop_field(b, p);
        break;
    case PROP_INT:
        *(int *)value = *(int *)prop_field(b, p);
        break;
    case PROP_UINT64:
        *(uint64_t *)value = *(uint64_t *)prop_field(b, p);
        break;
    case PROP_STR:
        break;
    }
    return 0;
}

/* Store an already converted value, running the property's hook first. */
static int prop_store(struct blkio *b, const struct blkio_property *p,
                      const void *value)
{
    void *field = prop_field(b, p);

    if (p->set) {
        int ret = p->set(b, p, value);
        if (ret < 0)
            return ret;
        if (ret == 1)
            return 0;
    }

    switch (p->type) {
    case PROP_BOOL:
        *(bool *)field = *(const bool *)value;
        break;
    case PROP_INT:
        *(int *)field = *(const int *)value;
        break;
    case PROP_UINT64:
        *(uint64_t *)field = *(const uint64_t *)value;
        break;
    case PROP_STR: {
        const char *v = *(const char *const *)value;
        char *copy = NULL;

        /* An empty string is no string: drivers see "path" as not set,
         * as libblkio 1.5's do; it still reads back as "". */
        if (*v && !(copy = strdup(v)))
            return blkio_set_error(-ENOMEM, "out of memory setting '%s'",
                                   p->name);
        free(*(char **)field);
        *(char **)field = copy;
        break;
    }
    }
    return 0;
}

static int prop_set_typed(struct blkio *b, const char *name,
                          enum blkio_prop_type type, const void *value)
{
    const struct blkio_property *p;
    int ret = prop_lookup(b, name, true, type, value, &p);

    if (ret < 0)
        return ret;
    return prop_store(b, p, value);
}

int blkio_get_bool(struct blkio *b, const char *name, bool *value)
{
    return prop_get_typed(b, name, PROP_BOOL, value);
}

int blkio_get_int(struct blkio *b, const char *name, int *value)
{
    return prop_get_typed(b, name, PROP_INT, value);
}

int blkio_get_uint64(struct blkio *b, const char *name, uint64_t *value)
{
    return prop_get_typed(b, name, PROP_UINT64, value);
}

int blkio_set_bool(struct blkio *b, const char *name, bool value)
{
    return prop_set_typed(b, name, PROP_BOOL, &value);
}

int blkio_set_int(struct blkio *b, const char *name, int value)
{
    return prop_set_typed(b, name, PROP_INT, &value);
}

int blkio_set_uint64(struct blkio *b, const char *name, uint64_t value)
{
    return prop_set_typed(b, name, PROP_UINT64, &value);
}

int blkio_get_str(struct blkio *b, const char *name, char **value)
{
    const struct blkio_property *p;
    char buf[32];
    const char *s = buf;
    char *copy;
    int ret = prop_lookup(b, name, false, PROP_STR, value, &p);

    if (ret < 0) {
        /* NULL, as in libblkio 1.5: free() after a failed read is safe. */
        if (value)
            *value = NULL;
        return ret;
    }

    switch (p->type) {
    case PROP_BOOL:
        s = *(bool *)prop_field(b, p) ? "true" : "false";
        break;
    case PROP_INT:
        snprintf(buf, sizeof(buf), "%d", *(int *)prop_field(b, p));
        break;
    case PROP_UINT64:
        snprintf(buf, sizeof(buf), "%" PRIu64,
                 *(uint64_t *)prop_field(b, p));
        break;
    case PROP_STR:
        s = *(char **)prop_field(b, p);
        if (!s)
            s = "";
        break;
    }

    copy = strdup(s);
    *value = copy;
    if (!copy)
        return blkio_set_error(-ENOMEM, "out of memory reading '%s'", name);
    return 0;
}

/* Exactly "true" or "false", like libblkio. */
static int prop_parse_bool(const char *s, bool *out)
{
    if (strcmp(s, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(s, "false") == 0) {
        *out = false;
        return 0;
    }
    return -EINVAL;
}

/* A value written as a string, converted to p's type. */
union prop_value {
    bool b;
    int i;
    uint64_t u;
    const char *s;
};

/* Convert value to p's type into *v; -EINVAL (message set) if it is not
 * one. */
static int prop_parse_value(const struct blkio_property *p, const char *name,
                            const char *value, union prop_value *v)
{
    char *end;

    switch (p->type) {
    case PROP_BOOL:
        if (prop_parse_bool(value, &v->b) < 0)
            return blkio_set_error(-EINVAL,
                                   "property '%s': invalid bool '%s' "
                                   "(use true or false)", name, value);
        return 0;
    case PROP_INT: {
        long l;
        errno = 0;
        l = strtol(value, &end, 10);
        /* strtol skips leading white space; libblkio does not. */
        if (isspace((unsigned char)value[0]) ||
            errno || end == value || *end != '\0' || l < INT_MIN ||
            l > INT_MAX)
            return blkio_set_error(-EINVAL,
                                   "property '%s': invalid int '%s'",
                                   name, value);
        v->i = (int)l;
        return 0;
    }
    case PROP_UINT64: {
        unsigned long long u;
        errno = 0;
        u = strtoull(value, &end, 10);
        if (isspace((unsigned char)*value) || *value == '-' || errno ||
            end == value || *end != '\0')
            return blkio_set_error(-EINVAL,
                                   "property '%s': invalid uint64 '%s'",
                                   name, value);
        v->u = u;
        return 0;
    }
    case PROP_STR:
        v->s = value;
        return 0;
    }
    return -EINVAL;
}

int blkio_set_str(struct blkio *b, const char *name, const char *value)
{
    const struct blkio_property *p;
    union prop_value v;
    int ret;

    /* libblkio converts the value before it checks the access: a value
     * that is not of the property's type is -EINVAL even where writing is
     * not allowed (a read-only property, the wrong state). */
    if (b && name && value && (p = prop_find(b, name)) != NULL) {
        ret = prop_parse_value(p, name, value, &v);
        if (ret < 0)
            return ret;
    }
    /* Finds the same property, or fails. */
    ret = prop_lookup(b, name, true, PROP_STR, value, &p);
    if (ret < 0)
        return ret;
    switch (p->type) {
    case PROP_BOOL:
        return prop_store(b, p, &v.b);
    case PROP_INT:
        return prop_store(b, p, &v.i);
    case PROP_UINT64:
        return prop_store(b, p, &v.u);
    case PROP_STR:
        return prop_store(b, p, &v.s);
    }
    return -EINVAL;
}
