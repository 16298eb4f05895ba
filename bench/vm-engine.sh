#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# vm-engine.sh - blkio-bench on our libblkio and on libblkio 1.5, side by
# side in one boot of the test VM, on the drivers only the VM has:
# nvme-io_uring (/dev/ngXn1), virtio-blk-vfio-pci (a virtio-blk-pci device
# behind the emulated IOMMU) and virtio-blk-vhost-vdpa (a VDUSE export of
# qemu-storage-daemon, started afresh for every run: qemu-storage-daemon
# 7.2's vduse-blk export can die after a client leaves with requests in
# flight).  4 KiB random reads at depth 1 and 16, pinned to guest CPU 0;
# then libblkio's own example program blkio-bench (EXAMPLE=, built by
# bench/compare.py against our header, no rpath) at depth 16 on both
# libraries, its CPU taken from the process's rusage.
#
#   bench/vm-engine.sh BUILD_DIR REFERENCE_ROOT
#
# Environment: ROUNDS=2 (each an A B B A block), RUNTIME=3, RAMP=1,
# AW_BITS=39 (the emulated IOMMU's address width), DRIVERS="nvme vfio vdpa",
# EXAMPLE=path of libblkio's blkio-bench (none: not run), EXAMPLE_ROUNDS
# (default 2 x ROUNDS: one TCG boot moves the example's ratio by 0.1-0.2,
# more rounds keep its median steady).
# Prints one line per run: "BENCHJSON {...}" (bench/compare.py reads them).
set -euo pipefail
py=/usr/bin/python3

if [ "${BLKIO_VM:-}" != 1 ]; then
    top=$(cd "$(dirname "$0")/.." && pwd)
    build=$(cd "${1:?usage: vm-engine.sh BUILD_DIR REFERENCE_ROOT}" && pwd)
    ref=$(cd "${2:?usage: vm-engine.sh BUILD_DIR REFERENCE_ROOT}" && pwd)
    rounds=${ROUNDS:-2}
    runtime=${RUNTIME:-3}
    ex_rounds=${EXAMPLE_ROUNDS:-$((2 * rounds))}
    exec "$top/tests/vm/run-in-vm.sh" --nvme-size 1G --virtio-blk-size 1G \
        --qemu-arg -global --qemu-arg "intel-iommu.aw-bits=${AW_BITS:-39}" \
        --timeout $((180 + (rounds * 8 + ex_rounds * 4) * 3 * (runtime + ${RAMP:-1} + 6))) \
        --env BLKIO_BENCH="$build/bench/blkio-bench" \
        --env OURS_LIB="$build/lib" \
        --env REF_LIB="$ref/usr/lib/x86_64-linux-gnu" \
        --env ROUNDS="$rounds" --env RUNTIME="$runtime" \
        --env RAMP="${RAMP:-1}" --env DRIVERS="${DRIVERS:-nvme vfio vdpa}" \
        --env EXAMPLE="${EXAMPLE:-}" --env EXAMPLE_ROUNDS="$ex_rounds" \
        -- "$top/bench/vm-engine.sh"
fi

# ---- in the guest ----
bench=${BLKIO_BENCH:?}
guest=${BLKIO_VM_GUEST_DIR:?}
out=$(mktemp)
trap 'rm -f "$out"; "$guest/vdpa-setup.sh" stop >/dev/null 2>&1 || true' EXIT

# device DRIVER-LABEL: sets driver and path (a fresh VDUSE export for vdpa).
device() {
    case $1 in
    nvme) driver=nvme-io_uring path=$BLKIO_VM_NVME ;;
    vfio) driver=virtio-blk-vfio-pci path=/sys/bus/pci/devices/$BLKIO_VM_VIRTIO_BLK_BDF ;;
    vdpa) driver=virtio-blk-vhost-vdpa
          "$guest/vdpa-setup.sh" stop >/dev/null 2>&1 || true
          path=$("$guest/vdpa-setup.sh" start 256M) ;;
    esac
}

