/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * nvme-status.c - NVMe completion status to errno, as a table sorted by
 * status (tests/nvme/test-nvme-status.c walks it).
 */
#include <errno.h>

#include "nvme-io-uring.h"

#define S(code, errno_, what) \
    { (code), (errno_), "nvme status " #code ": " what }

const struct nvme_status_entry nvme_status_table[] = {
    /* generic command status (SCT 0) */
    S(0x001, -ENOTSUP, "invalid command opcode"),
    S(0x002, -EINVAL, "invalid field in command"),
    S(0x004, -EIO, "data transfer error"),
    S(0x005, -EIO, "commands aborted due to power loss"),
    S(0x006, -EIO, "internal error"),
    S(0x007, -ECANCELED, "command abort requested"),
    S(0x00b, -ENODEV, "invalid namespace or format"),
    S(0x00f, -EINVAL, "data SGL length invalid"),
    S(0x013, -EINVAL, "PRP offset invalid"),
    S(0x015, -EPERM, "operation denied"),
    S(0x016, -EINVAL, "SGL offset invalid"),
    S(0x020, -EROFS, "namespace is write protected"),
    S(0x021, -EAGAIN, "command interrupted"),
    S(0x022, -EAGAIN, "transient transport error"),
    S(0x080, -ERANGE, "LBA out of range"),
    S(0x081, -ENOSPC, "capacity exceeded"),
    S(0x082, -EAGAIN, "namespace not ready"),
    S(0x083, -EBADE, "reservation conflict"),
    S(0x084, -EAGAIN, "format in progress"),
    /* command specific status (SCT 1) */
    S(0x180, -EINVAL, "conflicting attributes"),
    S(0x181, -EILSEQ, "invalid protection information"),
    S(0x182, -EROFS, "attempted write to read only range"),
    S(0x183, -ENOTSUP, "invalid command for this controller (ONCS)"),
    S(0x1b8, -EIO, "zone boundary error"),
    S(0x1b9, -EIO, "zone is full"),
    S(0x1ba, -EROFS, "zone is read only"),
    S(0x1bb, -EIO, "zone is offline"),
    S(0x1bc, -EIO, "zone invalid write (not at the write pointer)"),
    S(0x1bd, -EOVERFLOW, "too many active zones"),
    S(0x1be, -ETOOMANYREFS, "too many open zones"),
    S(0x1bf, -EIO, "invalid zone state transition"),
    /* media and data integrity errors (SCT 2) */
    S(0x280, -EIO, "write fault"),
    S(0x281, -EIO, "unrecovered read error"),
    S(0x282, -EILSEQ, "end-to-end guard check error"),
    S(0x283, -EILSEQ, "end-to-end application tag check error"),
    S(0x284, -EILSEQ, "end-to-end reference tag check error"),
    S(0x285, -EILSEQ, "compare failure"),
    S(0x286, -EACCES, "access denied"),
    S(0x287, -ENODATA, "deallocated or unwritten logical block"),
};

const size_t nvme_status_table_len =
    sizeof(nvme_status_table) / sizeof(nvme_status_table[0]);

/* Messages for statuses not in the table, by status code type (SCT). */
static const char *const nvme_sct_msg[8] = {
    "nvme command failed with a generic status not known to libblkio",
    ("nvme command failed with a command specific status not known to "
     "libblkio"),       /* parenthesized: one string, for clang */
    "nvme command failed with a media or data integrity error",
    "nvme command failed with a path related error",
    "nvme command failed with a reserved status code type",
    "nvme command failed with a reserved status code type",
    "nvme command failed with a reserved status code type",
    "nvme command failed with a vendor specific status",
};

int nvme_status_errno(int status, const char **msg)
{
    unsigned code = (unsigned)status & 0x7ff;   /* drop DNR, More, CRD */
    size_t lo = 0, hi = nvme_status_table_len;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (nvme_status_table[mid].status < code) {
            lo = mid + 1;
        } else if (nvme_status_table[mid].status > code) {
            hi = mid;
        } else {
            *msg = nvme_status_table[mid].msg;
            return nvme_status_table[mid].err;
        }
    }
    *msg = nvme_sct_msg[(code >> 8) & 0x7];
    return -EIO;
}
