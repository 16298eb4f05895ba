#!/bin/bash
# nvme-vm-bench.sh - our nvme-io_uring driver against fio's io_uring_cmd
# engine (the same NVMe passthrough path), in one boot of the test VM.
#
#   bench/nvme-vm-bench.sh [BUILD_DIR]        (default: ./build)
#
# Environment:
#   RUNTIME=3    measured seconds per run (plus RAMP unmeasured)
#   RAMP=0.5
#   IODEPTH=16
#   ROUNDS=2     repeat the A B B A block (TCG is noisy: 5-25% per sample)
#   NVME_SIZE=1G size of the guest's NVMe namespace (sparse raw image)
#
# Workload: 4 KiB random reads at queue depth 16, pinned to CPU 0 of the
# guest.  A = blkio-bench --driver nvme-io_uring, B = fio --ioengine=
# io_uring_cmd --cmd_type=nvme, both on /dev/ng0n1, run A B B A so that
# drift hits both sides equally.  Prints kIOPS per run and the ratio of the
# means (ours/fio).  Under TCG both sides are bound by the emulated device
# and QEMU, not by the library; the ratio says whether ours adds overhead.
#
# On the host this starts the VM (tests/vm/run-in-vm.sh) and runs itself
# inside it; in the guest (BLKIO_VM=1) it runs the benchmark.
set -euo pipefail

py=/usr/bin/python3
runtime=${RUNTIME:-3}
ramp=${RAMP:-0.5}
qd=${IODEPTH:-16}
rounds=${ROUNDS:-2}

die() { echo "nvme-vm-bench: $*" >&2; exit 1; }

if [ "${BLKIO_VM:-}" != 1 ]; then
    top=$(cd "$(dirname "$0")/.." && pwd)
    build=$(cd "${1:-$top/build}" && pwd)
    [ -x "$build/bench/blkio-bench" ] || die "$build/bench/blkio-bench not built"
    exec "$top/tests/vm/run-in-vm.sh" --nvme-size "${NVME_SIZE:-1G}" \
        --timeout $((120 + rounds * 4 * (${runtime%.*} + 3))) \
        --env BLKIO_BENCH="$build/bench/blkio-bench" \
        --env RUNTIME="$runtime" --env RAMP="$ramp" --env IODEPTH="$qd" \
        --env ROUNDS="$rounds" \
        --env LD_LIBRARY_PATH="$build/lib" \
        -- "$top/bench/nvme-vm-bench.sh"
fi

# ---- in the guest ----
dev=${BLKIO_VM_NVME:-/dev/ng0n1}
bench=${BLKIO_BENCH:?}
command -v fio >/dev/null || die "fio not installed"
tmpjson=$(mktemp)
trap 'rm -f "$tmpjson"' EXIT
ramp_ms=$("$py" -c "print(int(float('$ramp') * 1000))")

ours() {
    taskset -c 0 "$bench" --driver nvme-io_uring --path "$dev" \
        --rw randread --bs 4k --iodepth "$qd" --submit-batch 1 \
        --runtime "${1:-$runtime}" --ramp "$ramp" --json >"$tmpjson" ||
        die "blkio-bench failed: $(cat "$tmpjson")"
    "$py" -c '
import json, sys
print("%.1f" % json.load(open(sys.argv[1]))["kiops"])' "$tmpjson"
}

theirs() {
    taskset -c 0 fio --name=randread --filename="$dev" \
        --ioengine=io_uring_cmd --cmd_type=nvme --iodepth="$qd" \
        --rw=randread --bs=4k --numjobs=1 --thread --norandommap \
        --randrepeat=0 --time_based --runtime="$runtime" \
        --ramp_time="${ramp_ms}ms" --output-format=json >"$tmpjson" \
        2>/dev/null || die "fio failed: $(cat "$tmpjson")"
    "$py" -c '
import json, sys
t = open(sys.argv[1]).read()
print("%.1f" % (json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"] / 1000))' "$tmpjson"
}

# warm-up, unmeasured
ours 1 >/dev/null
a=() b=()
for ((i = 0; i < rounds; i++)); do
    a+=("$(ours)"); b+=("$(theirs)"); b+=("$(theirs)"); a+=("$(ours)")
done
echo "nvme-io_uring 4k randread QD$qd, kIOPS per run"
echo "  ours (blkio-bench nvme-io_uring): ${a[*]}"
echo "  fio io_uring_cmd:                 ${b[*]}"
"$py" -c '
import sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
ma, mb = sum(a) / len(a), sum(b) / len(b)
print("  mean ours %.1f  fio %.1f  ratio ours/fio %.2f" % (ma, mb, ma / mb))
' "${a[*]}" "${b[*]}"
