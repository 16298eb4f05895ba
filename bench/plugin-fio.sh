#!/bin/bash
# plugin-fio.sh - nbdkit-blkio-plugin (io_uring driver) against
# nbdkit-file-plugin on the same file in the same run, with fio's nbd
# engine over a Unix socket; the nbdkit null plugin gives the ceiling of
# the NBD transport itself.
#
#   bench/plugin-fio.sh [BUILD_DIR]             (default: ./build)
#
# Environment:
#   FILE=/var/tmp/blkio-plugin-bench.img   test file, written once with data
#   SIZE=1G          its size
#   RUNTIME=5        measured seconds per run (after RAMP unmeasured)
#   RAMP=1
#   NBDKIT=nbdkit    the server
#   PLUGIN_ARGS=     extra parameters for our plugin (eg. num-queues=2)
#   KEEP_FILE=0      1: keep the test file for the next run
#
# Workloads: 4 KiB random reads at queue depth 16, and 1 MiB sequential
# reads at queue depth 8.  Servers run in the order blkio, file, null,
# null, file, blkio so that drift on a shared machine hits all equally.
# Prints IOPS and MiB/s per run, the means, and the ratios.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
plugin=$build/plugin/nbdkit-blkio-plugin.so
file=${FILE:-/var/tmp/blkio-plugin-bench.img}
size=${SIZE:-1G}
runtime=${RUNTIME:-5}
ramp=${RAMP:-1}
nbdkit=${NBDKIT:-nbdkit}
py=/usr/bin/python3

die() { echo "plugin-fio: $*" >&2; exit 1; }

[ -f "$plugin" ] || die "$plugin not built (run ninja -C $build)"
command -v fio >/dev/null || die "fio not installed"
fio --enghelp 2>/dev/null | grep -qw nbd || die "this fio has no nbd engine"
command -v "$nbdkit" >/dev/null || die "nbdkit not installed"

tmp=$(mktemp -d /tmp/plugin-fio.XXXXXX)
sock=$tmp/nbd.sock
pidfile=$tmp/nbdkit.pid
server_pid=

stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
cleanup() {
    stop_server
    rm -rf "$tmp"
    if [ "${KEEP_FILE:-0}" != 1 ]; then
        rm -f "$file"
    fi
}
trap cleanup EXIT

if [ ! -s "$file" ]; then
    echo "writing $size of data to $file ..."
    fio --name=fill --filename="$file" --size="$size" --rw=write --bs=1M \
        --ioengine=psync --refill_buffers --end_fsync=1 >/dev/null
fi
bytes=$(stat -c %s "$file")
# Page the file in before the first (blkio) run, so that it does not pay
# for a cold cache alone.
cat "$file" >/dev/null

start_server() {
    rm -f "$sock" "$pidfile"
    case $1 in
    blkio) "$nbdkit" -U "$sock" -P "$pidfile" -f "$plugin" \
               io_uring path="$file" ${PLUGIN_ARGS:-} & ;;
    file)  "$nbdkit" -U "$sock" -P "$pidfile" -f file file="$file" & ;;
    null)  "$nbdkit" -U "$sock" -P "$pidfile" -f null size="$bytes" & ;;
    esac
    server_pid=$!
    for _ in $(seq 100); do
        [ -S "$sock" ] && [ -s "$pidfile" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || die "nbdkit ($1) did not start"
        sleep 0.1
    done
    die "nbdkit ($1) did not start in 10 s"
}

# run_fio SERVER NAME RW BS DEPTH -> "iops mibs"
run_fio() {
    start_server "$1"
    fio --name="$2" --ioengine=nbd --uri="nbd+unix:///?socket=$sock" \
        --rw="$3" --bs="$4" --iodepth="$5" --size="$bytes" \
        --time_based --runtime="$runtime" --ramp_time="$ramp" \
        --output-format=json --output="$tmp/out.json" >/dev/null
    stop_server
    $py - "$tmp/out.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["read"]
print(f'{j["iops"]:.0f} {j["bw_bytes"] / 1048576:.1f}')
PY
}

echo "plugin-fio: $(nproc) CPUs, file $file ($bytes bytes), ${runtime}s runs"
echo "nbdkit $("$nbdkit" --version | head -1), blkio plugin: " \
     "$("$nbdkit" "$plugin" --dump-plugin | grep '^blkio_library=')"

declare -A sum_iops sum_mib
for w in "randread 4k 16" "read 1M 8"; do
    set -- $w
    rw=$1 bs=$2 qd=$3
    for s in blkio file null; do
        sum_iops[$s]=0; sum_mib[$s]=0
    done
    echo
    echo "== $rw bs=$bs iodepth=$qd =="
    for s in blkio file null null file blkio; do
        read -r iops mib < <(run_fio $s "$rw-$bs" "$rw" "$bs" "$qd")
        printf '  %-6s %9s IOPS %9s MiB/s\n' "$s" "$iops" "$mib"
        sum_iops[$s]=$((${sum_iops[$s]} + iops))
        sum_mib[$s]=$($py -c "print(${sum_mib[$s]} + $mib)")
    done
    $py - "${sum_iops[blkio]}" "${sum_iops[file]}" "${sum_iops[null]}" \
        "${sum_mib[blkio]}" "${sum_mib[file]}" "${sum_mib[null]}" <<'PY'
import sys
bi, fi, ni, bm, fm, nm = map(float, sys.argv[1:])
print(f"  mean   blkio {bi/2:.0f} IOPS {bm/2:.1f} MiB/s | file {fi/2:.0f} IOPS "
      f"{fm/2:.1f} MiB/s | null {ni/2:.0f} IOPS {nm/2:.1f} MiB/s")
print(f"  ratio  blkio/file {bi/fi:.2f}   blkio/null {bi/ni:.2f}   "
      f"file/null {fi/ni:.2f}")
PY
done
