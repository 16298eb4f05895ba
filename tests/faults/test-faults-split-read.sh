#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# A large read cut into pieces (read-split=) fails as one request when a
# piece in its middle fails.  qemu-storage-daemon serves a vhost-user-blk
# export through a blkdebug node (qsd-blkdebug.sh) that fails reads of
# sector 3080 (1 MiB + 516 KiB: the third 256 KiB piece of the 1 MiB read
# at 1 MiB) and of sectors 6656 and 7681 (the second and fourth pieces of
# the 1 MiB read at 3 MiB).  An NBD client must get EIO for each of those
# reads, once (nbdkit logs one error per failed request), and correct
# data for every read next to them, again and again (a failed piece does
# not leak its slot).  Where strace can trace the daemon, its reads of
# the image show that a 1 MiB read did reach it as 4 reads of 256 KiB
# with read-split=256k, and as one of 1 MiB with read-split=0.
if [ -z "${VU_SOCK:-}" ]; then
    here=$(cd "$(dirname "$0")" && pwd)
    export QSD_REAL=${QSD:-/usr/bin/qemu-storage-daemon}
    export QSD=$here/qsd-blkdebug.sh
    export BLKDEBUG_RULES='[{"event":"none","iotype":"read","errno":5,"sector":3080},
 {"event":"none","iotype":"read","errno":5,"sector":6656},
 {"event":"none","iotype":"read","errno":5,"sector":7681}]'
    exec "$here/../vhost-user/qsd-run.sh" --size 8M -- "$0" "$@"
fi
source "$(dirname "$0")/../plugin/functions.sh"
requires_driver virtio-blk-vhost-user
requires /usr/bin/python3 -c 'import nbd'
set -x

run_client ()
{
    timeout -k 5 120 /usr/bin/python3 - "$(uri)" <<'PY'
import errno, os, sys
import nbd

uri = sys.argv[1]
MiB, K = 1 << 20, 1 << 10
h = nbd.NBD()
h.connect_uri(uri)
failures = []

# Writes are not failed: fill the 8 MiB with known data.
data = os.urandom(8 * MiB)
for off in range(0, 8 * MiB, MiB):
    h.pwrite(data[off:off + MiB], off)
h.flush()

def read(off, n, err=None):
    try:
        got = h.pread(n, off)
    except nbd.Error as e:
        if err is None or e.errno != errno.errorcode[err]:
            failures.append(f"read {off:#x}+{n:#x}: {e}")
        return
    if err is not None:
        failures.append(f"read {off:#x}+{n:#x}: succeeded, expected EIO")
    elif got != data[off:off + n]:
        failures.append(f"read {off:#x}+{n:#x}: wrong data")

for _ in range(20):
    read(MiB, MiB, errno.EIO)           # third piece fails
    read(3 * MiB, MiB, errno.EIO)       # second and fourth fail
    read(2 * MiB, MiB)                  # between them
    read(MiB, 512 * K)                  # the first two pieces alone
    read(MiB + 512 * K, 512 * K, errno.EIO)
    read(MiB - 3 * K, 2 * MiB + 5 * K, errno.EIO)
    read(5 * MiB + 512, 3 * MiB - 4096) # odd offset, three bounce chunks
h.shutdown()
if failures:
    print("\n".join(failures[:20]))
    sys.exit(1)
print("ok")
PY
}

# Each failed request is one error line of nbdkit's: 20 rounds of 4
# failing reads.
check_log ()
{
    local n
    n=$(grep -c "error: read: offset" "$tmp/nbdkit.log" || true)
    echo "nbdkit logged $n failed reads"
    [ "$n" -eq 80 ]
}

# How many reads of LEN bytes the daemon makes of its image while one
# 1 MiB NBD read at 4 MiB runs; "-" if strace cannot tell.
backend_reads ()
{
    local n
    if ! command -v strace >/dev/null; then
        echo -
        return
    fi
    strace -f -qq -e trace=pread64,preadv,preadv2 -o "$tmp/strace" \
        -p "$VU_QSD_PID" 2>/dev/null &
    local st=$!
    sleep 1
    if ! kill -0 $st 2>/dev/null; then
        echo -
        return
    fi
    nbdsh -u "$(uri)" -c 'h.pread(1 << 20, 4 << 20)' >&2
    sleep 0.5
    kill -INT $st
    wait $st || true
    n=$(grep -c "= $1\$" "$tmp/strace" || true)
    echo "$n"
}

# Is the 1 MiB read LEN-byte reads, WANT of them, at the daemon?
check_split ()
{
    local n
    n=$(backend_reads "$1")
    if [ "$n" = - ]; then
        echo "strace cannot trace the daemon: pieces not counted"
    elif [ "$n" -ne "$2" ]; then
        echo "FAIL: the daemon made $n reads of $1 bytes, expected $2"
        cat "$tmp/strace"
        return 1
    fi
}

for model in auto parallel; do
    start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2 \
        thread-model=$model 2> "$tmp/nbdkit.log"
    run_client
    check_split 262144 4
    _stop_nbdkit
    check_log
done

start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" read-split=0 \
    2> "$tmp/nbdkit.log"
run_client
check_split 1048576 1
_stop_nbdkit
check_log
