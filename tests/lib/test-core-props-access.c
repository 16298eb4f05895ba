/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: every common property (and the io_uring driver's own) in
 * every state, by the manual's access rules ("rw created, r connected/
 * started" and so on): typed get/set succeed where allowed; otherwise
 * unknown -> -ENOENT, wrong type -> -ENOTTY, never writable -> -EACCES,
 * readable or writable only later -> -ENODEV, only earlier -> -EBUSY (the
 * codes libblkio 1.5 returns; the type is checked before the state),
 * each with a message naming the property.  A failed get stores 0 (NULL
 * for a string), as 1.5 does.
 */
#include <inttypes.h>

#include "core-util.h"

#define S_CR  (1u << CU_CREATED)
#define S_CO  (1u << CU_CONNECTED)
#define S_ST  (1u << CU_STARTED)
#define S_ALL (S_CR | S_CO | S_ST)
#define S_AC  (S_CO | S_ST)

enum type { T_BOOL, T_INT, T_U64, T_STR };

struct prop {
    const char *name;
    enum type type;
    unsigned readable, writable;
};

/* The io_uring driver answers max-queues, supports-poll-queues, the
 * memory-region needs, flush-needed, can-grow, supports-fua-natively and
 * num-entries from creation on, as libblkio 1.5's does. */
static const struct prop props[] = {
    { "can-add-queues", T_BOOL, S_ALL, 0 },
    { "driver", T_STR, S_ALL, 0 },
    { "read-only", T_BOOL, S_ALL, S_CR },
    { "capacity", T_U64, S_AC, 0 },
    { "max-queues", T_INT, S_ALL, 0 },
    { "num-queues", T_INT, S_ALL, S_CO },
    { "num-poll-queues", T_INT, S_ALL, S_CO },
    { "supports-poll-queues", T_BOOL, S_ALL, 0 },
    { "max-mem-regions", T_U64, S_ALL, 0 },
    { "may-pin-mem-regions", T_BOOL, S_ALL, 0 },
    { "mem-region-alignment", T_U64, S_AC, 0 },
    { "needs-mem-regions", T_BOOL, S_ALL, 0 },
    { "needs-mem-region-fd", T_BOOL, S_ALL, 0 },
    { "optimal-io-alignment", T_INT, S_AC, 0 },
    { "optimal-io-size", T_INT, S_AC, 0 },
    { "request-alignment", T_INT, S_AC, 0 },
    { "flush-needed", T_BOOL, S_ALL, 0 },
    { "buf-alignment", T_INT, S_AC, 0 },
    { "can-grow", T_BOOL, S_ALL, 0 },
    { "max-segments", T_INT, S_AC, 0 },
    { "max-segment-len", T_INT, S_AC, 0 },
    { "max-transfer", T_INT, S_AC, 0 },
    { "optimal-buf-alignment", T_INT, S_AC, 0 },
    { "supports-fua-natively", T_BOOL, S_ALL, 0 },
    { "max-write-zeroes-len", T_U64, S_AC, 0 },
    { "discard-alignment", T_INT, S_AC, 0 },
    { "discard-alignment-offset", T_INT, S_AC, 0 },
    { "max-discard-len", T_U64, S_AC, 0 },
    /* io_uring driver */
    { "direct", T_BOOL, S_ALL, S_CR },
    { "fd", T_INT, S_ALL, S_CR },
    { "path", T_STR, S_ALL, S_CR },
    { "num-entries", T_INT, S_ALL, S_CO },
};

static const char *const state_names[] = { "created", "connected",
                                           "started" };
static const char *path;

/* Read with the property's own type; returns the raw result. */
static int get_typed(struct blkio *b, const struct prop *p)
{
    bool bv;
    int iv;
    uint64_t uv;
    char *sv = NULL;
    int ret = -1;

    switch (p->type) {
    case T_BOOL: ret = blkio_get_bool(b, p->name, &bv); break;
    case T_INT: ret = blkio_get_int(b, p->name, &iv); break;
    case T_U64: ret = blkio_get_uint64(b, p->name, &uv); break;
    case T_STR:
        ret = blkio_get_str(b, p->name, &sv);
        free(sv);
        break;
    }
    return ret;
}

/* Read with a type the property does not have. */
static int get_wrong_type(struct blkio *b, const struct prop *p)
{
    bool bv;
    int iv;
    uint64_t uv;

    switch (p->type) {
    case T_BOOL: return blkio_get_int(b, p->name, &iv);
    case T_INT: return blkio_get_uint64(b, p->name, &uv);
    case T_U64: return blkio_get_int(b, p->name, &iv);
    case T_STR: return blkio_get_bool(b, p->name, &bv);
    }
    return -1;
}

/* Write a value that is valid for the writable ones and harmless: the
 * default, or our own path.  Where fd is writable it is left alone
 * (returns 1): any value would hand the instance a descriptor. */
static int set_typed(struct blkio *b, const struct prop *p, bool writable)
{
    if (writable && strcmp(p->name, "fd") == 0)
        return 1;
    switch (p->type) {
    case T_BOOL: return blkio_set_bool(b, p->name, false);
    case T_INT:
        if (strcmp(p->name, "num-poll-queues") == 0)
            return blkio_set_int(b, p->name, 0);
        if (strcmp(p->name, "num-entries") == 0)
            return blkio_set_int(b, p->name, 128);
        return blkio_set_int(b, p->name, 1);
    case T_U64: return blkio_set_uint64(b, p->name, 1);
    case T_STR: return blkio_set_str(b, p->name, path);
    }
    return -1;
}

static int set_wrong_type(struct blkio *b, const struct prop *p)
{
    switch (p->type) {
    case T_BOOL: return blkio_set_int(b, p->name, 0);
    case T_INT: return blkio_set_bool(b, p->name, true);
    case T_U64: return blkio_set_int(b, p->name, 1);
    case T_STR: return blkio_set_uint64(b, p->name, 1);
    }
    return -1;
}

static void msg_names(const struct prop *p, enum cu_state st, const char *op)
{
    char quoted[128];

    snprintf(quoted, sizeof(quoted), "'%s'", p->name);
    if (!strstr(blkio_get_error_msg(), quoted))
        T_FAIL("%s of '%s' in state %s: message \"%s\" does not name it",
               op, p->name, state_names[st], blkio_get_error_msg());
}

#define EXPECT(expr, expected, p, st, op)                                    \
    do {                                                                     \
        int r_ = (expr);                                                     \
        if (r_ != (expected))                                                \
            T_FAIL("%s of '%s' in state %s returned %d (%s), expected %d "   \
                   "(%s); message: \"%s\"", op, (p)->name,                   \
                   state_names[st], r_, strerror(r_ < 0 ? -r_ : 0),         \
                   (expected), strerror(-(expected)),                        \
                   blkio_get_error_msg());                                   \
    } while (0)

static void check_state(struct blkio *b, enum cu_state st)
{
    unsigned bit = 1u << st;
    char *s;

    for (size_t i = 0; i < sizeof(props) / sizeof(props[0]); i++) {
        const struct prop *p = &props[i];

        if (p->readable & bit) {
            EXPECT(get_typed(b, p), 0, p, st, "get");
            s = NULL;
            EXPECT(blkio_get_str(b, p->name, &s), 0, p, st, "get_str");
            CHECK(s != NULL);
            free(s);
            EXPECT(get_wrong_type(b, p), -ENOTTY, p, st, "wrong-type get");
            msg_names(p, st, "wrong-type get");
        } else {
            /* Readable only after connect. */
            EXPECT(get_typed(b, p), -ENODEV, p, st, "get");
            msg_names(p, st, "get");
            CHECK_MSG("blkio_connect()");
            s = (char *)(uintptr_t)1;
            EXPECT(blkio_get_str(b, p->name, &s), -ENODEV, p, st,
                   "get_str");
            msg_names(p, st, "get_str");
            CHECK(s == NULL);   /* as in 1.5: free() after it is safe */
        }

        if (p->writable & bit) {
            int r = set_typed(b, p, true);
            if (r != 1)
                EXPECT(r, 0, p, st, "set");
            EXPECT(set_wrong_type(b, p), -ENOTTY, p, st, "wrong-type set");
            msg_names(p, st, "wrong-type set");
        } else if (p->writable == 0) {
            EXPECT(set_typed(b, p, false), -EACCES, p, st, "set");
            msg_names(p, st, "set");
            /* A value of the property's type; one that is not is -EINVAL
             * first, as in libblkio 1.5 (conformance: props). */
            EXPECT(blkio_set_str(b, p->name,
                                 p->type == T_BOOL ? "true" : "1"),
                   -EACCES, p, st, "set_str");
            EXPECT(blkio_set_str(b, p->name, "x"),
                   p->type == T_STR ? -EACCES : -EINVAL, p, st,
                   "set_str not of the type");
        } else {
            /* Writable only later: -ENODEV; only earlier: -EBUSY. */
            int e = p->writable > bit ? -ENODEV : -EBUSY;

            EXPECT(set_typed(b, p, false), e, p, st, "set");
            msg_names(p, st, "set");
            EXPECT(blkio_set_str(b, p->name,
                                 p->type == T_BOOL ? "true" : "1"),
                   e, p, st, "set_str");
            EXPECT(blkio_set_str(b, p->name, "x"),
                   p->type == T_STR ? e : -EINVAL, p, st,
                   "set_str not of the type");
        }
    }

    /* Unknown names, in every state. */
    {
        const struct prop unknown = { "no-such-property", T_INT, 0, 0 };
        bool bv;
        int iv;
        uint64_t uv;

        /* A failed get stores 0 (NULL for a string), as 1.5 does. */
        iv = 7;
        bv = true;
        uv = 7;
        s = (char *)(uintptr_t)1;
        EXPECT(blkio_get_int(b, "no-such-property", &iv), -ENOENT,
               &unknown, st, "get");
        msg_names(&unknown, st, "get");
        EXPECT(blkio_get_bool(b, "no-such-property", &bv), -ENOENT,
               &unknown, st, "get");
        EXPECT(blkio_get_uint64(b, "no-such-property", &uv), -ENOENT,
               &unknown, st, "get");
        EXPECT(blkio_get_str(b, "no-such-property", &s), -ENOENT,
               &unknown, st, "get_str");
        CHECK(iv == 0 && !bv && uv == 0 && s == NULL);
        EXPECT(blkio_set_int(b, "no-such-property", 1), -ENOENT,
               &unknown, st, "set");
        msg_names(&unknown, st, "set");
        EXPECT(blkio_set_bool(b, "no-such-property", true), -ENOENT,
               &unknown, st, "set");
        EXPECT(blkio_set_uint64(b, "no-such-property", 1), -ENOENT,
               &unknown, st, "set");
        EXPECT(blkio_set_str(b, "no-such-property", "1"), -ENOENT,
               &unknown, st, "set_str");
        /* Names are exact: no case folding, no underscores for dashes. */
        EXPECT(blkio_get_int(b, "Num-Queues", &iv), -ENOENT, &unknown, st,
               "get");
        EXPECT(blkio_get_int(b, "num_queues", &iv), -ENOENT, &unknown, st,
               "get");
        EXPECT(blkio_get_int(b, "", &iv), -ENOENT, &unknown, st, "get");
    }
}

int main(void)
{
    struct blkio *b;
    bool bv;
    int iv, ra, ba, oa;
    uint64_t uv, mra;
    char *s;

    path = cu_temp_file("disk.img", 1 << 20, 0);
    b = cu_io_uring(path, CU_CREATED);

    /* Defaults before connect. */
    CHECK_RET(blkio_get_bool(b, "read-only", &bv), 0);
    CHECK(!bv);
    CHECK_RET(blkio_get_bool(b, "direct", &bv), 0);
    CHECK(!bv);
    CHECK_RET(blkio_get_str(b, "driver", &s), 0);
    CHECK(strcmp(s, "io_uring") == 0);
    free(s);

    check_state(b, CU_CREATED);

    /* The messages the manual's rules imply, word for word. */
    CHECK_RET(blkio_set_int(b, "num-queues", 2), -ENODEV);
    CHECK_MSG("property 'num-queues' can only be set after blkio_connect()");
    CHECK_RET(blkio_get_uint64(b, "capacity", &uv), -ENODEV);
    CHECK_MSG("'capacity'");
    CHECK_RET(blkio_set_uint64(b, "capacity", 1), -EACCES);
    CHECK_MSG("'capacity'");

    CHECK_RET(blkio_connect(b), 0);
    check_state(b, CU_CONNECTED);
    CHECK_RET(blkio_set_bool(b, "read-only", true), -EBUSY);
    CHECK_MSG("property 'read-only' can only be set before blkio_connect()");

    /* Values of a 1 MiB regular file, and the invariants the manual
     * states between properties. */
    CHECK_RET(blkio_get_uint64(b, "capacity", &uv), 0);
    CHECK_RET(uv, 1 << 20);
    CHECK_RET(blkio_get_int(b, "num-queues", &iv), 0);
    CHECK_RET(iv, 1);
    CHECK_RET(blkio_get_int(b, "num-poll-queues", &iv), 0);
    CHECK_RET(iv, 0);
    CHECK_RET(blkio_get_int(b, "num-entries", &iv), 0);
    CHECK_RET(iv, 128);
    CHECK_RET(blkio_get_int(b, "max-queues", &iv), 0);
    CHECK(iv >= 1);
    CHECK_RET(blkio_get_int(b, "fd", &iv), 0);
    CHECK(iv >= 0);   /* updated to the opened fd on connect */
    CHECK_RET(blkio_get_int(b, "request-alignment", &ra), 0);
    CHECK(ra >= 1);
    CHECK_RET(blkio_get_int(b, "buf-alignment", &ba), 0);
    CHECK(ba >= 1);
    CHECK_RET(blkio_get_int(b, "optimal-io-alignment", &oa), 0);
    CHECK(oa >= 1 && oa % ra == 0);
    CHECK_RET(blkio_get_int(b, "optimal-buf-alignment", &iv), 0);
    CHECK(iv >= 1);
    CHECK_RET(blkio_get_uint64(b, "mem-region-alignment", &mra), 0);
    CHECK(mra >= 1 && mra % (uint64_t)ba == 0);
    CHECK_RET(blkio_get_int(b, "optimal-io-size", &iv), 0);
    CHECK(iv == 0 || iv % oa == 0);
    CHECK_RET(blkio_get_int(b, "max-segments", &iv), 0);
    CHECK(iv >= 1);
    CHECK_RET(blkio_get_int(b, "max-transfer", &iv), 0);
    CHECK(iv >= 0);
    CHECK_RET(blkio_get_int(b, "max-segment-len", &iv), 0);
    CHECK(iv >= 0);
    CHECK_RET(blkio_get_int(b, "discard-alignment", &iv), 0);
    CHECK(iv == 0 || iv % ra == 0);
    CHECK_RET(blkio_get_bool(b, "needs-mem-regions", &bv), 0);
    CHECK(!bv);   /* io_uring works on any buffer */

    /* Invalid values are refused and leave the old value. */
    CHECK(blkio_set_int(b, "num-queues", -1) < 0);
    CHECK_MSG("num-queues");
    CHECK(blkio_set_int(b, "num-poll-queues", -5) < 0);
    CHECK_RET(blkio_get_int(b, "num-queues", &iv), 0);
    CHECK_RET(iv, 1);
    CHECK_RET(blkio_get_int(b, "num-poll-queues", &iv), 0);
    CHECK_RET(iv, 0);
    CHECK_RET(blkio_set_int(b, "num-queues", 2), 0);
    CHECK_RET(blkio_get_int(b, "num-queues", &iv), 0);
    CHECK_RET(iv, 2);

    CHECK_RET(blkio_start(b), 0);
    check_state(b, CU_STARTED);
    CHECK_RET(blkio_set_int(b, "num-queues", 1), -EBUSY);
    CHECK_MSG("property 'num-queues' can only be set before blkio_start()");
    /* Past more than one state: the call that ended the last one. */
    CHECK_RET(blkio_set_bool(b, "read-only", false), -EBUSY);
    CHECK_MSG("property 'read-only' can only be set before blkio_connect()");
    CHECK_RET(blkio_get_int(b, "num-queues", &iv), 0);
    CHECK_RET(iv, 2);

    /* NULL arguments. */
    CHECK(blkio_get_int(b, NULL, &iv) < 0);
    CHECK(blkio_get_int(b, "num-queues", NULL) < 0);
    CHECK(blkio_set_int(b, NULL, 1) < 0);
    CHECK(blkio_get_str(b, "driver", NULL) < 0);
    CHECK(blkio_set_str(b, "path", NULL) < 0);
    CHECK(blkio_get_int(NULL, "num-queues", &iv) < 0);

    blkio_destroy(&b);

    /* read-only set before connect sticks. */
    b = cu_io_uring(path, CU_CREATED);
    CHECK_RET(blkio_set_bool(b, "read-only", true), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_RET(blkio_get_bool(b, "read-only", &bv), 0);
    CHECK(bv);
    blkio_destroy(&b);
    return T_EXIT_PASS;
}
