#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# The vhost-user backend is killed (SIGKILL) in the middle of a stream of
# 256 KiB writes, 8 in flight (crash-writer.py): every request in flight
# completes within 5 s, every write acknowledged before is in the image
# file, and nbdkit goes idle and still exits when asked.
if [ -z "${VU_SOCK:-}" ]; then
    exec "$(dirname "$0")/../vhost-user/qsd-run.sh" --size 32M -- "$0" "$@"
fi
source "$(dirname "$0")/../plugin/functions.sh"
requires_driver virtio-blk-vhost-user
requires /usr/bin/python3 -c 'import nbd'
set -x

start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2
nbd_pid=$(cat "$pidfile")
timeout -k 5 60 /usr/bin/python3 "$(dirname "$0")/crash-writer.py" \
    "$(uri)" "$VU_IMG" "$VU_QSD_PID"
assert_idle "$nbd_pid"
assert_exits_on_term "$nbd_pid"
