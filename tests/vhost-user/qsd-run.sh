#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# qsd-run.sh - run one test program against a fresh qemu-storage-daemon
# vhost-user-blk export, then kill the daemon (also on failure).
#
#   qsd-run.sh [--format raw|qcow2] [--readonly] [--size SIZE]
#              [--queues N] -- PROGRAM [ARGS...]
#
# The program gets VU_SOCK (socket path), VU_PIDFILE, VU_IMG and VU_SIZE
# (bytes) in its environment.  Exit 77 (skip) when the daemon is missing.
set -e

format=raw
writable=on
size=64M
queues=4
while [ $# -gt 0 ]; do
    case "$1" in
    --format) format=$2; shift 2 ;;
    --readonly) writable=off; shift ;;
    --size) size=$2; shift 2 ;;
    --queues) queues=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
    esac
done

QSD=${QSD:-/usr/bin/qemu-storage-daemon}
if [ ! -x "$QSD" ]; then
    echo "$0: SKIP: $QSD not found (install qemu-system-common)"
    exit 77
fi
if ! command -v qemu-img >/dev/null; then
    echo "$0: SKIP: qemu-img not found (install qemu-utils)"
    exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/var/tmp}/vu-test.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

img=$dir/disk.$format
sock=$dir/vhost-user.sock
pidfile=$dir/qsd.pid
qemu-img create -q -f "$format" "$img" "$size"

if [ "$format" = raw ]; then
    blockdev="driver=file,node-name=disk,filename=$img"
else
    blockdev="driver=qcow2,node-name=disk,file.driver=file,file.filename=$img"
fi
"$QSD" --blockdev "$blockdev" \
    --export "type=vhost-user-blk,id=e,addr.type=unix,addr.path=$sock,node-name=disk,writable=$writable,num-queues=$queues" \
    --pidfile "$pidfile" >"$dir/qsd.log" 2>&1 &
pid=$!

# Wait for the socket (the daemon creates it when the export is ready).
for _ in $(seq 1 100); do
    [ -S "$sock" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "$0: qemu-storage-daemon exited early:" >&2
        cat "$dir/qsd.log" >&2
        exit 1
    fi
    sleep 0.05
done
if [ ! -S "$sock" ]; then
    echo "$0: qemu-storage-daemon did not create $sock" >&2
    exit 1
fi

export VU_SOCK=$sock VU_PIDFILE=$pidfile VU_IMG=$img VU_QSD_PID=$pid
VU_SIZE=$(qemu-img info -U --output=json "$img" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')
export VU_SIZE
export VU_FORMAT=$format
set +e
"$@"
rc=$?
set -e
if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -s "$dir/qsd.log" ]; then
    echo "--- qemu-storage-daemon log ---" >&2
    cat "$dir/qsd.log" >&2
fi
exit $rc
