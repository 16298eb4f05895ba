# SPDX-License-Identifier: MIT OR Apache-2.0
#
# bench/lib.sh - what the NBD benchmarks share: start and stop one nbdkit
# on a Unix socket, run fio's nbd engine against it, and summarise rounds
# as per-round ratios.  Source it after setting:
#   tmp      a private scratch directory (the socket lives there)
#   runtime  measured seconds per fio run
#   ramp     unmeasured seconds before that
#
# Functions:
#   nbd_start CMD...      run "CMD... -U SOCK -f" style servers: CMD is the
#                         whole nbdkit command line without -U/-f/-P
#   nbd_stop
#   nbd_fio NAME RW BS DEPTH [SIZE]
#                         one fio run; appends "NAME IOPS MIB/S CPU_US_PER_REQ"
#                         to $tmp/results and prints it
#   nbd_summary A B       per-round ratios A/B of IOPS and of nbdkit CPU per
#                         request from $tmp/results (runs paired in order)

py=/usr/bin/python3
nbd_sock=$tmp/nbd.sock
nbd_pid=

nbd_start() {
    local bin=$1
    shift
    rm -f "$nbd_sock" "$tmp/nbdkit.pid"
    ${BENCH_SERVER_CPUS:+taskset -c "$BENCH_SERVER_CPUS"} \
        "$bin" -U "$nbd_sock" -P "$tmp/nbdkit.pid" -f "$@" &
    nbd_pid=$!
    for _ in $(seq 100); do
        [ -S "$nbd_sock" ] && [ -s "$tmp/nbdkit.pid" ] && return 0
        kill -0 "$nbd_pid" 2>/dev/null || { nbd_pid=; return 1; }
        sleep 0.1
    done
    return 1
}

nbd_stop() {
    if [ -n "$nbd_pid" ]; then
        kill "$nbd_pid" 2>/dev/null || true
        wait "$nbd_pid" 2>/dev/null || true
        nbd_pid=
    fi
}

# utime+stime of the server, in clock ticks (all its threads, live and
# exited).
nbd_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$nbd_pid/stat"; }

nbd_fio() {
    local name=$1 rw=$2 bs=$3 depth=$4 size=${5:-$bytes} t0 t1
    t0=$(nbd_cpu_ticks)
    ${BENCH_CLIENT_CPUS:+taskset -c "$BENCH_CLIENT_CPUS"} \
        fio --name="$name" --ioengine=nbd \
        --uri="nbd+unix:///?socket=$nbd_sock" --rw="$rw" --bs="$bs" \
        --iodepth="$depth" --size="$size" --time_based \
        ${BENCH_NUMJOBS:+--numjobs="$BENCH_NUMJOBS" --group_reporting} \
        --runtime="$runtime" --ramp_time="$ramp" \
        --output-format=json --output="$tmp/fio.json" >/dev/null
    t1=$(nbd_cpu_ticks)
    $py - "$tmp/fio.json" "$name" "$((t1 - t0))" "$(getconf CLK_TCK)" \
        "$runtime" "$ramp" <<'PY' | tee -a "$tmp/results"
import json, sys
path, name, ticks, hz, runtime, ramp = sys.argv[1:]
j = json.load(open(path))["jobs"][0]
r = next((j[d] for d in ("read", "write", "trim") if j[d]["io_bytes"]),
         j["read"])
# The server's CPU covers ramp and run; requests are estimated over both.
reqs = r["iops"] * (float(runtime) + float(ramp))
us = int(ticks) / int(hz) * 1e6 / reqs if reqs else 0.0
print(f'{name} {r["iops"]:.0f} {r["bw_bytes"] / 1048576:.1f} {us:.2f}')
PY
}

nbd_summary() {
    $py - "$tmp/results" "$1" "$2" <<'PY'
import statistics, sys
path, a, b = sys.argv[1:]
runs = {}
for line in open(path):
    name, iops, mib, us = line.split()
    runs.setdefault(name, []).append((float(iops), float(us)))
pa, pb = runs.get(a, []), runs.get(b, [])
n = min(len(pa), len(pb))
if n == 0:
    sys.exit(0)
iops = [pa[i][0] / pb[i][0] for i in range(n) if pb[i][0]]
cpu = [pb[i][1] / pa[i][1] for i in range(n) if pa[i][1]]
def show(v):
    return (f"median {statistics.median(v):.2f} (min {min(v):.2f}, "
            f"max {max(v):.2f}, {sum(x >= 1 for x in v)}/{len(v)} >= 1)")
print(f"  {a}/{b} IOPS per round:          {show(iops)}")
print(f"  {b}/{a} nbdkit CPU per request:  {show(cpu)}")
print(f"RESULT {a}/{b} iops_ratio={statistics.median(iops):.3f} "
      f"cpu_efficiency_ratio={statistics.median(cpu):.3f} rounds={n}")
PY
}
