#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# plugin-fio.sh - nbdkit-blkio-plugin (io_uring driver) against
# nbdkit-file-plugin on the same file in the same run, with fio's nbd
# engine over a Unix socket; the nbdkit null plugin gives the ceiling of
# the NBD transport itself.
#
#   bench/plugin-fio.sh [BUILD_DIR]             (default: ./build)
#
# Environment:
#   FILE=/var/tmp/blkio-plugin-bench.img   test file, written once with data
#   SIZE=512M        its size (it must fit in the page cache)
#   ROUNDS=5         rounds; each runs every server once per workload
#   RUNTIME=3        measured seconds per run (after RAMP unmeasured)
#   RAMP=1
#   NBDKIT=nbdkit    the server
#   PLUGIN_ARGS=     extra parameters for our plugin (eg. num-queues=2)
#   ALT_ARGS=        if set, a fourth server: our plugin with these
#                    parameters instead, to compare two settings in one run
#   ALT_PLUGIN=      the fourth server's plugin .so (default: the same one),
#                    to compare two builds in one run
#   SERVERS=         which servers run (default: blkio [alt] file null),
#                    e.g. "blkio alt" for an A/B of our plugin alone
#   NUMJOBS=         fio jobs, each its own NBD connection at the full
#                    depth (default: one)
#   SERVER_CPUS= CLIENT_CPUS=   taskset CPU lists for nbdkit and fio
#                    (default: unpinned)
#   KEEP_FILE=0      1: keep the test file for the next run
#
#   WORKLOADS="randread-4k read-1M"   which workloads run; also available:
#                    randwrite-4k, write-1M (buffered writes into the file),
#                    randtrim-64k (holes punched into it)
#
# Workloads: 4 KiB random reads at queue depth 16, and 1 MiB sequential
# reads at queue depth 8.  Each round runs the servers back to back, the
# order rotated by one every round, so that over a multiple of the number
# of servers each one runs in every position equally often (an order that
# was only reversed every other round kept one server in the middle of
# every round, so position and server could not be told apart); drift on a
# shared machine hits all of them alike.  The ratios are taken within a round and the median over the
# rounds is reported, with the nbdkit CPU time per request beside it.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
plugin=$build/plugin/nbdkit-blkio-plugin.so
file=${FILE:-/var/tmp/blkio-plugin-bench.img}
size=${SIZE:-512M}
rounds=${ROUNDS:-5}
runtime=${RUNTIME:-3}
ramp=${RAMP:-1}
nbdkit=${NBDKIT:-nbdkit}
BENCH_SERVER_CPUS=${SERVER_CPUS:-}
BENCH_CLIENT_CPUS=${CLIENT_CPUS:-}
BENCH_NUMJOBS=${NUMJOBS:-}

die() { echo "plugin-fio: $*" >&2; exit 1; }

[ -f "$plugin" ] || die "$plugin not built (run ninja -C $build)"
command -v fio >/dev/null || die "fio not installed"
fio --enghelp 2>/dev/null | grep -qw nbd || die "this fio has no nbd engine"
command -v "$nbdkit" >/dev/null || die "nbdkit not installed"

tmp=$(mktemp -d /tmp/plugin-fio.XXXXXX)
. "$top/bench/lib.sh"
cleanup() {
    nbd_stop
    rm -rf "$tmp"
    [ "${KEEP_FILE:-0}" = 1 ] || rm -f "$file"
}
trap cleanup EXIT

if [ ! -s "$file" ]; then
    echo "writing $size of data to $file ..."
    fio --name=fill --filename="$file" --size="$size" --rw=write --bs=1M \
        --ioengine=psync --refill_buffers --end_fsync=1 >/dev/null
fi
bytes=$(stat -c %s "$file")
# Every server reads from the page cache: page the file in first.
cat "$file" >/dev/null

start() {
    case $1 in
    blkio) nbd_start "$nbdkit" "$plugin" io_uring path="$file" \
               ${PLUGIN_ARGS:-} ;;
    alt)   nbd_start "$nbdkit" "${ALT_PLUGIN:-$plugin}" io_uring \
               path="$file" ${ALT_ARGS:-} ;;
    file)  nbd_start "$nbdkit" file file="$file" ;;
    null)  nbd_start "$nbdkit" null size="$bytes" ;;
    esac || die "nbdkit ($1) did not start"
}

servers="blkio file null"
[ -n "${ALT_ARGS+x}${ALT_PLUGIN+x}" ] && servers="blkio alt file null"
servers=${SERVERS:-$servers}
nservers=$(echo $servers | wc -w)

# The servers in round r's order: the list rotated left by r-1.
round_order() {
    local -a list=($servers)
    local i k=$(( ($1 - 1) % nservers ))

    for ((i = 0; i < nservers; i++)); do
        printf '%s ' "${list[(i + k) % nservers]}"
    done
}

echo "plugin-fio: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load" \
     "$(cut -d' ' -f1-3 /proc/loadavg), kernel $(uname -r)"
echo "plugin-fio: file $file ($bytes bytes, cached), $rounds rounds of" \
     "${runtime}s runs after ${ramp}s ramp${NUMJOBS:+, $NUMJOBS connections}${SERVER_CPUS:+, nbdkit on CPUs $SERVER_CPUS}${CLIENT_CPUS:+, fio on CPUs $CLIENT_CPUS}"
echo "plugin-fio: $("$nbdkit" --version | head -1)," \
     "$("$nbdkit" "$plugin" --dump-plugin | grep '^blkio_library=')" \
     "${PLUGIN_ARGS:+($PLUGIN_ARGS)}${ALT_ARGS+; alt: $ALT_ARGS}${ALT_PLUGIN+; alt plugin: $ALT_PLUGIN}"

case " ${WORKLOADS:-} " in
*" randtrim-64k "*)
    # Holes would change what later reads of the file measure.
    [ "${KEEP_FILE:-0}" = 1 ] && echo "plugin-fio: randtrim punches holes:" \
        "the file is not kept"
    KEEP_FILE=0 ;;
esac

for w in ${WORKLOADS:-randread-4k read-1M}; do
    case $w in
    randread-4k) set -- randread 4k 16 ;;
    read-1M)     set -- read 1M 8 ;;
    randwrite-4k) set -- randwrite 4k 16 ;;
    write-1M)    set -- write 1M 8 ;;
    randtrim-64k) set -- randtrim 64k 16 ;;
    *) die "unknown workload $w (randread-4k, read-1M, randwrite-4k," \
           "write-1M or randtrim-64k)" ;;
    esac
    echo
    echo "== $1 bs=$2 iodepth=$3 ==  (server IOPS MiB/s nbdkit-CPU-us/request)"
    : >"$tmp/results"
    for r in $(seq "$rounds"); do
        for s in $(round_order "$r"); do
            start "$s"
            nbd_fio "$s" "$1" "$2" "$3" | sed 's/^/  /'
            nbd_stop
        done
    done
    nbd_summary blkio file
    nbd_summary blkio null
    nbd_summary file null
    if [ -n "${ALT_ARGS+x}${ALT_PLUGIN+x}" ]; then nbd_summary alt blkio; fi
done
