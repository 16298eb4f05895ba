/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * The virtio device status handshake, for every transport (virtio.h).
 *
 * The device is untrusted: every status bit we set is read back, and a
 * device that drops it (FEATURES_OK for features it does not like) or
 * sets FAILED is refused with the status it reported.  A reset waits
 * until the device reads back 0, with a deadline.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <linux/virtio_config.h>

#include "internal.h"
#include "virtio.h"

#define VIRTIO_RESET_TIMEOUT_MS 1000

/* Status bits by name, for messages. */
static const struct {
    uint8_t bit;
    const char *name;
} virtio_status_names[] = {
    { VIRTIO_CONFIG_S_ACKNOWLEDGE, "ACKNOWLEDGE" },
    { VIRTIO_CONFIG_S_DRIVER, "DRIVER" },
    { VIRTIO_CONFIG_S_FEATURES_OK, "FEATURES_OK" },
    { VIRTIO_CONFIG_S_DRIVER_OK, "DRIVER_OK" },
    { VIRTIO_CONFIG_S_NEEDS_RESET, "DEVICE_NEEDS_RESET" },
    { VIRTIO_CONFIG_S_FAILED, "FAILED" },
};

static const char *virtio_status_name(uint8_t bit)
{
    for (size_t i = 0; i < sizeof(virtio_status_names) /
                           sizeof(virtio_status_names[0]); i++)
        if (virtio_status_names[i].bit == bit)
            return virtio_status_names[i].name;
    return "?";
}

/* Set one status bit and check that the device kept it. */
static int virtio_add_status(struct virtio_dev *d, uint8_t bit)
{
    uint8_t status;
    int ret = d->ops->get_status(d->t, &status);

    if (ret == 0)
        ret = d->ops->set_status(d->t, status | bit);
    if (ret == 0)
        ret = d->ops->get_status(d->t, &status);
    if (ret < 0)
        return ret;
    if ((status & bit) != bit || (status & VIRTIO_CONFIG_S_FAILED))
        return blkio_set_error(-EIO, "%s: virtio device did not accept %s "
                               "(status 0x%02x after setting 0x%02x)",
                               d->ops->name, virtio_status_name(bit), status,
                               bit);
    return 0;
}

