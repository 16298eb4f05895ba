/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * Instance life cycle: created -> connected -> started, and the table of
 * drivers.  The core checks the order of calls and the queue counts; the
 * driver does the device work at each step.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Functions of queue.c and mem-region.c used only by this file. */
int blkio_queues_create(struct blkio *b);
void blkio_queues_destroy(struct blkio *b);
void blkio_mem_regions_release(struct blkio *b);

static const struct blkio_driver *const blkio_drivers[] = {
    &blkio_driver_io_uring,
    &blkio_driver_nvme_io_uring,
    &blkio_driver_virtio_blk_vhost_user,
    &blkio_driver_virtio_blk_vhost_vdpa,
    &blkio_driver_virtio_blk_vfio_pci,
};

int blkio_create(const char *driver, struct blkio **bp)
{
    const struct blkio_driver *drv = NULL;
    struct blkio *b;
    int ret;

    if (!bp)
        return blkio_set_error(-EINVAL, "blkio_create: bp is NULL");
    *bp = NULL;
    if (!driver)
        return blkio_set_error(-EINVAL, "blkio_create: driver name is NULL");

    for (size_t i = 0; i < sizeof(blkio_drivers) / sizeof(blkio_drivers[0]);
         i++) {
        if (strcmp(blkio_drivers[i]->name, driver) == 0) {
            drv = blkio_drivers[i];
            break;
        }
    }
    if (!drv)
        return blkio_set_error(-ENOENT,
                               "unknown driver name '%s' (available: "
                               "io_uring, nvme-io_uring, "
                               "virtio-blk-vhost-user, "
                               "virtio-blk-vhost-vdpa, "
                               "virtio-blk-vfio-pci)", driver);
    if (!drv->connect)
        return blkio_set_error(-ENOSYS, "driver '%s' is not implemented yet",
                               driver);

    b = calloc(1, sizeof(*b));
    if (!b)
        return blkio_set_error(-ENOMEM, "blkio_create: out of memory");
    b->drv = drv;
    b->state = BLKIO_STATE_CREATED;
    b->driver_name = strdup(driver);
    if (!b->driver_name) {
        free(b);
        return blkio_set_error(-ENOMEM, "blkio_create: out of memory");
    }
    b->fd = -1;
    b->num_queues = 1;
    b->request_alignment = 1;
    b->buf_alignment = 1;
    b->optimal_buf_alignment = 1;
    b->optimal_io_alignment = 1;
    b->mem_region_alignment = 1;
    b->max_queues = 1;

    if (drv->create) {
        ret = drv->create(b);
        if (ret < 0) {
            free(b->driver_name);
            free(b);
            return ret;
        }
    }
    *bp = b;
    return 0;
}

static bool blkio_is_pow2(int v)
{
    return v > 0 && (v & (v - 1)) == 0;
}

int blkio_connect(struct blkio *b)
{
    int ret;

    if (!b)
        return blkio_set_error(-EINVAL, "blkio_connect: instance is NULL");
    /* Like libblkio: connecting a connected instance does nothing; a
     * started one can no longer be connected. */
    if (b->state == BLKIO_STATE_CONNECTED)
        return 0;
    if (b->state == BLKIO_STATE_STARTED)
        return blkio_set_error(-EBUSY, "blkio_connect: already started");

    ret = b->drv->connect(b);
    if (ret < 0)
        return ret;

    /* The request path masks with these instead of dividing. */
    if (!blkio_is_pow2(b->request_alignment) ||
        !blkio_is_pow2(b->buf_alignment)) {
        int bad_req = !blkio_is_pow2(b->request_alignment);

        /* A driver bug: the device is open, so stay connected (destroy
         * releases it) but refuse to go on. */
        b->state = BLKIO_STATE_CONNECTED;
        b->num_queues = 0;
        b->max_queues = 0;
        return blkio_set_error(-EIO, "driver '%s' reported %s %d, which is "
                               "not a power of two", b->driver_name,
                               bad_req ? "request-alignment" :
                                         "buf-alignment",
                               bad_req ? b->request_alignment :
                                         b->buf_alignment);
    }
    b->state = BLKIO_STATE_CONNECTED;
    return 0;
}

int blkio_start(struct blkio *b)
{
    int ret;

    if (!b)
        return blkio_set_error(-EINVAL, "blkio_start: instance is NULL");
    if (b->state == BLKIO_STATE_CREATED)
        return blkio_set_error(-ENODEV,
                               "blkio_start: call blkio_connect() first");
    if (b->state == BLKIO_STATE_STARTED)
        return 0;       /* like libblkio: starting again does nothing */

    if (b->num_poll_queues > 0 && !b->supports_poll_queues)
        return blkio_set_error(-EINVAL,
                               "num-poll-queues is %d but driver '%s' does "
                               "not support poll queues here "
                               "(supports-poll-queues is false)",
                               b->num_poll_queues, b->driver_name);
    if (b->num_queues + b->num_poll_queues == 0 && !b->can_add_queues)
        return blkio_set_error(-EINVAL,
                               "num-queues and num-poll-queues are both 0: "
                               "at least one queue is needed");
    if ((int64_t)b->num_queues + b->num_poll_queues > b->max_queues)
        return blkio_set_error(-EINVAL,
                               "num-queues (%d) + num-poll-queues (%d) "
                               "exceeds max-queues (%d)",
                               b->num_queues, b->num_poll_queues,
                               b->max_queues);

    if (b->drv->start) {
        ret = b->drv->start(b);
        if (ret < 0)
            return ret;
    }

    /* Mark started first: queue creation may rely on started-state
     * services such as memory region allocation. */
    b->state = BLKIO_STATE_STARTED;
    ret = blkio_queues_create(b);
    if (ret < 0) {
        char why[512];

        /* Say which setting asked for the queue that could not be had. */
        snprintf(why, sizeof(why), "%s", blkio_get_error_msg());
        /* Tear down first: the message set last is the one kept. */
        blkio_queues_destroy(b);
        b->state = BLKIO_STATE_CONNECTED;
        blkio_set_error(ret, "creating num-queues=%d and num-poll-queues=%d "
                        "queues: %s", b->num_queues, b->num_poll_queues, why);
        return ret;
    }
    return 0;
}

void blkio_destroy(struct blkio **bp)
{
    struct blkio *b;

    if (!bp || !*bp)
        return;
    b = *bp;

    b->destroying = true;
    blkio_queues_destroy(b);
    blkio_mem_regions_release(b);
    if (b->drv->destroy)
        b->drv->destroy(b);
    free(b->path);
    free(b->driver_name);
    free(b);
    *bp = NULL;
}
