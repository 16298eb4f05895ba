/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * blkio-info - print the properties of a libblkio device.
 *
 *   blkio-info DRIVER [PROPERTY=VALUE ...]
 *
 * Each PROPERTY=VALUE is set before blkio_connect() when the property
 * allows it (path, fd, direct, read-only, ...) and after it otherwise
 * (num-entries, num-queues, ...).  Then every property the driver knows is
 * printed as "name: value".  Uses only the public <blkio.h>, like any
 * outside program.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <blkio.h>

static const char *const info_props[] = {
    /* every driver */
    "driver", "read-only", "can-add-queues",
    "capacity", "max-queues", "num-queues", "num-poll-queues",
    "supports-poll-queues",
    "max-mem-regions", "may-pin-mem-regions", "mem-region-alignment",
    "needs-mem-regions", "needs-mem-region-fd",
    "optimal-io-alignment", "optimal-io-size", "request-alignment",
    "flush-needed",
    "buf-alignment", "can-grow", "max-segments", "max-segment-len",
    "max-transfer", "optimal-buf-alignment", "supports-fua-natively",
    "max-write-zeroes-len", "discard-alignment", "discard-alignment-offset",
    "max-discard-len",
    /* driver-specific */
    "path", "fd", "direct", "num-entries", "queue-size", "max-queue-size",
    "zoned", "max-active-zones", "max-open-zones", "zone-size", "nr-zones",
    "append-support", "zone-append-max-bytes",
};

/* Set one PROPERTY=VALUE argument; returns the libblkio result. */
static int info_set(struct blkio *b, char *arg)
{
    char *eq = strchr(arg, '=');
    int ret;

    if (!eq) {
        fprintf(stderr, "blkio-info: expected PROPERTY=VALUE, got '%s'\n",
                arg);
        return -EINVAL;
    }
    *eq = '\0';
    ret = blkio_set_str(b, arg, eq + 1);
    *eq = '=';
    return ret;
}

int main(int argc, char **argv)
{
    struct blkio *b;
    bool *deferred;
    int ret;

    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(stderr, "usage: blkio-info DRIVER [PROPERTY=VALUE ...]\n");
        return argc < 2 ? 2 : 0;
    }
    deferred = calloc((size_t)argc, sizeof(*deferred));
    if (!deferred)
        return 1;

    ret = blkio_create(argv[1], &b);
    if (ret < 0) {
        fprintf(stderr, "blkio-info: blkio_create: %s: %s\n", argv[1],
                blkio_get_error_msg());
        free(deferred);
        return 1;
    }

    /* Properties that can only be set once connected fail with -ENODEV
     * now: keep them for later. */
    for (int i = 2; i < argc; i++) {
        ret = info_set(b, argv[i]);
        if (ret == -ENODEV) {
            deferred[i] = true;
        } else if (ret < 0) {
            fprintf(stderr, "blkio-info: error setting property: %s: %s\n",
                    argv[i], blkio_get_error_msg());
            goto fail;
        }
    }

    ret = blkio_connect(b);
    if (ret < 0) {
        fprintf(stderr, "blkio-info: blkio_connect: %s\n",
                blkio_get_error_msg());
        goto fail;
    }
    for (int i = 2; i < argc; i++) {
        if (deferred[i] && info_set(b, argv[i]) < 0) {
            fprintf(stderr, "blkio-info: error setting property: %s: %s\n",
                    argv[i], blkio_get_error_msg());
            goto fail;
        }
    }

    for (size_t i = 0; i < sizeof(info_props) / sizeof(info_props[0]); i++) {
        char *value;

        /* -ENOENT: another driver's property. */
        if (blkio_get_str(b, info_props[i], &value) < 0)
            continue;
        printf("%s: %s\n", info_props[i], value);
        free(value);
    }

    blkio_destroy(&b);
    free(deferred);
    return 0;

fail:
    blkio_destroy(&b);
    free(deferred);
    return 1;
}
