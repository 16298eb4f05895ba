#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# soak.sh DRIVER - load and soak through nbdkit with the plugin.
#   DRIVER: io_uring (a file in $TMPDIR), vhost-user (a fresh
#   qemu-storage-daemon export, through tests/vhost-user/qsd-run.sh), or
#   inside the test VM nvme-io_uring ($BLKIO_VM_NVME),
#   virtio-blk-vfio-pci (the VM's virtio-blk-pci device, bound to vfio-pci)
#   and virtio-blk-vhost-vdpa (a VDUSE export; use SOAK_HANGUP=0 there:
#   qemu-storage-daemon 7.2's vduse-blk export dies when a client leaves
#   with requests in flight)
#
# 16 NBD connections at once (by default): SOAK_FIO fio jobs writing and
# verifying (crc32c, verify_backlog) 512 B - 4 MiB requests with a flush
# every 16 writes, and SOAK_MIXED mixed-client.py connections running
# checked reads, writes, FUA writes, write zeroes, trims and flushes, each
# connection on its own 16 MiB, for SOAK_WARMUP + SOAK_SECONDS without a
# break.  nbdkit runs with SOAK_THREADS threads per connection (nbdkit
# keeps a buffer as large as the largest request each thread served, so
# under the parallel thread model its RSS climbs until every thread has
# seen a 4 MiB request: 16 threads x 16 connections x 4 MiB = 1 GiB, the
# same with nbdkit's own file plugin).  Then SOAK_BURST connections at
# once, twice.
#
# Fails on any verify error, request error or wrong byte, and unless:
# - the RSS is flat after the warm-up: the median of the last third of the
#   once-a-second samples is at most max(32 MiB, 25%) above the median of
#   the first third (in a short run nbdkit's buffers are still filling:
#   this catches gross leaks; the long run shows the plateau);
# - with no client connected, before the load, after it and after the
#   bursts: the same number of threads, no more fds other than io_uring
#   rings and eventfds, rings and eventfds at most two per nbdkit thread
#   that can exist at once plus 32 (the io_uring drivers keep a queue per
#   thread for later threads), and idle anonymous memory at most 64 MiB
#   above the first (idle, glibc keeps what the threads of the last
#   connections freed in its arenas, capped at SOAK_ARENAS=2; shared
#   memory is the device's bounce regions, 16 MiB per virtio queue,
#   reported).
#
#   SOAK_SECONDS=30 SOAK_WARMUP=10  phase lengths (the long run:
#                                   SOAK_SECONDS=1800 tests/soak/soak.sh ...)
#   SOAK_FIO=8 SOAK_MIXED=8         connections of each kind
#   SOAK_THREADS=4                  nbdkit -t
#   SOAK_PLUGIN_ARGS=               further plugin parameters
#   SOAK_ARENAS=2                   nbdkit's MALLOC_ARENA_MAX
#   SOAK_BURST=80                   connections at once (0: no burst)
#   SOAK_HANGUP=1                   burst connections hang up with 8
#                                   requests in flight (0: they wait)
# The last line is a summary ("soak: ...") for docs/RELIABILITY.md.
driver=${1:-io_uring}
fio_jobs=${SOAK_FIO:-8}
mixed=${SOAK_MIXED:-8}
region=$((16 << 20))
burst=${SOAK_BURST:-80}
size_mib=$(( (fio_jobs + mixed) * 16 + 8 ))
if [ "$driver" = vhost-user ] && [ -z "${VU_SOCK:-}" ]; then
    exec "$(dirname "$0")/../vhost-user/qsd-run.sh" --size "${size_mib}M" \
        -- "$0" "$@"
fi
source "$(dirname "$0")/../plugin/functions.sh"
source "$(dirname "$0")/../faults/procstat.sh"
requires /usr/bin/python3 -c 'import nbd'
requires fio --enghelp=nbd
here=$(cd "$(dirname "$0")" && pwd)
seconds=${SOAK_SECONDS:-30}
warmup=${SOAK_WARMUP:-10}
threads_per_conn=${SOAK_THREADS:-4}
# Further plugin parameters, split on spaces (e.g. zero-copy=true).
plugin_args=${SOAK_PLUGIN_ARGS:-}

# nbdkit's options go before the plugin: wrap it.  Its malloc arenas are
# capped (SOAK_ARENAS, default 2): with glibc's default of 8 per CPU, what
# the threads of the last burst freed stays scattered over up to 16
# arenas, and the idle figure moved from 14 to 74 MiB between runs of the
# same build, hiding a leak of that size and failing the 64 MiB bound.
printf '#!/bin/sh\nMALLOC_ARENA_MAX=%s exec %s -t %s "$@"\n' \
    "${SOAK_ARENAS:-2}" "$NBDKIT" "$threads_per_conn" > "$tmp/nbdkit-t"
