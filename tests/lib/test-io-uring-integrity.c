/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: data integrity with many requests in flight on several
 * queues.  Each of 4 queues writes 256 random blocks of its own quarter of
 * a 16 MiB file in one go (num-entries 32, so most requests wait in the
 * driver's backlog), reads them back the same way, and compares; the file
 * is also checked through the file system.
 */
#include "util.h"

#define NQUEUES  4
#define NREQS    256
#define FILESIZE (16u << 20)
#define AREA     (FILESIZE / NQUEUES)
#define BLOCK    (AREA / NREQS)          /* 16 KiB */

int main(void)
{
    const char *path = ut_temp_file(FILESIZE);
    unsigned char *wbuf = malloc(FILESIZE);
    unsigned char *rbuf = calloc(1, FILESIZE);
    unsigned char *fbuf = malloc(FILESIZE);
    struct blkio_completion *c = calloc(NREQS, sizeof(*c));
    struct blkio *b;
    struct blkioq *q[NQUEUES];

    check(wbuf && rbuf && fbuf && c);
    t_fill_random(wbuf, FILESIZE, 42);

    ok(blkio_create("io_uring", &b));
    ok(blkio_set_str(b, "path", path));
    ok(blkio_connect(b));
    ok(blkio_set_int(b, "num-queues", NQUEUES));
    ok(blkio_set_int(b, "num-entries", 32));
    ok(blkio_start(b));
    for (int i = 0; i < NQUEUES; i++)
        check((q[i] = blkio_get_queue(b, i)) != NULL);

    for (int pass = 0; pass < 2; pass++) {
        bool write = pass == 0;

        /* Queue everything on every queue first, in a shuffled order of
         * blocks, then reap: all 1024 requests are in flight at once. */
        for (int i = 0; i < NQUEUES; i++) {
            uint64_t s = 7 + (uint64_t)i;
            int order[NREQS];

            for (int k = 0; k < NREQS; k++)
                order[k] = k;
            for (int k = NREQS - 1; k > 0; k--) {
                int j = (int)(t_rand(&s) % (uint64_t)(k + 1));
                int t = order[k];
                order[k] = order[j];
                order[j] = t;
            }
            for (int k = 0; k < NREQS; k++) {
                uint64_t off = (uint64_t)i * AREA +
                               (uint64_t)order[k] * BLOCK;
                void *ud = (void *)(uintptr_t)(off + 1);

                if (write)
                    blkioq_write(q[i], off, wbuf + off, BLOCK, ud, 0);
                else
                    blkioq_read(q[i], off, rbuf + off, BLOCK, ud, 0);
            }
        }
        for (int i = 0; i < NQUEUES; i++) {
            int got = 0;

            while (got < NREQS) {
                int n = (int)ok(blkioq_do_io(q[i], c, 1, NREQS, NULL));

                for (int k = 0; k < n; k++) {
                    uintptr_t ud = (uintptr_t)c[k].user_data;

                    check(c[k].ret == 0);
                    check(ud >= 1 + (uintptr_t)i * AREA &&
                          ud < 1 + (uintptr_t)(i + 1) * AREA);
                    check((ud - 1) % BLOCK == 0);
                }
                got += n;
            }
            /* Nothing more may come. */
            check(ok(blkioq_do_io(q[i], c, 0, NREQS, NULL)) == 0);
        }
    }

    check(memcmp(wbuf, rbuf, FILESIZE) == 0);
    ut_pread_file(path, fbuf, FILESIZE, 0);
    check(memcmp(wbuf, fbuf, FILESIZE) == 0);

    blkio_destroy(&b);
    check(b == NULL);
    free(wbuf);
    free(rbuf);
    free(fbuf);
    free(c);
    return 0;
}
