/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* Placeholder: the nvme-io_uring driver is being written. */
#include "internal.h"

const struct blkio_driver blkio_driver_nvme_io_uring = {
    .name = "nvme-io_uring",
};
