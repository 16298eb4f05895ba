#!/usr/bin/env bash
# The error a dying queue logs names it by its libblkio index, also for a
# private queue (io_uring: a thread beyond the 16 pool queues gets a queue
# added for it alone, which is not in the pool's array).  32 nbdkit threads
# on one connection each get a queue (and so does the connection's own
# thread, which reads a block when it opens); then blkioq_do_io() starts
# failing (LD_PRELOAD shim) and every queue that is used again logs its
# index, which must be one of those 33.  (The delay filter keeps every thread busy.)
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
requires /usr/bin/python3 -c 'import nbd'
requires_fail_shim
set -x

# Buffered (zero copy): private queues are only added without bounce
# buffers.
truncate -s 64M "$tmp/disk"

export FAIL_DO_IO_FILE=$tmp/fail
LD_PRELOAD=$FAIL_DO_IO_SHIM start_nbdkit --threads 32 --filter=delay io_uring \
    path="$tmp/disk" rdelay=20ms thread-model=parallel reconnect=false 2> "$tmp/nbdkit.log"

timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$FAIL_DO_IO_FILE" <<'PY'
import nbd, sys, time
uri, trigger = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_uri(uri)

def burst(n):
    cmds = [h.aio_pread(nbd.Buffer(65536), (i % 1000) * 65536)
            for i in range(n)]
    errs = 0
    while cmds:
        h.poll(100)
        for c in cmds[:]:
            try:
                if h.aio_command_completed(c):
                    cmds.remove(c)
            except nbd.Error:
                cmds.remove(c)
                errs += 1
    return errs

# Keep all 32 threads busy for a while: each takes a queue of its own.
end = time.time() + 1
while time.time() < end:
    burst(64)
open(trigger, "w").close()
for i in range(10):
    burst(64)
print("ok")
PY

"$NBDKIT" --version
grep "queue .* failed" "$tmp/nbdkit.log" | head -40
# Every index named is one of the 33 queues, and private ones (>= 16)
# were among them.
idx=$(sed -n 's/.*queue \(-\?[0-9]*\) failed.*/\1/p' "$tmp/nbdkit.log" | sort -n | uniq)
echo "indices: $idx"
[ -n "$idx" ]
max=0
for i in $idx; do
    if [ "$i" -lt 0 ] || [ "$i" -ge 33 ]; then
        echo "FAIL: queue index $i is not one of the 33 queues"
        exit 1
    fi
    [ "$i" -gt "$max" ] && max=$i
done
if [ "$max" -lt 16 ]; then
    echo "FAIL: no private queue (index >= 16) was used"
    exit 1
fi
