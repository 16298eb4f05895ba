/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: string conversion of properties both ways.  get_str works
 * for every type and agrees with the typed getter; set_str parses bool and
 * int values, refuses invalid text with -EINVAL (naming the value) and then
 * leaves the old value in place.
 */
#include <inttypes.h>
#include <limits.h>

#include "core-util.h"

static char *get_str(struct blkio *b, const char *name)
{
    char *s = NULL;

    CHECK_RET(blkio_get_str(b, name, &s), 0);
    CHECK(s != NULL);
    return s;
}

static void expect_str(struct blkio *b, const char *name, const char *want)
{
    char *s = get_str(b, name);

    if (strcmp(s, want) != 0)
        T_FAIL("get_str(\"%s\") is \"%s\", expected \"%s\"", name, s, want);
    free(s);
}

static void expect_int(struct blkio *b, const char *name, int want)
{
    int v;

    CHECK_RET(blkio_get_int(b, name, &v), 0);
    if (v != want)
        T_FAIL("'%s' is %d, expected %d", name, v, want);
}

static void expect_bool(struct blkio *b, const char *name, bool want)
{
    bool v;

    CHECK_RET(blkio_get_bool(b, name, &v), 0);
    if (v != want)
        T_FAIL("'%s' is %d, expected %d", name, v, want);
}

/* set_str must fail with -EINVAL and a message quoting the bad text. */
static void expect_invalid(struct blkio *b, const char *name,
                           const char *text)
{
    int ret = blkio_set_str(b, name, text);

    if (ret != -EINVAL)
        T_FAIL("set_str(\"%s\", \"%s\") returned %d, expected -EINVAL "
               "(message \"%s\")", name, text, ret, blkio_get_error_msg());
    CHECK_MSG(name);
    if (*text)
        CHECK_MSG(text);
}

int main(void)
{
    const char *path = cu_temp_file("disk.img", 3 << 20, 0);
    struct blkio *b = cu_io_uring(path, CU_CREATED);
    char buf[64];
    char *s;
    int iv;
    uint64_t uv;

    /* str and bool, before connect. */
    expect_str(b, "driver", "io_uring");
    expect_str(b, "path", path);
    expect_str(b, "read-only", "false");
    CHECK_RET(blkio_set_bool(b, "read-only", true), 0);
    expect_str(b, "read-only", "true");

    CHECK_RET(blkio_set_str(b, "read-only", "false"), 0);
    expect_bool(b, "read-only", false);
    CHECK_RET(blkio_set_str(b, "read-only", "true"), 0);
    expect_bool(b, "read-only", true);
    expect_invalid(b, "read-only", "maybe");
    expect_invalid(b, "read-only", "");
    expect_invalid(b, "read-only", "truefalse");
    expect_bool(b, "read-only", true);   /* unchanged */
    CHECK_RET(blkio_set_str(b, "read-only", "false"), 0);
    expect_bool(b, "read-only", false);

    /* A str property takes the text verbatim. */
    CHECK_RET(blkio_set_str(b, "path", "/some where/with spaces"), 0);
    expect_str(b, "path", "/some where/with spaces");
    CHECK_RET(blkio_set_str(b, "path", path), 0);
    expect_str(b, "path", path);

    /* Read-only and unknown properties through set_str. */
    CHECK_RET(blkio_set_str(b, "driver", "nvme-io_uring"), -EACCES);
    CHECK_RET(blkio_set_str(b, "can-add-queues", "true"), -EACCES);
    CHECK_RET(blkio_set_str(b, "no-such-property", "1"), -ENOENT);
    CHECK_MSG("no-such-property");
    expect_str(b, "driver", "io_uring");

    CHECK_RET(blkio_connect(b), 0);

    /* uint64 and int to text agree with the typed getters. */
    expect_str(b, "capacity", "3145728");
    CHECK_RET(blkio_get_uint64(b, "max-mem-regions", &uv), 0);
    snprintf(buf, sizeof(buf), "%" PRIu64, uv);
    expect_str(b, "max-mem-regions", buf);
    expect_str(b, "num-queues", "1");
    expect_str(b, "num-poll-queues", "0");
    CHECK_RET(blkio_get_int(b, "max-queues", &iv), 0);
    snprintf(buf, sizeof(buf), "%d", iv);
    expect_str(b, "max-queues", buf);

    /* int from text. */
    CHECK_RET(blkio_set_str(b, "num-queues", "3"), 0);
    expect_int(b, "num-queues", 3);
    expect_str(b, "num-queues", "3");
    CHECK_RET(blkio_set_str(b, "num-entries", "256"), 0);
    expect_int(b, "num-entries", 256);
    expect_invalid(b, "num-queues", "");
    expect_invalid(b, "num-queues", "two");
    expect_invalid(b, "num-queues", "2x");
    expect_invalid(b, "num-queues", "1.5");
    expect_invalid(b, "num-queues", "99999999999999999999");
    snprintf(buf, sizeof(buf), "%lld", (long long)INT_MAX + 1);
    expect_invalid(b, "num-queues", buf);
    CHECK(blkio_set_str(b, "num-queues", "-1") < 0);
    expect_int(b, "num-queues", 3);   /* unchanged by all of the above */
    CHECK_RET(blkio_set_str(b, "num-queues", "1"), 0);

    /* set_str on read-only typed properties. */
    CHECK_RET(blkio_set_str(b, "capacity", "4096"), -EACCES);
    CHECK_RET(blkio_set_str(b, "request-alignment", "512"), -EACCES);
    expect_str(b, "capacity", "3145728");

    /* Every readable property converts in the started state too. */
    CHECK_RET(blkio_start(b), 0);
    expect_str(b, "num-entries", "256");
    expect_str(b, "read-only", "false");
    s = get_str(b, "supports-poll-queues");
    CHECK(strcmp(s, "true") == 0 || strcmp(s, "false") == 0);
    free(s);
    s = get_str(b, "fd");
    CHECK_RET(blkio_get_int(b, "fd", &iv), 0);
    snprintf(buf, sizeof(buf), "%d", iv);
    CHECK(strcmp(s, buf) == 0);
    free(s);

    blkio_destroy(&b);
    return T_EXIT_PASS;
}
