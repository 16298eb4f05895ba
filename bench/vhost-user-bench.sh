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
# when the file system allows it), KEEP_FILE=0, ROUNDS=1 (NBD rounds),
# NQ (the plugin's num-queues; default: its own choice), LIB=0 (skip the
# library runs), QSD_QUEUES=4 (the export's num-queues), QSD_AIO (the
# backend's aio=threads|native|io_uring; default: QEMU's, threads).
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
"$qsd" --blockdev "driver=file,node-name=disk,filename=$file,cache.direct=$direct${QSD_AIO:+,aio=$QSD_AIO}" \
    --export "type=vhost-user-blk,id=e,addr.type=unix,addr.path=$sock,node-name=disk,writable=on,num-queues=${QSD_QUEUES:-4}" \
    >"$tmp/qsd.log" 2>&1 &
qsd_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
[ -S "$sock" ] || die "qemu-storage-daemon did not start: $(cat "$tmp/qsd.log")"

echo "vhost-user-bench: $(nproc) CPUs, $file ($bytes bytes, cache.direct=$direct${QSD_AIO:+, aio=$QSD_AIO}), ${runtime}s runs"
echo
echo "== library: randread bs=4k iodepth=16, 1 queue =="
[ "${LIB:-1}" = 0 ] && echo "  (skipped)"
for mode in blocking event poll; do
    [ "${LIB:-1}" = 0 ] && break
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
# blkio:  this plugin as it is meant to run (its own choice of num-queues
#         unless NQ is set);
# serial: the upstream design: one queue, one request at a time (nbdkit's
#         noparallel filter, serialize=requests);
# file:   nbdkit-file-plugin on the same backing file (the ceiling).
start_nbdkit() {
    rm -f "$nsock"
    case $1 in
    blkio) nbdkit -U "$nsock" -f "$plugin" virtio-blk-vhost-user \
               path="$sock" ${NQ:+num-queues=$NQ} & ;;
    serial) nbdkit -U "$nsock" -f --filter=noparallel "$plugin" \
               virtio-blk-vhost-user path="$sock" num-queues=1 \
               serialize=requests & ;;
    file)  nbdkit -U "$nsock" -f file file="$file" cache=none & ;;
    esac
    nbd_pid=$!
    for _ in $(seq 100); do [ -S "$nsock" ] && return 0; sleep 0.1; done
    die "nbdkit ($1) did not start"
}
stop_nbdkit() { kill "$nbd_pid"; wait "$nbd_pid" 2>/dev/null || true; nbd_pid=; }

# utime+stime of a process, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run_fio() {
    local t0 t1
    start_nbdkit "$1"
    t0=$(cpu_ticks "$nbd_pid")
    fio --name=randread --ioengine=nbd --uri="nbd+unix:///?socket=$nsock" \
        --rw=randread --bs=4k --iodepth=16 --size="$bytes" --time_based \
        --runtime="$runtime" --ramp_time="$ramp" --output-format=json \
        --output="$tmp/out.json" >/dev/null
    t1=$(cpu_ticks "$nbd_pid")
    stop_nbdkit
    $py - "$tmp/out.json" "$((t1 - t0))" "$(getconf CLK_TCK)" \
        "$((runtime + ramp))" "$1" >>"$tmp/results" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
ticks, hz, secs, name = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
r = j["read"]
cpu = (j["usr_cpu"] + j["sys_cpu"])
# nbdkit's CPU over the whole fio run (ramp included) per request.
reqs = r["iops"] * secs
us_per_req = ticks / hz * 1e6 / reqs if reqs else 0
print(f'{name} {r["iops"]:.0f} {r["lat_ns"]["mean"]/1000:.1f} {cpu:.0f} '
      f'{us_per_req:.1f}')
PY
    tail -1 "$tmp/results" | awk '{ printf "  %-6s %6d IOPS  lat mean %5.1f us  fio cpu %3d%%  nbdkit %4.1f us CPU/req\n", $1, $2, $3, $4, $5 }'
}

echo
echo "== NBD (fio nbd engine): randread bs=4k iodepth=16${NQ:+, blkio num-queues=$NQ} =="
: >"$tmp/results"
for _ in $(seq "${ROUNDS:-1}"); do
    for s in blkio serial file file serial blkio; do
        run_fio $s
    done
done
awk '{ n[$1]++; s[$1] += $2 }
     END {
       b = s["blkio"] / n["blkio"]; z = s["serial"] / n["serial"];
       f = s["file"] / n["file"];
       printf "  mean: blkio %.0f  serial %.0f  file %.0f IOPS\n", b, z, f;
       printf "RESULT ours/serialized %.2f  ours/file-plugin %.2f\n", b / z, b / f
     }' "$tmp/results"
