#!/usr/bin/env bash
# blkioq_do_io() itself starts failing (an LD_PRELOAD shim makes it return
# -ENOTCONN) while a client keeps 16 reads in flight: the requests in
# flight and every later one fail with that error within 3 s, nbdkit does
# not spin, and it still exits when asked.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
requires /usr/bin/python3 -c 'import nbd'
requires_fail_shim
set -x

# A slow-ish device keeps requests in flight: O_DIRECT if the file system
# has it.
truncate -s 64M "$tmp/disk"
direct=$(direct_works)

export FAIL_DO_IO_FILE=$tmp/fail
LD_PRELOAD=$FAIL_DO_IO_SHIM start_nbdkit io_uring path="$tmp/disk" \
    direct=$direct num-queues=2 2> "$tmp/nbdkit.log"
nbd_pid=$(cat "$pidfile")

/usr/bin/python3 - "$(uri)" "$FAIL_DO_IO_FILE" > "$tmp/client.out" 2>&1 <<'PY' &
import nbd, os, random, sys, time
uri, trigger = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_uri(uri)
blocks = h.get_size() // 4096
inflight = []
ok = 0
start = time.time()
fail_time = None

def issue():
    inflight.append(h.aio_pread(nbd.Buffer(4096),
                                random.randrange(blocks) * 4096))

# Read for a while, then pull the trigger with reads in flight.
while True:
    while len(inflight) < 16:
        issue()
    h.poll(100)
    for c in inflight[:]:
        if h.aio_command_completed(c):
            inflight.remove(c)
            ok += 1
    if ok > 200 and time.time() - start > 0.5:
        break
open(trigger, "w").close()
fail_time = time.time()
for i in range(32):
    issue()
errs = 0
while inflight and time.time() - fail_time < 3:
    h.poll(100)
    for c in inflight[:]:
        try:
            if h.aio_command_completed(c):
                inflight.remove(c)     # completed before the trigger
        except nbd.Error as e:
            inflight.remove(c)
            errs += 1
            if errs == 1:
                print(f"first error after {time.time() - fail_time:.2f}s: {e}")
if inflight:
    print(f"FAIL: {len(inflight)} requests hang 3s after do_io failed")
    sys.exit(1)
if errs < 32:
    print(f"FAIL: only {errs} errors, expected the 32 later reads to fail")
    sys.exit(1)
print(f"ok: {ok} reads before, {errs} errors after, "
      f"{time.time() - fail_time:.2f}s")
PY
client=$!
cleanup_fn "kill $client 2>/dev/null"
wait_client "$client" 30 "$tmp/client.out"

# Idle now, and it still exits when asked.
assert_idle "$nbd_pid"
assert_exits_on_term "$nbd_pid"

# The server logged why: the failing call and its error.
cat "$tmp/nbdkit.log"
grep -q "queue [0-9]* failed.*blkioq_do_io" "$tmp/nbdkit.log"
