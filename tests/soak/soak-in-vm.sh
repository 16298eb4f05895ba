#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# soak-in-vm.sh - a small soak of the test VM's drivers, to run by hand
# (not in the meson list: ~3 minutes under TCG; see docs/RELIABILITY.md):
#
#   tests/vm/run-in-vm.sh --nvme-size 256M --test-timeout 300 \
#       --env PLUGIN=$PWD/build/plugin/nbdkit-blkio-plugin.so \
#       --cwd $PWD/build -- tests/soak/soak-in-vm.sh
#
# 4 fio + 4 mixed connections for 5 + 10 s, then 16 connections at once
# twice, on nvme-io_uring ($BLKIO_VM_NVME) and on virtio-blk-vhost-vdpa
# (a VDUSE export; the burst clients do not hang up there:
# qemu-storage-daemon 7.2's vduse-blk export dies when a client leaves
# with requests in flight).  SOAK_SECONDS= etc. as for soak.sh.
here=$(cd "$(dirname "$0")" && pwd)
export SOAK_SECONDS=${SOAK_SECONDS:-10} SOAK_WARMUP=${SOAK_WARMUP:-5}
export SOAK_FIO=${SOAK_FIO:-4} SOAK_MIXED=${SOAK_MIXED:-4}
export SOAK_BURST=${SOAK_BURST:-16}
rc=0
"$here/soak.sh" nvme-io_uring || rc=1
SOAK_HANGUP=0 "$here/soak.sh" virtio-blk-vhost-vdpa || rc=1
exit $rc
