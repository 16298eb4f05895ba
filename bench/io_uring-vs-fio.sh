#!/bin/bash
# io_uring-vs-fio.sh - our libblkio io_uring driver against fio's io_uring
# engine, on the same file, the same CPU and in the same run.
#
#   bench/io_uring-vs-fio.sh [BUILD_DIR]        (default: ./build)
#
# Environment:
#   FILE=/var/tmp/blkio-bench-h6.img  test file (not tmpfs: O_DIRECT)
#   SIZE=1G        its size; written once with real data, not sparse
#   RUNTIME=3      measured seconds per run (plus RAMP seconds unmeasured)
#   RAMP=0.5
#   CPU=1          CPU the benchmark is pinned to (taskset)
#   IODEPTH=16
#   ROUNDS=1       repeat each A B B A C block (noisy shared machines: 3)
#   KEEP_FILE=0    1: keep the test file for the next run
#
# Two workloads, each run A B B A (ours, fio, fio, ours) so that drift on a
# shared machine hits both sides equally:
#   1. O_DIRECT random 4 KiB reads at queue depth 16 (the device path)
#   2. buffered random 4 KiB reads from a fully cached file, one thread
#      (nearly pure software: this is where library overhead shows)
# Prints kIOPS, mean latency and CPU per request for each run, and the
# ratio ours/fio of the mean kIOPS.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/build}
bench=$build/bench/blkio-bench
file=${FILE:-/var/tmp/blkio-bench-h6.img}
size=${SIZE:-1G}
runtime=${RUNTIME:-3}
ramp=${RAMP:-0.5}
cpu=${CPU:-1}
qd=${IODEPTH:-16}
rounds=${ROUNDS:-1}
py=/usr/bin/python3

die() { echo "io_uring-vs-fio: $*" >&2; exit 1; }

[ -x "$bench" ] || die "$bench not built (run ninja -C $build)"
command -v fio >/dev/null || die "fio not installed"
command -v taskset >/dev/null || die "taskset not installed"
if [ "$(nproc)" -le "$cpu" ]; then
    cpu=0
fi

cleanup() {
    rm -f "$tmpjson"
    if [ "${KEEP_FILE:-0}" != 1 ]; then
        rm -f "$file"
    fi
}
tmpjson=$(mktemp)
trap cleanup EXIT

# The file must hold real blocks: O_DIRECT reads of holes never reach the
# disk and would measure nothing.
bytes=$(numfmt --from=iec "$size")
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" != "$bytes" ] ||
   [ "$(stat -c %b "$file")" -lt $((bytes / 512)) ]; then
    echo "io_uring-vs-fio: writing $size to $file"
    rm -f "$file"
    dd if=/dev/urandom of="$file" bs=1M count=$((bytes >> 20)) \
       oflag=direct conv=fsync status=none
fi

ramp_ms=$("$py" -c "print(int(float('$ramp') * 1000))")

# ours DIRECT(true|false) SUBMIT_BATCH -> "kiops lat_us cpu_us_per_req"
ours() {
    taskset -c "$cpu" "$bench" --driver io_uring --path "$file" \
        --prop direct="$1" --submit-batch "$2" \
        --rw randread --bs 4k --iodepth "$qd" \
        --runtime "$runtime" --ramp "$ramp" --json >"$tmpjson" ||
        die "blkio-bench failed: $(cat "$tmpjson")"
    "$py" -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("%.1f %.2f %.3f" % (r["kiops"], r["lat_mean_us"], r["cpu_us_per_req"]))
' "$tmpjson"
}