# run DRIVER-LABEL LIB-LABEL DEPTH ROUND: one blkio-bench run, one line.
run() {
    local label=$1 lib=$2 depth=$3 round=$4 libdir driver path
    [ "$lib" = ours ] && libdir=$OURS_LIB || libdir=$REF_LIB
    device "$label"
    if LD_LIBRARY_PATH=$libdir taskset -c 0 "$bench" --driver "$driver" \
            --path "$path" --rw randread --bs 4k --iodepth "$depth" \
            --runtime "$RUNTIME" --ramp "$RAMP" --json >"$out" 2>&1; then
        "$py" - "$out" "$label" "$lib" "$depth" "$round" <<'PY'
import json, sys
path, label, lib, depth, rnd = sys.argv[1:]
j = json.loads(open(path).read().strip().splitlines()[-1])
print("BENCHJSON " + json.dumps({
    "part": "vm", "group": label, "workload": f"randread-4k-qd{depth}",
    "jobs": 1, "contender": "ours" if lib == "ours" else "libblkio-1.5",
    "iops": j["kiops"] * 1000, "lat_us": j["lat_mean_us"],
    "cpu_us_per_req": j["cpu_us_per_req"],
    "cpu_user_us": j["cpu_user_s"] * 1e6 / max(j["ios"], 1),
    "cpu_sys_us": j["cpu_sys_s"] * 1e6 / max(j["ios"], 1),
    "step": f"vm {label} qd{depth}", "round": int(rnd)}))
PY
    else
        "$py" -c 'import json,sys; print("BENCHJSON " + json.dumps({"part": "vm", "contender": "ours" if sys.argv[2] == "ours" else "libblkio-1.5", "step": f"vm {sys.argv[1]} qd{sys.argv[3]}", "round": int(sys.argv[4]), "error": open(sys.argv[5]).read()[-300:]}))' \
            "$label" "$lib" "$depth" "$round" "$out"
    fi
}

# example DRIVER-LABEL LIB-LABEL ROUND: one run of libblkio's blkio-bench
# (depth 16), one line.  It aborts when no completion comes within 500 ms,
# which TCG can cause on either library: tried up to 3 times.
example() {
    local label=$1 lib=$2 round=$3 libdir driver path
    [ "$lib" = ours ] && libdir=$OURS_LIB || libdir=$REF_LIB
    device "$label"
    "$py" - "$EXAMPLE" "$libdir" "$driver" "$path" "$label" "$lib" "$round" \
        "$RUNTIME" <<'PY'
import json, os, subprocess, sys, tempfile
ex, libdir, driver, path, label, lib, rnd, runtime = sys.argv[1:]
argv = ["taskset", "-c", "0", ex, f"--runtime={runtime}", "--readwrite=randread",
        "--iodepth=16", driver, f"path={path}"]
res = {"part": "vm-example", "group": label, "workload": "randread-4k-qd16",
       "jobs": 1, "contender": "ours" if lib == "ours" else "libblkio-1.5",
       "step": f"vm-example {label} qd16", "round": int(rnd)}
for _ in range(3):
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(argv, env={**os.environ, "LD_LIBRARY_PATH": libdir},
                             stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        out, err = out.read(), err.read()
    if not (rc != 0 and "Timeout receiving" in err):
        break
if rc != 0:
    res["error"] = f"exit {rc}: {err.strip()[-200:]}"
else:
    a = json.loads(out)["aggregate"]
    ios = a["kiops"] * 1000 * int(runtime) or 1
    res.update({"iops": a["kiops"] * 1000, "lat_us": a["mean_lat_us"],
                "cpu_user_us": ru.ru_utime * 1e6 / ios,
                "cpu_sys_us": ru.ru_stime * 1e6 / ios,
                "cpu_us_per_req": (ru.ru_utime + ru.ru_stime) * 1e6 / ios})
print("BENCHJSON " + json.dumps(res))
PY
}

for d in $DRIVERS; do
    if [ "$d" = vfio ]; then
        "$guest/vfio-bind.sh" "$BLKIO_VM_VIRTIO_BLK_BDF" >/dev/null
    fi
    for depth in 1 16; do
        for ((r = 0; r < ROUNDS; r++)); do
            # A B B A: each pair is one round of the comparison.
            run "$d" ours "$depth" $((2 * r)); run "$d" ref "$depth" $((2 * r))
            run "$d" ref "$depth" $((2 * r + 1)); run "$d" ours "$depth" $((2 * r + 1))
        done
    done
    if [ -n "${EXAMPLE:-}" ]; then
        for ((r = 0; r < EXAMPLE_ROUNDS; r++)); do
            example "$d" ours $((2 * r)); example "$d" ref $((2 * r))
            example "$d" ref $((2 * r + 1)); example "$d" ours $((2 * r + 1))
        done
    fi
done
