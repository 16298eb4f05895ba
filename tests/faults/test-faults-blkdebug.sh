#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# Errors injected into a real backend reach exactly the NBD requests that
# hit them: qemu-storage-daemon serves a vhost-user-blk export through a
# blkdebug node (qsd-blkdebug.sh, blkdebug-rules.json) that fails reads of
# sector 2048, writes of sector 4096 (ENOSPC), write-zeroes of sector
# 6144, discards of sector 8192 and the first flush.  Through nbdkit with
# the plugin, an NBD client (blkdebug-client.py) must get EIO for those
# requests (virtio-blk has one error status for every errno) and success
# with the right data for every other one, including requests next to the
# failing sectors; the server keeps serving other clients afterwards.
if [ -z "${VU_SOCK:-}" ]; then
    here=$(cd "$(dirname "$0")" && pwd)
    export QSD_REAL=${QSD:-/usr/bin/qemu-storage-daemon}
    export QSD=$here/qsd-blkdebug.sh
    exec "$here/../vhost-user/qsd-run.sh" --size 8M -- "$0" "$@"
fi
source "$(dirname "$0")/../plugin/functions.sh"
requires_driver virtio-blk-vhost-user
requires /usr/bin/python3 -c 'import nbd'
set -x

start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2

/usr/bin/python3 "$(dirname "$0")/blkdebug-client.py" "$(uri)"
