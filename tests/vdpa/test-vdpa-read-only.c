/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Description: read-only virtio-blk-vhost-vdpa instances.  On a writable
 * device, read-only=true refuses every writing request with -EBADF
 * (nothing reaches the image) while reads and flushes work.  On a
 * read-only export (VIRTIO_BLK_F_RO), blkio_start() refuses a writable
 * instance with -EROFS and a read-only one reads the image's data.
 * Usage: test-vdpa-read-only.
 */
#include <sys/uio.h>

#include "vdpa-util.h"

#define VT_SIZE  (16ull << 20)
#define VT_LEN   (256 * 1024)

static void test_read_only_instance(const char *dev)
{
    struct blkio *b = vt_open(dev, true, 1, 0);
    struct blkioq *q = blkio_get_queue(b, 0);
    struct blkio_mem_region r;
    uint8_t *buf = t_region(b, VT_LEN, &r);
    uint8_t *img = malloc(VT_LEN);
    struct iovec iov = { buf, 4096 };
    const char *msg;

    CHECK(q && img);
    CHECK(t_get_bool(b, "read-only"));
    t_fill_pattern(buf, VT_LEN, 0, 1);
    blkioq_write(q, 0, buf, VT_LEN, NULL, 0);
    CHECK_RET(t_wait(q, &msg), -EBADF);
    CHECK(msg != NULL);
    blkioq_write(q, 0, buf, 4096, NULL, BLKIO_REQ_FUA);
    CHECK_RET(t_wait(q, NULL), -EBADF);
    blkioq_writev(q, 4096, &iov, 1, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EBADF);
    blkioq_write_zeroes(q, 0, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EBADF);
    blkioq_discard(q, 0, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EBADF);

    blkioq_flush(q, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    memset(buf, 0xee, VT_LEN);
    blkioq_read(q, 0, buf, VT_LEN, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    CHECK(t_is_zero(buf, VT_LEN));     /* the fresh image */
    vt_read_image(img, VT_LEN, 0);
    CHECK(t_is_zero(img, VT_LEN));
    free(img);
    blkio_destroy(&b);
}

/* ---- a read-only export, made here (vdpa-setup.sh exports writable) ---- */

#define VT_RO_NAME "vduse-ro"
static char vt_ro_image[64];
static bool vt_ro_started;

static void vt_ro_stop(void)
{
    char cmd[512];

    if (!vt_ro_started)
        return;
    vt_ro_started = false;
    vt_close_fds();
    snprintf(cmd, sizeof(cmd),
             "vdpa dev del " VT_RO_NAME " 2>/dev/null; "
             "p=$(cat /run/test-vdpa-ro.pid 2>/dev/null) && kill $p && "
             "while kill -0 $p 2>/dev/null; do sleep 0.1; done; "
             "rm -f /run/test-vdpa-ro.pid '%s'", vt_ro_image);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: stopping the read-only export failed\n");
}

static const char *vt_ro_start(void)
{
    static char dev[128];
    char cmd[1024];
    uint8_t *data = malloc(VT_LEN);
    FILE *p;
    int fd;

    CHECK(data);
    snprintf(vt_ro_image, sizeof(vt_ro_image), "/run/test-vdpa-ro-%d.img",
             (int)getpid());
    fd = open(vt_ro_image, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    CHECK(ftruncate(fd, (off_t)VT_SIZE) == 0);
    t_fill_pattern(data, VT_LEN, 0, 99);
    CHECK(pwrite(fd, data, VT_LEN, 0) == VT_LEN);
    close(fd);
    free(data);

    snprintf(cmd, sizeof(cmd),
             "set -e; qemu-storage-daemon "
             "--blockdev driver=file,node-name=n0,filename=%s,read-only=on "
             "--export type=vduse-blk,id=e0,node-name=n0,name=" VT_RO_NAME
             ",writable=off,num-queues=1 "
             "--daemonize --pidfile /run/test-vdpa-ro.pid >&2; "
             "vdpa dev add name " VT_RO_NAME " mgmtdev vduse >&2; "
             "for i in $(seq 50); do "
             "for v in /sys/bus/vdpa/devices/" VT_RO_NAME "/vhost-vdpa-*; do "
             "[ -c /dev/$(basename $v) ] && echo /dev/$(basename $v) && "
             "exit 0; done; sleep 0.1; done; exit 1", vt_ro_image);
    vt_ro_started = true;
    atexit(vt_ro_stop);
    fflush(stdout);
    p = popen(cmd, "r");
    CHECK(p);
    if (!fgets(dev, sizeof(dev), p))
        dev[0] = '\0';
    if (pclose(p) != 0)
        T_FAIL("could not make a read-only vduse-blk export");
    dev[strcspn(dev, "\n")] = '\0';
    return dev;
}

static void test_read_only_device(void)
{
    const char *dev = vt_ro_start();
    struct blkio *b = NULL;
    struct blkio_mem_region r;
    struct blkioq *q;
    uint8_t *buf, *want = malloc(VT_LEN);

    CHECK(want);
    printf("read-only export: %s\n", dev);
    CHECK_RET(blkio_create(VT_DRIVER, &b), 0);
    CHECK_RET(blkio_set_str(b, "path", dev), 0);
    CHECK_RET(blkio_connect(b), 0);
    CHECK_EQ(t_get_u64(b, "capacity"), VT_SIZE);
    CHECK_EQ(t_get_int(b, "max-queues"), 1);
    CHECK_RET(blkio_start(b), -EROFS);
    CHECK(strstr(blkio_get_error_msg(), "read-only"));
    blkio_destroy(&b);

    b = vt_open(dev, true, 1, 0);
    q = blkio_get_queue(b, 0);
    buf = t_region(b, VT_LEN, &r);
    blkioq_read(q, 0, buf, VT_LEN, NULL, 0);
    CHECK_RET(t_wait(q, NULL), 0);
    t_fill_pattern(want, VT_LEN, 0, 99);
    if (memcmp(buf, want, VT_LEN) != 0)
        T_FAIL("read from the read-only export differs from its image");
    blkioq_write(q, 0, buf, 4096, NULL, 0);
    CHECK_RET(t_wait(q, NULL), -EBADF);
    blkio_destroy(&b);
    free(want);
}

int main(void)
{
    const char *dev = vt_start(VT_SIZE);

    test_read_only_instance(dev);
    printf("read-only instance on a writable device: ok\n");
    /* One vDPA device at a time keeps the names predictable. */
    vt_stop();
    test_read_only_device();
    printf("read-only device: ok\n");
    return 0;
}