chmod +x "$tmp/nbdkit-t"
NBDKIT=$tmp/nbdkit-t

case "$driver" in
io_uring)
    requires_driver io_uring
    truncate -s "${size_mib}M" "$tmp/disk"
    start_nbdkit io_uring path="$tmp/disk" $plugin_args
    ;;
vhost-user)
    requires_driver virtio-blk-vhost-user
    start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2 $plugin_args
    ;;
nvme-io_uring)          # in the test VM: its NVMe namespace
    [ -c "${BLKIO_VM_NVME:-}" ] || { echo "$0: SKIP: no BLKIO_VM_NVME"; exit 77; }
    requires_driver nvme-io_uring
    start_nbdkit nvme-io_uring path="$BLKIO_VM_NVME" $plugin_args
    ;;
virtio-blk-vfio-pci)    # in the test VM: its virtio-blk-pci device
    [ -n "${BLKIO_VM_VIRTIO_BLK_BDF:-}" ] ||
        { echo "$0: SKIP: no BLKIO_VM_VIRTIO_BLK_BDF"; exit 77; }
    requires_driver virtio-blk-vfio-pci
    dev=/sys/bus/pci/devices/$BLKIO_VM_VIRTIO_BLK_BDF
    if [ "$(basename "$(readlink -f "$dev/driver" 2>/dev/null)")" != vfio-pci ]; then
        "$BLKIO_VM_GUEST_DIR/vfio-bind.sh" "$BLKIO_VM_VIRTIO_BLK_BDF" >/dev/null
    fi
    start_nbdkit virtio-blk-vfio-pci path="$dev" $plugin_args
    ;;
virtio-blk-vhost-vdpa)  # in the test VM: a VDUSE export (vdpa-setup.sh)
    [ -c /dev/vduse/control ] || { echo "$0: SKIP: no VDUSE"; exit 77; }
    requires_driver virtio-blk-vhost-vdpa
    truncate -s "${size_mib}M" "$tmp/disk"
    dev=$("$BLKIO_VM_GUEST_DIR/vdpa-setup.sh" start "$tmp/disk")
    cleanup_fn "$BLKIO_VM_GUEST_DIR/vdpa-setup.sh" stop
    start_nbdkit virtio-blk-vhost-vdpa path="$dev" $plugin_args
    ;;
*)
    echo "$0: unknown driver $driver" >&2
    exit 1
    ;;
esac
nbd_pid=$(cat "$pidfile")
conns=$((fio_jobs + mixed))

# stall_report: where nbdkit's threads wait (and their stacks, with gdb),
# for a load that stopped making progress.
stall_report ()
{
    local t
    echo "nbdkit's threads (wchan) at the stall:" >&2
    for t in /proc/"$nbd_pid"/task/*; do
        echo "  ${t##*/} $(cat "$t/comm" 2>/dev/null) $(cat "$t/wchan" 2>/dev/null)" >&2
    done
    if command -v gdb >/dev/null; then
        timeout 60 gdb -p "$nbd_pid" -batch -ex "thread apply all bt" 2>&1 |
            grep -E '^(#|Thread)' >&2
    fi
}

# run_load SECONDS: the connections; prints the requests served.  A client
# still running a minute after its time is stalled: it is stopped, and the
# test fails with where nbdkit waits (a device that stops completing
# requests must not hold the test until meson's timeout).
run_load ()
{
    local secs=$1 pids=() rc=0 i stalled=0
    local limit=$((secs + 60))
    timeout -k 5 "$limit" fio --name=soak --ioengine=nbd --uri="$(uri)" --rw=randwrite \
        --bssplit=512/10:4k/40:64k/30:1m/15:4m/5 --iodepth=8 \
        --numjobs="$fio_jobs" --size="$region" --offset_increment="$region" \
        --time_based --runtime="$secs" --verify=crc32c --verify_backlog=16 \
        --verify_fatal=1 --verify_state_save=0 --fsync=16 --output-format=json \
        --output="$tmp/fio.json" > "$tmp/fio.log" 2>&1 &
    pids+=($!)
    for i in $(seq 0 $((mixed - 1))); do
        timeout -k 5 "$limit" /usr/bin/python3 "$here/mixed-client.py" "$(uri)" \
            $(( (fio_jobs + i) * region )) "$region" "$secs" "seed$i" \
            > "$tmp/mixed-$i.log" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i"
        case $? in
        0) ;;
        124|137) rc=1 stalled=1 ;;
        *) rc=1 ;;
        esac
    done
    if [ $rc -ne 0 ]; then
        cat "$tmp/fio.log" "$tmp"/mixed-*.log >&2
        if [ $stalled = 1 ]; then
            stall_report
            echo "FAIL: the load stalled (a client was still waiting $limit s after its start)" >&2
        else
            echo "FAIL: the load saw errors" >&2
        fi
        return 1
    fi
    /usr/bin/python3 - "$tmp/fio.json" "$tmp"/mixed-*.log <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
