#!/usr/bin/env bash
# One blkioq_do_io() fails with an error that does not say the device is
# gone (ENOMEM, through the fail-do-io shim): the queue is dead, and the
# instance is re-created in the background, so the server serves again,
# on the same connection and on new ones (the request in flight may fail
# or run again on the new instance).  Before, the queue stayed dead:
# every later request of every connection given that queue failed.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
requires /usr/bin/python3 -c 'import nbd'
requires_fail_shim
set -x

# One queue and no private ones (direct=true where the file system has
# O_DIRECT; num-queues=1 either way), so that later connections get the
# queue that failed.
truncate -s 64M "$tmp/disk"
direct=$(direct_works)

export FAIL_DO_IO_ONCE_FILE=$tmp/fail-once
LD_PRELOAD=$FAIL_DO_IO_SHIM start_nbdkit io_uring path="$tmp/disk" \
    direct=$direct num-queues=1 2> "$tmp/nbdkit.log"

timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$FAIL_DO_IO_ONCE_FILE" <<'PY'
import nbd, os, sys, time
uri, once = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_uri(uri)
h.pwrite(b"a" * 4096, 0)
with open(once, "w") as f:
    f.write("12\n")                          # ENOMEM
# The request in flight at the failure may fail, or run again on the
# re-created instance.
for i in range(20):
    try:
        h.pread(4096, 0)
    except nbd.Error as e:
        print(f"request {i} failed: {e}")
    if not os.path.exists(once):
        break
assert not os.path.exists(once), "blkioq_do_io() was never called"

def serves(conn):
    try:
        conn.pwrite(b"b" * 4096, 4096)
        return conn.pread(4096, 4096) == b"b" * 4096
    except nbd.Error:
        return False

deadline = time.time() + 20
while not serves(h):
    if time.time() > deadline:
        sys.exit("FAIL: the connection still fails 20 s after one failed call")
    time.sleep(0.1)
h2 = nbd.NBD()
h2.connect_uri(uri)
for i in range(10):
    if not serves(h2):
        sys.exit("FAIL: a new connection fails after the queue failed once")
print("ok: served again after one failed blkioq_do_io()")
PY
grep "queue 0 failed" "$tmp/nbdkit.log"
