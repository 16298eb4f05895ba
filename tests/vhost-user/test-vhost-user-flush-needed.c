/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * test-vhost-user-flush-needed - flush-needed is true on a
 * qemu-storage-daemon export (it offers VIRTIO_BLK_F_FLUSH), and the
 * answer is right: run by test-vhost-user-flush-needed.sh with the daemon
 * under strace, which checks that the two writes done here reach the
 * image without an fdatasync (they sit in the host's page cache, not
 * durable) and that the flush done here is what syncs them.  libblkio 1.5
 * says false here (docs/DIFFERENCES.md D10).
 */
#include <blkio.h>
#include <string.h>

#include "vu-util.h"

int main(void)
{
    struct blkio *b = vu_start(1, 0);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_mem_region r;
    uint8_t *buf = t_region(b, 1 << 16, &r);

    CHECK(t_get_bool(b, "flush-needed"));
    memset(buf, 0xa5, 8192);
    blkioq_write(q, 0, buf, 4096, NULL, 0);
    vu_wait_ok(q, 1);
    blkioq_write(q, 1 << 20, buf + 4096, 4096, NULL, 0);
    vu_wait_ok(q, 1);
    blkioq_flush(q, NULL, 0);
    vu_wait_ok(q, 1);
    t_region_free(b, &r);
    blkio_destroy(&b);
    return 0;
}
