/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Placeholder: the virtio-blk-vhost-user driver is being written. */
#include "internal.h"

const struct blkio_driver blkio_driver_virtio_blk_vhost_user = {
    .name = "virtio-blk-vhost-user",
};