n = sum(job[d]["total_ios"] for job in j["jobs"]
        for d in ("read", "write", "trim", "sync"))
for log in sys.argv[2:]:
    for line in open(log):
        if line.startswith("ok:"):
            n += int(line.split()[1])
print(n)
PY
}

# The RSS once a second while the load runs.
sample_rss ()
{
    while kill -0 "$nbd_pid" 2>/dev/null; do
        proc_rss_kb "$nbd_pid"
        sleep 1
    done
}

# idle TAG: take nbdkit's figures with no client connected.
declare -A rss shm fds rings threads
idle ()
{
    sleep 1
    rss[$1]=$(proc_anon_kb "$nbd_pid")
    shm[$1]=$(awk '/^RssShmem:/ { print $2 }' "/proc/$nbd_pid/status")
    fds[$1]=$(proc_fds "$nbd_pid")
    rings[$1]=$(proc_fds_rings "$nbd_pid")
    threads[$1]=$(proc_threads "$nbd_pid")
    echo "idle $1: anonymous ${rss[$1]} KiB, shared ${shm[$1]} KiB," \
         "fds ${fds[$1]} (${rings[$1]} rings" \
         "and eventfds), threads ${threads[$1]}"
}

idle before
sample_rss > "$tmp/rss" &
sampler=$!
cleanup_fn "kill $sampler 2>/dev/null"
t0=$(date +%s)
reqs=$(run_load $((warmup + seconds))) || exit 1
t1=$(date +%s)
kill "$sampler"
# (no process substitution: the test VM has no /dev/fd)
rss_stats=$(/usr/bin/python3 - "$tmp/rss" "$warmup" <<'PY'
import statistics, sys
v = [int(x) for x in open(sys.argv[1]) if x.strip()][int(sys.argv[2]):]
v = v or [0]
third = max(1, len(v) // 3)
print(int(statistics.median(v[:third])), int(statistics.median(v[-third:])),
      max(v))
PY
)
read -r rss_first rss_last rss_max <<< "$rss_stats"
echo "loaded: $reqs requests in $((t1 - t0)) s; RSS after the warm-up:" \
     "median $rss_first KiB in the first third, $rss_last in the last," \
     "max $rss_max"
idle after-load

burst_note=
conns_max=$conns
if [ "$burst" -gt 0 ]; then
    hang=
    [ "${SOAK_HANGUP:-1}" = 1 ] && hang=--hangup
    for round in 1 2; do
        timeout -k 5 120 /usr/bin/python3 "$here/burst-client.py" "$(uri)" \
            "$burst" $((conns * region)) $hang || exit 1
    done
    kill -0 "$nbd_pid"
    burst_note=", then $burst connections at once twice${hang:+ (hanging up with requests in flight)}"
    conns_max=$burst
    idle after-bursts
fi

slack ()
{
    echo $(( $1 + ($1 / 4 > 32768 ? $1 / 4 : 32768) ))
}
fail=0
if [ "$rss_last" -gt "$(slack "$rss_first")" ]; then
    echo "FAIL: RSS under load grew from $rss_first to $rss_last KiB"; fail=1
fi
ring_max=$(( 2 * threads_per_conn * conns_max + 32 ))
for t in after-load after-bursts; do
    [ -n "${rss[$t]:-}" ] || continue
    if [ "${threads[$t]}" -gt "${threads[before]}" ]; then
        echo "FAIL: $t: more threads than before"; fail=1
    fi
    if [ $(( fds[$t] - rings[$t] )) -gt $(( fds[before] - rings[before] )) ]
    then
        echo "FAIL: $t: more fds (not rings) than before"; fail=1
    fi
    if [ "${rings[$t]}" -gt "$ring_max" ]; then
        echo "FAIL: $t: ${rings[$t]} rings and eventfds (at most $ring_max)"
        fail=1
    fi
    if [ "${rss[$t]}" -gt $(( rss[before] + 65536 )) ]; then
        echo "FAIL: $t: idle anonymous ${rss[$t]} KiB, ${rss[before]} before"
        fail=1
    fi
done
last=after-load
[ -n "${rss[after-bursts]:-}" ] && last=after-bursts
echo "soak: $driver, $conns connections x $threads_per_conn threads," \
     "$reqs requests in $((t1 - t0)) s$burst_note; RSS after the warm-up" \
     "$rss_first -> $rss_last KiB (max $rss_max); idle anonymous" \
     "${rss[before]} -> ${rss[$last]} KiB, shared ${shm[before]} ->" \
     "${shm[$last]} KiB, fds ${fds[before]} -> ${fds[$last]}, threads" \
     "${threads[before]} -> ${threads[$last]}; no error, no wrong byte"
exit $fail
