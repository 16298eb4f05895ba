/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the io_uring driver on a block device node (a loop device
 * over a temporary file, with 4096-byte sectors): capacity comes from the
 * device, request alignment is its logical block size with O_DIRECT and 1
 * through the page cache (as in libblkio 1.5), reads and writes (buffered
 * and O_DIRECT) reach the backing file, write zeroes with each flag
 * combination and discard read back as zeroes, misaligned O_DIRECT
 * requests fail with -EINVAL and a buffered misaligned read works; the
 * device made read-only is refused for writing at connect (-EROFS).
 * Skipped without root or loop devices.
 */
#include <sys/wait.h>

#include "util.h"

#define SIZE (16u << 20)

static char loopdev[64];

static void detach(void)
{
    char cmd[128];

    if (loopdev[0]) {
        snprintf(cmd, sizeof(cmd), "losetup -d %s", loopdev);
        if (system(cmd) != 0)
            fprintf(stderr, "warning: %s failed\n", cmd);
    }
}

static void exercise(const char *backing, bool direct)
{
    static unsigned char pattern[SIZE], rbuf[SIZE];
    struct blkio *b = ut_start(loopdev, direct, false);
    struct blkioq *q = blkio_get_queue(b, 0);
    static const uint32_t zflags[] = {
        0, BLKIO_REQ_NO_UNMAP, BLKIO_REQ_NO_FALLBACK,
        BLKIO_REQ_NO_UNMAP | BLKIO_REQ_NO_FALLBACK,
    };
    unsigned char *buf = t_aligned_alloc(4096, SIZE);
    uint64_t cap, wz;
    int ra, ret;

    ok(blkio_get_uint64(b, "capacity", &cap));
    check(cap == SIZE);
    ok(blkio_get_int(b, "request-alignment", &ra));
    /* O_DIRECT needs the logical block size; the page cache takes any
     * alignment (libblkio 1.5 says 1 there too). */
    check(ra == (direct ? 4096 : 1));
    ok(blkio_get_uint64(b, "max-write-zeroes-len", &wz));
    printf("direct=%d request-alignment=%d max-write-zeroes-len=%" PRIu64
           "\n", direct, ra, wz);

    t_fill_random(pattern, SIZE, direct ? 2 : 1);
    memcpy(buf, pattern, SIZE);
    blkioq_write(q, 0, buf, SIZE, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    blkioq_flush(q, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    ut_pread_file(backing, rbuf, SIZE, 0);
    check(memcmp(rbuf, pattern, SIZE) == 0);

    for (size_t i = 0; i < 4; i++) {
        uint64_t off = (uint64_t)(i + 1) << 20;

        blkioq_write_zeroes(q, off, 65536, NULL, zflags[i]);
        ret = ut_wait1(q, NULL);
        if (ret == -ENOTSUP && (zflags[i] & BLKIO_REQ_NO_FALLBACK)) {
            printf("note: write zeroes flags %#x: -ENOTSUP\n", zflags[i]);
            memset(pattern + off, 0, 65536);   /* compare below anyway */
            memset(buf, 0, 65536);
            blkioq_write(q, off, buf, 65536, NULL, 0);
            check(ut_wait1(q, NULL) == 0);
            continue;
        }
        check(ret == 0);
        memset(pattern + off, 0, 65536);
    }
    blkioq_discard(q, 8u << 20, 1u << 20, NULL, 0);
    ret = ut_wait1(q, NULL);
    check(ret == 0 || ret == -ENOTSUP);

    memset(buf, 0xaa, SIZE);
    blkioq_read(q, 0, buf, 8u << 20, NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    check(memcmp(buf, pattern, 8u << 20) == 0);

    if (direct) {
        blkioq_read(q, 512, buf, 4096, NULL, 0);
        check(ut_wait1(q, NULL) == -EINVAL);
        blkioq_write_zeroes(q, 0, 1000, NULL, 0);
        check(ut_wait1(q, NULL) == -EINVAL);
    } else {
        /* Through the page cache any alignment reads. */
        blkioq_read(q, 512, buf, 4096, NULL, 0);
        check(ut_wait1(q, NULL) == 0);
        check(memcmp(buf, pattern + 512, 4096) == 0);
    }
    blkioq_read(q, SIZE, buf, 4096, NULL, 0);
    check(ut_wait1(q, NULL) == -EINVAL);
    free(buf);
    blkio_destroy(&b);
}

/* A read-only device (blockdev --setro) opened for writing: -EROFS at
 * connect, naming the fix; libblkio 1.5 connects and fails every write
 * with -EPERM.  With read-only=true it reads. */
static void read_only_device(void)
{
    char cmd[128], buf[4096];
    struct blkio *b;
    struct blkioq *q;

    snprintf(cmd, sizeof(cmd), "blockdev --setro %s", loopdev);
    check(system(cmd) == 0);
    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", loopdev));
    err(blkio_connect(b), -EROFS);
    check(strstr(blkio_get_error_msg(), "read-only=true") != NULL);
    blkio_destroy(&b);

    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", loopdev));
    ok(blkio_set_bool(b, "read-only", true));
    ok(blkio_connect(b));
    ok(blkio_start(b));
    q = blkio_get_queue(b, 0);
    blkioq_read(q, 0, buf, sizeof(buf), NULL, 0);
    check(ut_wait1(q, NULL) == 0);
    blkio_destroy(&b);
    snprintf(cmd, sizeof(cmd), "blockdev --setrw %s", loopdev);
    check(system(cmd) == 0);
}

int main(void)
{
    const char *backing;
    char cmd[512];
    FILE *p;

    skip_if(geteuid() != 0, "loop devices need root");
    skip_if(system("command -v losetup >/dev/null 2>&1") != 0,
            "losetup is not installed");
    backing = ut_temp_file(SIZE);
    snprintf(cmd, sizeof(cmd),
             "losetup --sector-size 4096 -f --show %s 2>&1", backing);
    p = popen(cmd, "r");
    check(p != NULL);
    if (!fgets(loopdev, sizeof(loopdev), p))
        loopdev[0] = '\0';
    if (pclose(p) != 0 || strncmp(loopdev, "/dev/loop", 9) != 0) {
        printf("SKIP: cannot set up a loop device: %s\n", loopdev);
        loopdev[0] = '\0';
        return 77;
    }
    loopdev[strcspn(loopdev, "\n")] = '\0';
    atexit(detach);

    exercise(backing, false);
    exercise(backing, true);
    read_only_device();
    return 0;
}
