#!/usr/bin/env bash
# A flush after a loss (run under tests/vhost-user/qsd-run.sh).  Writes a
# lost device had acknowledged but not flushed may be gone with it (a
# backend's caches), and a flush on the reconnected device cannot cover
# them: the next flush of every connection open at the loss fails with
# EIO, once, and a connection opened after it flushes as usual.  A loss
# with every write flushed (or written with FUA) fails no flush.  A flush
# in flight at the loss (the daemon stopped, then killed) is run again on
# the reconnected device and fails all the same: the writes it was to
# cover went down with the old one; so does one begun after it on another
# connection, which covers nothing itself, whichever finishes first.
source "$(dirname "$0")/functions.sh"
requires_qsd_daemon
set -x

start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" reconnect-wait=20 \
    2> "$tmp/nbdkit.log"

/usr/bin/python3 - "$(uri)" > "$tmp/client.out" 2>&1 <<'PY' &
import errno, nbd, os, sys, time
uri = sys.argv[1]
from markers import wait_for, mark
def connect():
    h = nbd.NBD()
    h.connect_uri(uri)
    return h
def flush(name, h, want_eio):
    try:
        h.flush()
    except nbd.Error as e:
        if want_eio and e.errnum == errno.EIO:
            print(f"{name}: flush failed as it must: {e}")
            return
        sys.exit(f"FAIL: {name}: flush: {e}")
    if want_eio:
        sys.exit(f"FAIL: {name}: flush succeeded after a loss of unflushed writes")
def lose_device(n):
    # The daemon is killed and restarted; the next request finds the loss
    # and is run again on the reconnected device.
    mark(f"written{n}")
    wait_for(f"restarted{n}")
    r.pread(4096, 0)
    print(f"loss {n} found and ridden out by a read")

a, b, r = connect(), connect(), connect()
b.pwrite(os.urandom(65536), 0)
b.flush()
a.pwrite(os.urandom(65536), 1 << 20)        # acknowledged, not flushed
lose_device(1)
flush("a", a, True)
flush("a again", a, False)
flush("b", b, True)          # open at the loss: one shared device
flush("r", r, True)
flush("b again", b, False)
c = connect()
flush("c (opened after the loss)", c, False)

# Everything flushed, and one write with FUA: no flush fails.
a.pwrite(os.urandom(65536), 2 << 20)
c.flush()
a.pwrite(os.urandom(65536), 3 << 20, nbd.CMD_FLAG_FUA)
lose_device(2)
for name, h in (("a", a), ("b", b), ("c", c), ("r", r)):
    flush(name + " after a clean loss", h, False)

# Flushes in flight when the device is lost: a's covers a write, b's
# (begun after it) covers nothing itself, and may finish first.  Both
# fail: the write went down with the device before either could make it
# durable.
def must_fail(name, h, cookie, t):
    try:
        while not h.aio_command_completed(cookie):
            h.poll(100)
            if time.time() - t > 30:
                sys.exit(f"FAIL: {name}: the flush in flight at the loss never completed")
        sys.exit(f"FAIL: {name}: the flush in flight at the loss succeeded")
    except nbd.Error as e:
        if e.errnum != errno.EIO:
            sys.exit(f"FAIL: {name}: the flush in flight at the loss: {e} (want EIO)")
        print(f"{name}: the flush in flight at the loss failed as it must: {e}")
a.pwrite(os.urandom(65536), 4 << 20)
mark("written3")
wait_for("stopped3")
cookie = a.aio_flush()
t = time.time()
while time.time() - t < 0.3:
    a.poll(50)
if a.aio_command_completed(cookie):
    sys.exit("FAIL: the flush completed with the daemon stopped")
cookie_b = b.aio_flush()
while time.time() - t < 0.6:
    b.poll(50)
mark("flushing3")
must_fail("b", b, cookie_b, t)
must_fail("a", a, cookie, t)
flush("a after it", a, False)
flush("b after it", b, False)
flush("r (open at the loss)", r, True)
flush("r again", r, False)
print("ok: a loss of unflushed writes fails each open connection's next flush once")
PY
client=$!
cleanup_fn "kill $client 2>/dev/null"

qsd=$VU_QSD_PID
for n in 1 2; do
    wait_marker "written$n" || { cat "$tmp/client.out"; exit 1; }
    kill -9 "$qsd"
    start_qsd "$VU_IMG"
    qsd=$qsd_pid
    touch "$tmp/restarted$n"
done
# The daemon stops with the flush in flight, then dies and comes back.
wait_marker written3 || { cat "$tmp/client.out"; exit 1; }
kill -STOP "$qsd"
touch "$tmp/stopped3"
wait_marker flushing3 || { kill -CONT "$qsd"; cat "$tmp/client.out"; exit 1; }
kill -9 "$qsd"
start_qsd "$VU_IMG"
wait_client "$client" 120 "$tmp/client.out"
grep -q "acknowledged but not flushed" "$tmp/nbdkit.log"
