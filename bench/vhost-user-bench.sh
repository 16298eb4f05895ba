#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# vhost-user-bench.sh - the virtio-blk-vhost-user driver against one
# qemu-storage-daemon export, in one run:
#   1. the library directly (blkio-bench): 4 KiB random reads at depth 16,
#      in blocking, event and poll mode (IOPS, latency, CPU per request);
#   2. over NBD with fio's nbd engine: nbdkit-blkio-plugin (on the same
#      vhost-user export) against nbdkit-file-plugin on the same file.
#
#   bench/vhost-user-bench.sh [BUILD_DIR]          (default: ./build)
#
# Environment: FILE (default /var/tmp/vu-bench.img), SIZE=256M, RUNTIME=5,
# RAMP=1, CACHE=none|writeback (qsd cache.direct; default none = O_DIRECT
# when the file system allows it), KEEP_FILE=0.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
bench=$build/bench/blkio-bench
plugin=$build/plugin/nbdkit-blkio-plugin.so
file=${FILE:-/var/tmp/vu-bench.img}
size=${SIZE:-256M}
runtime=${RUNTIME:-5}
ramp=${RAMP:-1}
qsd=${QSD:-/usr/bin/qemu-storage-daemon}
py=/usr/bin/python3

die() { echo "vhost-user-bench: $*" >&2; exit 1; }
[ -x "$bench" ] || die "$bench not built (ninja -C $build)"
[ -x "$qsd" ] || die "$qsd not installed"

tmp=$(mktemp -d /tmp/vu-bench.XXXXXX)
qsd_pid= nbd_pid=
cleanup() {
    [ -n "$nbd_pid" ] && { kill "$nbd_pid" 2>/dev/null; wait "$nbd_pid" 2>/dev/null; }
    [ -n "$qsd_pid" ] && { kill "$qsd_pid" 2>/dev/null; wait "$qsd_pid" 2>/dev/null; }
    [ "${KEEP_FILE:-0}" = 1 ] || rm -f "$file"
    rm -rf "$tmp"
}
trap cleanup EXIT

if [ ! -s "$file" ]; then
    echo "writing $size of data to $file ..."
    fio --name=fill --filename="$file" --size="$size" --rw=write --bs=1M \
        --ioengine=psync --refill_buffers --end_fsync=1 >/dev/null
fi
bytes=$(stat -c %s "$file")

direct=on
[ "${CACHE:-none}" = writeback ] && direct=off
if [ "$direct" = on ] && ! dd if="$file" of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; then
    echo "(O_DIRECT not supported on $(dirname "$file"): using the page cache)"
    direct=off
fi

sock=$tmp/vhost-user.sock
"$qsd" --blockdev "driver=file,node-name=disk,filename=$file,cache.direct=$direct" \
    --export "type=vhost-user-blk,id=e,addr.type=unix,addr.path=$sock,node-name=disk,writable=on,num-queues=4" \
    >"$tmp/qsd.log" 2>&1 &
qsd_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || die "qemu-storage-daemon did not start: $(cat "$tmp/qsd.log")"

echo "vhost-user-bench: $(nproc) CPUs, $file ($bytes bytes, cache.direct=$direct), ${runtime}s runs"
echo
echo "== library: randread bs=4k iodepth=16, 1 queue =="
for mode in blocking event poll; do
    extra=
    [ $mode = poll ] && extra=--poll
    "$bench" --driver virtio-blk-vhost-user --path "$sock" --rw randread \
        --bs 4k --iodepth 16 --runtime "$runtime" --ramp "$ramp" \
        --mode $mode $extra | sed "s/^/  [$mode] /"
done

if [ ! -f "$plugin" ]; then
    echo "(nbdkit-blkio-plugin not built: skipping the NBD comparison)"
    exit 0
fi
command -v nbdkit >/dev/null || { echo "(no nbdkit)"; exit 0; }
fio --enghelp 2>/dev/null | grep -qw nbd || { echo "(fio has no nbd engine)"; exit 0; }

nsock=$tmp/nbd.sock
start_nbdkit() {
    rm -f "$nsock"
    case $1 in
    blkio) nbdkit -U "$nsock" -f "$plugin" virtio-blk-vhost-user \
               path="$sock" num-queues=2 & ;;
    file)  nbdkit -U "$nsock" -f file file="$file" cache=none & ;;
    esac
    nbd_pid=$!
    for _ in $(seq 100); do [ -S "$nsock" ] && return 0; sleep 0.1; done
    die "nbdkit ($1) did not start"
}
stop_nbdkit() { kill "$nbd_pid"; wait "$nbd_pid" 2>/dev/null || true; nbd_pid=; }

run_fio() {
    start_nbdkit "$1"
    fio --name=randread --ioengine=nbd --uri="nbd+unix:///?socket=$nsock" \
        --rw=randread --bs=4k --iodepth=16 --size="$bytes" --time_based \
        --runtime="$runtime" --ramp_time="$ramp" --output-format=json \
        --output="$tmp/out.json" >/dev/null
    stop_nbdkit
    $py - "$tmp/out.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
r = j["read"]
cpu = (j["usr_cpu"] + j["sys_cpu"])
print(f'{r["iops"]:.0f} IOPS  lat mean {r["lat_ns"]["mean"]/1000:.1f} us  '
      f'(fio client cpu {cpu:.0f}%)')
PY
}

echo
echo "== NBD (fio nbd engine): randread bs=4k iodepth=16 =="
for s in blkio file file blkio; do
    printf '  %-6s %s\n' "$s" "$(run_fio $s)"
done