static long virtio_ms_since(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 +
           (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Write 0 and wait until the device reads back 0 (reset complete). */
static int virtio_reset(struct virtio_dev *d)
{
    struct timespec start, nap = { 0, 100 * 1000 };
    uint8_t status;
    int ret;

    d->driver_ok = false;
    d->nset = d->nlive = 0;
    d->dirty = false;
    ret = d->ops->set_status(d->t, 0);
    if (ret < 0)
        return ret;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        ret = d->ops->get_status(d->t, &status);
        if (ret < 0 || status == 0)
            return ret;
        if (virtio_ms_since(&start) > VIRTIO_RESET_TIMEOUT_MS)
            return blkio_set_error(-ETIMEDOUT, "%s: virtio device did not "
                                   "complete reset within %d ms (status "
                                   "0x%02x)", d->ops->name,
                                   VIRTIO_RESET_TIMEOUT_MS, status);
        nanosleep(&nap, NULL);
    }
}

/* Reset, ACKNOWLEDGE, DRIVER: the start of every initialization. */
static int virtio_begin_init(struct virtio_dev *d)
{
    int ret = virtio_reset(d);

    if (ret == 0)
        ret = virtio_add_status(d, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    if (ret == 0)
        ret = virtio_add_status(d, VIRTIO_CONFIG_S_DRIVER);
    return ret;
}

static int virtio_features_ok(struct virtio_dev *d)
{
    int ret = d->ops->set_features(d->t, d->features);
    return ret < 0 ? ret : virtio_add_status(d, VIRTIO_CONFIG_S_FEATURES_OK);
}

int virtio_dev_negotiate(struct virtio_dev *d, uint64_t wanted)
{
    uint64_t offered;
    int ret = virtio_begin_init(d);

    if (ret == 0)
        ret = d->ops->get_features(d->t, &offered);
    if (ret < 0)
        return ret;
    if (!(offered & (1ull << VIRTIO_F_VERSION_1)))
        return blkio_set_error(-ENOTSUP, "%s: virtio device does not offer "
                               "VIRTIO_F_VERSION_1 (features 0x%llx); legacy "
                               "devices are not supported", d->ops->name,
                               (unsigned long long)offered);
    d->features = offered & (wanted | d->ops->transport_features |
                             (1ull << VIRTIO_F_VERSION_1));
    return virtio_features_ok(d);
}

int virtio_dev_begin_start(struct virtio_dev *d, unsigned nvqs)
{
    if (d->dirty || d->driver_ok || d->nset) {
        int ret = virtio_begin_init(d);

        if (ret == 0)
            ret = virtio_features_ok(d);
        if (ret < 0)
            return ret;
    }
    d->nvqs = nvqs;
    d->nset = d->nlive = 0;
    return 0;
}

int virtio_dev_setup_queue(struct virtio_dev *d,
                           const struct virtio_vq_info *info)
{
    int ret;

    if (d->driver_ok)
        return blkio_set_error(-EBUSY, "%s: virtqueue %u set up after "
                               "DRIVER_OK", d->ops->name, info->index);
    /* Whatever happens next, the device must be reset before reuse. */
    d->dirty = true;
    ret = d->ops->setup_queue(d->t, info);
    if (ret < 0)
        return ret;
    d->nlive++;
    if (++d->nset == d->nvqs) {
        /* Every queue is in place: the device may start. */
        ret = virtio_add_status(d, VIRTIO_CONFIG_S_DRIVER_OK);
        if (ret < 0) {
            /* The caller frees this queue without stopping it: stop it
             * here, so that the count of live queues reaches 0 and the
             * device is reset when the others go. */
            virtio_dev_stop_queue(d, info->index);
            d->nset--;
            return ret;
        }
        d->driver_ok = true;
    }
    return 0;
}

void virtio_quiet_begin(struct virtio_quiet *q)
{
    snprintf(q->msg, sizeof(q->msg), "%s", blkio_get_error_msg());
}

void virtio_quiet_end(const struct virtio_quiet *q)
{
    blkio_set_error(0, "%s", q->msg);
}

void virtio_dev_reset_quiet(struct virtio_dev *d)
{
    struct virtio_quiet q;

    virtio_quiet_begin(&q);
    virtio_reset(d);
    d->dirty = true;        /* a failed reset must be retried */
    virtio_quiet_end(&q);
}

void virtio_dev_stop_queue(struct virtio_dev *d, unsigned index)
{
    struct virtio_quiet q;

    virtio_quiet_begin(&q);
    d->ops->stop_queue(d->t, index);
    if (d->nlive > 0 && --d->nlive == 0) {
        /* No queue left: stop all device DMA before the memory goes. */
        virtio_reset(d);
        d->dirty = true;
    }
    virtio_quiet_end(&q);
}

int virtio_kickfds_get(struct virtio_kickfds *k, unsigned index)
{
    if (index >= k->n) {
        unsigned n = index + 1;
        int *nk = realloc(k->fds, n * sizeof(*nk));

        if (!nk)
            return blkio_set_error(-ENOMEM, "out of memory for kick fds");
        for (unsigned i = k->n; i < n; i++)
            nk[i] = -1;
        k->fds = nk;
        k->n = n;
    }
    if (k->fds[index] < 0) {
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

        if (fd < 0)
            return blkio_set_error(-errno, "eventfd for kicking virtqueue "
                                   "%u: %m", index);
        k->fds[index] = fd;
    }
    return k->fds[index];
}

void virtio_kickfds_close(struct virtio_kickfds *k)
{
    for (unsigned i = 0; i < k->n; i++)
        if (k->fds[i] >= 0)
            close(k->fds[i]);
    free(k->fds);
    k->fds = NULL;
    k->n = 0;
}
