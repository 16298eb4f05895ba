#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# reconnect-time.sh - how long NBD clients wait when the vhost-user
# backend (qemu-storage-daemon) is restarted under nbdkit-blkio-plugin.
#
#   bench/reconnect-time.sh [BUILD_DIR]         (default: ./build)
#
# Environment:
#   ROUNDS=7            restarts per outage length
#   OUTAGES="0 0.5 2"   seconds the daemon stays down
#   REF=BUILD_DIR/reference   the unpacked reference (scripts/fetch-reference.sh)
#
# Per round: a client connected through the plugin reads; the daemon is
# killed (-9); the client's next read finds it gone (EIO); after OUTAGE
# seconds a new daemon is started on the same socket and, once its socket
# is there, the client reads every millisecond until a read succeeds on
# the same connection.  Reported: the median (and max) of restart → first
# successful read, the part the plugin's backoff adds.  For comparison,
# with the upstream plugin (build/reference, scripts/fetch-reference.sh)
# the connection open at the kill hangs; a new connection's first read is
# timed from the restart instead.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
plugin=$build/plugin/nbdkit-blkio-plugin.so
ref=${REF:-$build/reference}/usr/lib/x86_64-linux-gnu
rounds=${ROUNDS:-7}
outages=${OUTAGES:-0 0.5 2}
QSD=${QSD:-/usr/bin/qemu-storage-daemon}
py=/usr/bin/python3

die() { echo "reconnect-time: $*" >&2; exit 1; }
[ -f "$plugin" ] || die "$plugin not built"
[ -x "$QSD" ] || die "no $QSD"

tmp=$(mktemp -d /tmp/reconnect-time.XXXXXX)
qsd_pid= nbd_pid=
cleanup() {
    [ -n "$qsd_pid" ] && kill -9 "$qsd_pid" 2>/dev/null
    [ -n "$nbd_pid" ] && kill "$nbd_pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
qemu-img create -q -f raw "$tmp/disk.img" 64M

start_qsd() {
    rm -f "$tmp/vu.sock"
    "$QSD" --blockdev "driver=file,node-name=disk,filename=$tmp/disk.img" \
        --export "type=vhost-user-blk,id=e,addr.type=unix,addr.path=$tmp/vu.sock,node-name=disk,writable=on,num-queues=4" \
        >/dev/null 2>&1 &
    qsd_pid=$!
    while [ ! -S "$tmp/vu.sock" ]; do sleep 0.001; done
}

# measure PLUGIN_SO LD_PATH MODE: one line per round (seconds).
measure() {
    local so=$1 ldp=$2 mode=$3 outage r
    for outage in $outages; do
        start_qsd
        rm -f "$tmp/nbd.sock"
        LD_LIBRARY_PATH=$ldp nbdkit -U "$tmp/nbd.sock" -f "$so" \
            virtio-blk-vhost-user path="$tmp/vu.sock" 2>/dev/null &
        nbd_pid=$!
        while [ ! -S "$tmp/nbd.sock" ]; do sleep 0.01; done
        for r in $(seq "$rounds"); do
            rm -f "$tmp/go" "$tmp/restarted" "$tmp/ready"
            $py - "$tmp" "$mode" > "$tmp/out" <<'PY' &
import nbd, os, sys, time
tmp, mode = sys.argv[1], sys.argv[2]
uri = f"nbd+unix:///?socket={tmp}/nbd.sock"
def exists(n): return os.path.exists(os.path.join(tmp, n))
h = nbd.NBD(); h.connect_uri(uri); h.pread(4096, 0)
open(os.path.join(tmp, "ready"), "w").close()
while not exists("go"): time.sleep(0.001)
if mode == "same":
    try: h.pread(4096, 0)
    except nbd.Error: pass
while not exists("restarted"): time.sleep(0.001)
t0 = float(open(os.path.join(tmp, "restarted")).read())
while True:
    try:
        if mode != "same":
            h = nbd.NBD(); h.connect_uri(uri)
        h.pread(4096, 0)
        break
    except nbd.Error:
        time.sleep(0.001)
print(f"{time.time() - t0:.3f}")
PY
            local client=$!
            while [ ! -e "$tmp/ready" ]; do sleep 0.01; done
            kill -9 "$qsd_pid"; wait "$qsd_pid" 2>/dev/null || true
            touch "$tmp/go"
            sleep "$outage"
            start_qsd
            $py -c 'import time; print(time.time())' > "$tmp/restarted.new"
            mv "$tmp/restarted.new" "$tmp/restarted"
            if ! timeout 30 tail --pid=$client -f /dev/null; then
                kill $client; echo "timeout"; continue
            fi
            cat "$tmp/out"
        done > "$tmp/times"
        $py - "$tmp/times" "$outage" "$mode" <<'PY'
import statistics, sys
t = [float(x) for x in open(sys.argv[1]) if x.strip() and x[0].isdigit()]
print(f"  outage {sys.argv[2]:>4} s: restart -> first read on "
      f"{'the same' if sys.argv[3] == 'same' else 'a new'} connection: median "
      f"{statistics.median(t)*1000:.0f} ms, max {max(t)*1000:.0f} ms "
      f"({len(t)} rounds)")
PY
        kill "$nbd_pid"; wait "$nbd_pid" 2>/dev/null || true; nbd_pid=
        kill -9 "$qsd_pid"; wait "$qsd_pid" 2>/dev/null || true; qsd_pid=
    done
}

echo "reconnect-time: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load" \
     "$(cut -d' ' -f1-3 /proc/loadavg), $(nbdkit --version | head -1)"
echo "our plugin (reconnect in the background, backoff 50 ms doubling to 0.5 s):"
measure "$plugin" "$build/lib" same
if [ -f "$ref/nbdkit/plugins/nbdkit-blkio-plugin.so" ]; then
    echo "upstream plugin (open connection hangs; a new connection per try):"
    measure "$ref/nbdkit/plugins/nbdkit-blkio-plugin.so" "$ref" new
fi
