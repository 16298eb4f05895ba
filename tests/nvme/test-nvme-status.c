/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the NVMe status table of nvme-io_uring (white box, runs on
 * the host).  Walks every entry: the table is sorted by status with no
 * repeats (nvme_status_errno() searches it by halving), each entry's
 * status and the DNR/More/CRD bits around it map to its errno and its
 * message, which names the status in hex; errnos are negative and
 * meaningful (never 0).  Statuses not in the table map to -EIO with a
 * message naming their status code type.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvme-io-uring.h"

static int ts_failures;

#define TS_FAIL(...)                                                         \
    do {                                                                     \
        fprintf(stderr, "FAIL: " __VA_ARGS__);                               \
        fputc('\n', stderr);                                                 \
        ts_failures++;                                                       \
    } while (0)

/* DNR (bit 14), More (bit 13) and CRD (bits 12:11) around the code. */
static const int ts_extra_bits[] = { 0, 0x4000, 0x2000, 0x1800, 0x7800 };

static void ts_walk_table(void)
{
    if (nvme_status_table_len < 30)
        TS_FAIL("the table has only %zu entries", nvme_status_table_len);
    for (size_t i = 0; i < nvme_status_table_len; i++) {
        const struct nvme_status_entry *e = &nvme_status_table[i];
        char hex[16];

        if (i > 0 && nvme_status_table[i - 1].status >= e->status)
            TS_FAIL("entry %zu (0x%03x) is not after 0x%03x", i, e->status,
                    nvme_status_table[i - 1].status);
        if (e->status == 0 || e->status > 0x7ff)
            TS_FAIL("entry %zu: status 0x%x is not an error status", i,
                    e->status);
        if (e->err >= 0)
            TS_FAIL("status 0x%03x: errno %d is not negative", e->status,
                    e->err);
        snprintf(hex, sizeof(hex), "0x%03x", e->status);
        if (!e->msg || !strstr(e->msg, hex))
            TS_FAIL("status 0x%03x: message \"%s\" does not name it",
                    e->status, e->msg ? e->msg : "(null)");
        for (size_t k = 0; k < sizeof(ts_extra_bits) / sizeof(int); k++) {
            const char *msg = NULL;
            int st = e->status | ts_extra_bits[k];
            int ret = nvme_status_errno(st, &msg);

            if (ret != e->err || msg != e->msg)
                TS_FAIL("status 0x%04x: %d \"%s\", expected %d \"%s\"", st,
                        ret, msg ? msg : "(null)", e->err, e->msg);
        }
    }
}

/* A status is in the table. */
static bool ts_known(unsigned code)
{
    for (size_t i = 0; i < nvme_status_table_len; i++)
        if (nvme_status_table[i].status == code)
            return true;
    return false;
}

static void ts_unknown(void)
{
    static const char *const sct_words[8] = {
        "generic", "command specific", "media", "path", "reserved",
        "reserved", "reserved", "vendor specific",
    };

    /* Every status not in the table, of every status code type. */
    for (unsigned code = 1; code <= 0x7ff; code++) {
        const char *msg = NULL;
        int ret;

        if (ts_known(code))
            continue;
        ret = nvme_status_errno((int)code, &msg);
        if (ret != -EIO || !msg || !strstr(msg, sct_words[code >> 8]))
            TS_FAIL("unknown status 0x%03x: %d \"%s\", expected -EIO and "
                    "\"%s\"", code, ret, msg ? msg : "(null)",
                    sct_words[code >> 8]);
    }
}

/* A few entries by value, so that the table cannot drift unnoticed. */
static void ts_spot_checks(void)
{
    static const struct { int status, err; } want[] = {
        { 0x002, -EINVAL }, { 0x020, -EROFS }, { 0x080, -ERANGE },
        { 0x081, -ENOSPC }, { 0x183, -ENOTSUP }, { 0x1be, -ETOOMANYREFS },
        { 0x281, -EIO }, { 0x286, -EACCES },
    };

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const char *msg = NULL;
        int ret = nvme_status_errno(want[i].status, &msg);

        if (ret != want[i].err)
            TS_FAIL("status 0x%03x: %d, expected %d", want[i].status, ret,
                    want[i].err);
    }
}

int main(void)
{
    ts_walk_table();
    ts_unknown();
    ts_spot_checks();
    if (ts_failures) {
        fprintf(stderr, "%d failures\n", ts_failures);
        return 1;
    }
    printf("%zu table entries and %u unknown statuses checked\n",
           nvme_status_table_len, 0x7ffu - (unsigned)nvme_status_table_len);
    return 0;
}