# theirs DIRECT(1|0) -> "kiops lat_us cpu_us_per_req"
# --invalidate=0: fio drops the file's page cache before each job by
# default, which would turn the "cached" workload into disk reads.
theirs() {
    taskset -c "$cpu" fio --name=randread --filename="$file" \
        --ioengine=io_uring --direct="$1" --iodepth="$qd" --rw=randread \
        --bs=4k --numjobs=1 --thread --norandommap --randrepeat=0 \
        --invalidate=0 \
        --time_based --runtime="$runtime" --ramp_time="${ramp_ms}ms" \
        --output-format=json >"$tmpjson" 2>/dev/null ||
        die "fio failed: $(cat "$tmpjson")"
    "$py" -c '
import json, sys
text = open(sys.argv[1]).read()
j = json.loads(text[text.index("{"):])["jobs"][0]
iops = j["read"]["iops"]
lat = j["read"]["clat_ns"]["mean"] / 1000.0 + j["read"]["slat_ns"]["mean"] / 1000.0
cpu = (j["usr_cpu"] + j["sys_cpu"]) / 100.0 * 1e6 / iops if iops else 0
print("%.1f %.2f %.3f" % (iops / 1000.0, lat, cpu))
' "$tmpjson"
}

# warm DIRECT(true|false): before a buffered run, make sure the whole file
# is in the page cache (other programs on the machine may evict it).
warm() {
    if [ "$1" = false ]; then
        cat "$file" >/dev/null
    fi
}

# compare LABEL DIRECT_OURS DIRECT_FIO
#
# A = ours submitting each re-queued request at once (--submit-batch 1),
# which is what fio's io_uring engine does by default (iodepth_batch=1), so
# A against B compares the libraries under the same submission pattern.
# C = ours with whole-batch submission (blkio-bench's default), for scale:
# on this VM's virtio-blk, batching 16 per kick costs ~15% IOPS on O_DIRECT
# (fio with iodepth_batch_submit=16 loses the same).
# Each round runs A B B A C; ROUNDS repeats it.
compare() {
    local label=$1 runs=() i
    for ((i = 0; i < rounds; i++)); do
        warm "$2"; runs+=("A $(ours "$2" 1)")
        warm "$2"; runs+=("B $(theirs "$3")")
        warm "$2"; runs+=("B $(theirs "$3")")
        warm "$2"; runs+=("A $(ours "$2" 1)")
        warm "$2"; runs+=("C $(ours "$2" 0)")
    done
    "$py" - "$label" "${runs[@]}" <<'EOF'
import sys
label = sys.argv[1]
res = {"A": [], "B": [], "C": []}
for s in sys.argv[2:]:
    k, *v = s.split()
    res[k].append(list(map(float, v)))
mean = lambda xs, i: sum(x[i] for x in xs) / len(xs)
best = lambda xs: max(x[0] for x in xs)
print(label)
for key, name in (("A", "ours, submit each"), ("B", "fio io_uring"),
                  ("C", "ours, batched")):
    r = res[key]
    print("  %-18s %7.1f kIOPS mean %7.1f best  lat %6.2f us  "
          "cpu %.3f us/req  (runs %s)"
          % (name, mean(r, 0), best(r), mean(r, 1), mean(r, 2),
             " ".join("%.1f" % x[0] for x in r)))
a, b, c = res["A"], res["B"], res["C"]
ratio = mean(a, 0) / mean(b, 0)
print("  ratio ours/fio: kIOPS %.3f (best %.3f)  cpu/req %.3f  "
      "batched kIOPS %.3f"
      % (ratio, best(a) / best(b), mean(a, 2) / mean(b, 2),
         mean(c, 0) / mean(b, 0)))
print("RESULT %s ours_kiops=%.1f fio_kiops=%.1f ratio=%.3f best_ratio=%.3f "
      "ours_cpu_us=%.3f fio_cpu_us=%.3f batched_kiops=%.1f"
      % (label.split(":")[0], mean(a, 0), mean(b, 0), ratio,
         best(a) / best(b), mean(a, 2), mean(b, 2), mean(c, 0)))
EOF
}

echo "io_uring-vs-fio: $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) CPUs, pinned to CPU $cpu," \
     "kernel $(uname -r), file $file ($size, $(findmnt -n -o FSTYPE -T "$file")),"  \
     "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "io_uring-vs-fio: ${runtime}s per run after ${ramp}s ramp, order (A B B A C) x $rounds"

compare "direct: O_DIRECT randread 4k qd$qd" true 1

# Buffered runs: warm() reads the whole file first so every read hits the
# page cache.
compare "buffered: cached randread 4k qd$qd" false 0
