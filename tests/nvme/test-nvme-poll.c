/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: nvme-io_uring poll queues (IORING_SETUP_IOPOLL with
 * uring_cmd): supports-poll-queues follows the kernel's NVMe poll queues,
 * and I/O on a poll queue completes with the right data, also with many
 * requests in flight and with a do_io timeout.
 *
 * The kernel only polls NVMe when the driver was given poll queues
 * (nvme.poll_queues).  Inside the test VM only (BLKIO_VM=1), this test
 * gives it one by writing the module parameter and re-binding the
 * controller (run it last: device names may change); elsewhere it skips when there are none.
 * Usage: test-nvme-poll [/dev/ngXnY] (default $BLKIO_VM_NVME).
 */
#include <time.h>

#include "nvme-util.h"

static bool nt_write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    bool ok;

    if (!f)
        return false;
    ok = fputs(s, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* Give the nvme driver one poll queue and re-probe the controller so that
 * it sets the queue up (a reset keeps the tag set it was probed with);
 * wait for the namespace to come back. */
static void nt_enable_poll_queues(const char *dev)
{
    char blk[64], path[128], target[256];
    const char *bdf;
    unsigned c, n;
    ssize_t len;

    nt_block_name(dev, blk, sizeof(blk));
    if (nt_sysfs_num(blk, "queue/io_poll") == 1)
        return;
    if (!getenv("BLKIO_VM"))
        t_skip("%s has no NVMe poll queues (nvme.poll_queues=0) and this "
               "is not the test VM", dev);
    if (sscanf(blk, "nvme%un%u", &c, &n) != 2)
        T_FAIL("cannot parse %s", blk);
    snprintf(path, sizeof(path), "/sys/class/nvme/nvme%u/device", c);
    len = readlink(path, target, sizeof(target) - 1);
    if (len < 0)
        t_skip("readlink %s: %s", path, strerror(errno));
    target[len] = '\0';
    bdf = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
    if (!nt_write_file("/sys/module/nvme/parameters/poll_queues", "1"))
        t_skip("cannot set nvme poll_queues: %s", strerror(errno));
    if (!nt_write_file("/sys/bus/pci/drivers/nvme/unbind", bdf))
        T_FAIL("unbind %s from nvme: %s", bdf, strerror(errno));
    if (!nt_write_file("/sys/bus/pci/drivers/nvme/bind", bdf))
        T_FAIL("bind %s to nvme: %s", bdf, strerror(errno));
    for (int i = 0; i < 200; i++) {
        struct timespec t = { .tv_nsec = 50 * 1000 * 1000 };
        if (nt_sysfs_num(blk, "queue/io_poll") == 1 &&
            access(dev, R_OK | W_OK) == 0)
            return;
        nanosleep(&t, NULL);
    }
    t_skip("%s still has no poll queues after re-probing %s", dev, bdf);
}

int main(int argc, char **argv)
{
    const char *dev = nt_device(argc, argv, "BLKIO_VM_NVME", "/dev/ng0n1");
    enum { DEPTH = 32, LEN = 16384 };
    struct blkio *b;
    struct blkioq *q;
    struct blkio_completion c[DEPTH];
    struct timespec t;
    uint8_t *buf;
    int n, got;

    if (geteuid() != 0)
        t_skip("nvme-io_uring needs CAP_SYS_ADMIN (run as root)");
    nt_enable_poll_queues(dev);

    CHECK_RET(blkio_create("nvme-io_uring", &b), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK(t_get_bool(b, "supports-poll-queues"));
    CHECK_RET(blkio_set_int(b, "num-queues", 0), 0);
    CHECK_RET(blkio_set_int(b, "num-poll-queues", 1), 0);
    CHECK_RET(blkio_start(b), 0);
    q = blkio_get_poll_queue(b, 0);
    CHECK(q && blkioq_get_completion_fd(q) == -1);
    buf = nt_alloc((size_t)DEPTH * LEN);

    /* DEPTH writes in flight, then DEPTH reads, verify */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < DEPTH; i++) {
            uint64_t off = (uint64_t)i * LEN + (8 << 20);
            uint8_t *p = buf + (size_t)i * LEN;

            if (pass == 0) {
                t_fill_pattern(p, LEN, off, 11);
                blkioq_write(q, off, p, LEN, NULL, 0);
            } else {
                memset(p, 0, LEN);
                blkioq_read(q, off, p, LEN, NULL, 0);
            }
        }
        for (got = 0; got < DEPTH; got += n) {
            n = blkioq_do_io(q, c, 1, DEPTH, NULL);
            CHECK(n >= 1);
            for (int i = 0; i < n; i++)
                if (c[i].ret != 0)
                    T_FAIL("poll queue request: ret %d (%s)", c[i].ret,
                           c[i].error_msg);
        }
    }
    for (int i = 0; i < DEPTH; i++)
        CHECK(t_verify_pattern(buf + (size_t)i * LEN, LEN,
                               (uint64_t)i * LEN + (8 << 20), 11));

    /* with a timeout, and a flush */
    t = (struct timespec){ .tv_sec = 10 };
    blkioq_flush(q, NULL, 0);
    CHECK_RET(blkioq_do_io(q, c, 1, 1, &t), 1);
    CHECK_RET(c[0].ret, 0);
    /* nothing in flight, min 0: returns at once */
    t = (struct timespec){ .tv_nsec = 1000 };
    CHECK_RET(blkioq_do_io(q, c, 0, 1, &t), 0);

    free(buf);
    blkio_destroy(&b);
    printf("poll queue I/O on %s passed\n", dev);
    return 0;
}
