/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: the completion ring cannot grow (malloc() fails for it).
 * The request that needed the room still completes, with -ENOMEM and a
 * message, and the requests before it complete as usual; before, the
 * ring filled up first and the next request vanished (never completed,
 * no message).  White-box: the ring's size comes from internal.h.
 * malloc() is replaced here to fail for the ring's next size; skipped
 * under ASan and valgrind, which replace malloc() themselves.
 */
#include <stdint.h>

#include "internal.h"
#include "util.h"
#include "fail-malloc.h"

int main(void)
{
    const char *path = ut_temp_file(1 << 20);
    static char buf[512];
    struct blkio_completion *c;
    struct blkio *b;
    struct blkioq *q;
    uint32_t cap;
    int n, nomem = 0;

    fail_malloc_skip_if_replaced();
    b = ut_start(path, false, false);
    q = blkio_get_queue(b, 0);
    cap = q->cring_mask + 1;
    c = calloc(cap, sizeof(*c));
    check(c != NULL);

    fail_malloc_size = 2 * (size_t)cap * sizeof(struct blkio_completion);
    for (uint32_t i = 0; i < cap; i++)
        blkioq_read(q, 0, buf, sizeof(buf), (void *)(uintptr_t)(i + 1), 0);
    fail_malloc_size = 0;
    n = blkioq_do_io(q, c, (int)cap, (int)cap, NULL);
    check(n == (int)cap);
    for (int i = 0; i < n; i++) {
        if (c[i].ret == -ENOMEM) {
            nomem++;
            check(c[i].user_data == (void *)(uintptr_t)cap);
            check(c[i].error_msg && strstr(c[i].error_msg, "memory"));
        } else {
            check(c[i].ret == 0);
        }
    }
    check(nomem == 1);

    /* With memory again, the ring grows as usual. */
    for (uint32_t i = 0; i < cap + 1; i++)
        blkioq_read(q, 0, buf, sizeof(buf), NULL, 0);
    free(c);
    c = calloc(cap + 1, sizeof(*c));
    check(c != NULL);
    n = blkioq_do_io(q, c, (int)cap + 1, (int)cap + 1, NULL);
    check(n == (int)cap + 1);
    for (int i = 0; i < n; i++)
        check(c[i].ret == 0);
    free(c);
    blkio_destroy(&b);
    return 0;
}
