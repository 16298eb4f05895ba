#!/usr/bin/env bash
# qemu-storage-daemon killed and restarted under running NBD clients (run
# under tests/vhost-user/qsd-run.sh).  Three connections write and flush,
# one keeps reads in flight; then kill -9 the daemon: what is in flight and
# every new request fails with EIO (not EINVAL) within 3 s.  A daemon with
# a different-size export on the same socket is refused (requests keep
# failing), and so is a new connection (in the handshake).  The right
# daemon comes back: the same three connections succeed again, the data
# flushed before the kill is all there, and they write and read on.
# Then with reconnect-wait=20: reads and writes in flight when the daemon
# is killed (and the read that finds it gone) are run again once it is
# back, a second later: all succeed, and the writes are there.  A read
# made while it is still down waits for it too.  And with nbdkit's retry
# filter (reconnect-wait=0, the default), a read across the restart
# succeeds without the client seeing an error: the filter reopens and
# retries until the device is back.
source "$(dirname "$0")/functions.sh"
requires_qsd_daemon
set -x


start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2 \
    2> "$tmp/nbdkit.log"

/usr/bin/python3 - "$(uri)" "$tmp" > "$tmp/client.out" 2>&1 <<'PY' &
import errno, nbd, os, random, sys, time
uri, tmp = sys.argv[1], sys.argv[2]
from markers import wait_for, mark

hs = [nbd.NBD() for _ in range(3)]
for h in hs:
    h.connect_uri(uri)
size = hs[0].get_size()
region = size // 4
data = []
for i, h in enumerate(hs):
    d = os.urandom(4 << 20)
    h.pwrite(d, i * region)
    h.flush()
    data.append(d)

# Reads in flight on the fourth quarter while the daemon dies.
r = hs[0]
inflight = []
errs = []
def reap():
    # The kill lands before the shell marks it, so a request can fail in
    # either loop: collect the errors in both.
    for c in inflight[:]:
        try:
            if r.aio_command_completed(c):
                inflight.remove(c)
        except nbd.Error as e:
            inflight.remove(c)
            errs.append(e.errnum)
mark("written")
while not os.path.exists(os.path.join(tmp, "killed")):
    while not errs and len(inflight) < 8:
        inflight.append(r.aio_pread(nbd.Buffer(65536),
                                    3 * region + random.randrange(64) * 65536))
    r.poll(10)
    reap()
t0 = time.time()
while inflight and time.time() - t0 < 3:
    r.poll(100)
    reap()
if inflight:
    sys.exit(f"FAIL: {len(inflight)} requests still in flight 3 s after the kill")
if any(e != errno.EIO for e in errs):
    sys.exit(f"FAIL: in flight at the kill: errors {errs} (want EIO)")
print(f"in flight at the kill: errors {errs}")

# Down: every connection fails fast, with EIO.
def expect_eio(what):
    for i, h in enumerate(hs):
        t = time.time()
        try:
            h.pread(4096, i * region)
        except nbd.Error as e:
            if e.errnum != errno.EIO:
                sys.exit(f"FAIL: {what}: connection {i}: {e} (want EIO)")
        else:
            sys.exit(f"FAIL: {what}: connection {i}: a read succeeded")
        if time.time() - t > 3:
            sys.exit(f"FAIL: {what}: the error took {time.time() - t:.1f} s")
expect_eio("backend killed")
try:
    n = nbd.NBD()
    n.connect_uri(uri)
    sys.exit("FAIL: a new connection was accepted while the device is gone")
except nbd.Error as e:
    print(f"new connection while down: {e}")
mark("checked-down")
wait_for("wrong-backend")
time.sleep(1)
expect_eio("different-size backend")
mark("checked-wrong")

# Back: the same connections work again.
wait_for("restarted")
t = time.time()
for i, h in enumerate(hs):
    while True:
        try:
            h.pread(4096, i * region)
            break
        except nbd.Error:
            if time.time() - t > 15:
                sys.exit("FAIL: not back 15 s after the restart")
            time.sleep(0.05)
print(f"back {time.time() - t:.2f} s after the restart")
for i, h in enumerate(hs):
    if h.pread(4 << 20, i * region) != data[i]:
        sys.exit(f"FAIL: connection {i}: data flushed before the kill is lost")
    d = os.urandom(1 << 20)
    h.pwrite(d, i * region + (8 << 20))
    h.flush()
    if h.pread(1 << 20, i * region + (8 << 20)) != d:
        sys.exit(f"FAIL: connection {i}: read after reconnect is wrong")
print("ok: the same connections work after the restart")
PY
client=$!
cleanup_fn "kill $client 2>/dev/null"

wait_marker written
sleep 0.5
kill -9 "$VU_QSD_PID"
touch "$tmp/killed"
wait_marker checked-down || { cat "$tmp/client.out"; exit 1; }

# The wrong device: the same socket, another size.
qemu-img create -q -f raw "$tmp/other.img" 32M
start_qsd "$tmp/other.img"
touch "$tmp/wrong-backend"
wait_marker checked-wrong || { cat "$tmp/client.out"; exit 1; }
kill -9 "$qsd_pid"

start_qsd "$VU_IMG"
touch "$tmp/restarted"
wait_client "$client" 60 "$tmp/client.out"
cat "$tmp/nbdkit.log"
grep -q "refusing the reconnected device" "$tmp/nbdkit.log"
_stop_nbdkit

# reconnect-wait=20: what is in flight at the loss, and a read while the
# daemon is down, wait for it and succeed.
start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2 \
    reconnect-wait=20 2> "$tmp/nbdkit.log"
/usr/bin/python3 - "$(uri)" "$tmp" > "$tmp/client2.out" 2>&1 <<'PY' &
import nbd, os, sys, time
uri, tmp = sys.argv[1], sys.argv[2]
from markers import wait_for, mark
h, w = nbd.NBD(), nbd.NBD()
h.connect_uri(uri)
w.connect_uri(uri)
want = h.pread(65536, 0)
# Writes of known data in flight on w, reads on h, until the kill.
data = {}
reads, writes = [], []
def reap():
    for conn, lst in ((h, reads), (w, writes)):
        for c in lst[:]:
            if conn.aio_command_completed(c):
                lst.remove(c)
mark("connected")
k = 0
while not os.path.exists(os.path.join(tmp, "killed2")):
    while len(reads) < 8:
        reads.append(h.aio_pread(nbd.Buffer(65536), 0))
    while len(writes) < 8:
        off = (32 << 20) + k % 256 * 65536     # within 32-48 MiB
        k += 1
        d = os.urandom(65536)
        data[off] = d
        writes.append(w.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(d)), off))
    h.poll(1)
    w.poll(1)
    try:
        reap()
    except nbd.Error as e:
        sys.exit(f"FAIL: a request failed (in flight at the kill, or before it): {e}")
print(f"in flight at the kill: {len(reads)} reads, {len(writes)} writes")
t = time.time()
try:
    while reads or writes:
        h.poll(100)
        w.poll(100)
        reap()
        if time.time() - t > 20:
            sys.exit("FAIL: requests in flight at the loss still not done after 20 s")
except nbd.Error as e:
    sys.exit(f"FAIL: a request in flight at the loss failed: {e}")
print(f"ok: every request in flight at the loss succeeded, {time.time() - t:.2f} s later")
for o, d in data.items():
    if h.pread(65536, o) != d:
        sys.exit(f"FAIL: the write at {o} is not there")
print(f"ok: all {len(data)} writes are there")
mark("idle2")
wait_for("killed2b")
t = time.time()
got = h.pread(65536, 0)         # made while the daemon is down
assert got == want, "wrong data after the wait"
if time.time() - t < 0.5:
    sys.exit("FAIL: the read did not wait for the daemon")
print(f"ok: the read waited {time.time() - t:.2f} s and succeeded")
PY
client=$!
cleanup_fn "kill $client 2>/dev/null"
wait_marker connected
sleep 0.5
kill -9 "$qsd_pid"
touch "$tmp/killed2"
sleep 1
start_qsd "$VU_IMG"
# Again with nothing in flight: the read finds the daemon gone and waits.
wait_marker idle2 || { cat "$tmp/client2.out"; exit 1; }
kill -9 "$qsd_pid"
touch "$tmp/killed2b"
sleep 1
start_qsd "$VU_IMG"
wait_client "$client" 60 "$tmp/client2.out"
_stop_nbdkit

# --filter=retry: the client sees no error at all.
if ! "$NBDKIT" --filter=retry null --dump-plugin >/dev/null 2>&1; then
    echo "note: no nbdkit-retry-filter, its part is left out"
else
    start_nbdkit --filter=retry virtio-blk-vhost-user path="$VU_SOCK" \
        num-queues=2 retry-delay=1 retries=5 2> "$tmp/nbdkit.log"
    rm -f "$tmp/connected" "$tmp/killed3"
    /usr/bin/python3 - "$(uri)" "$tmp" > "$tmp/client3.out" 2>&1 <<'PY' &
import nbd, os, sys, time
uri, tmp = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_uri(uri)
data = os.urandom(65536)
h.pwrite(data, 1 << 20)
h.flush()
open(os.path.join(tmp, "connected"), "w").close()
while not os.path.exists(os.path.join(tmp, "killed3")):
    time.sleep(0.02)
t = time.time()
assert h.pread(65536, 1 << 20) == data, "wrong data through the retry filter"
print(f"ok: read through the retry filter after {time.time() - t:.2f} s")
PY
    client=$!
    cleanup_fn "kill $client 2>/dev/null"
    wait_marker connected
    kill -9 "$qsd_pid"
    touch "$tmp/killed3"
    sleep 1
    start_qsd "$VU_IMG"
    wait_client "$client" 60 "$tmp/client3.out"
fi
_stop_nbdkit

# The daemon restarted while nbdkit was idle (reconnect-wait=0, the
# default): nobody notices the loss until the next connection or request,
# and by then the daemon is back.  The first new connection must be
# served (the loss it finds waits for the first reconnect attempt), and on
# a connection opened before, only the read that met the old instance may
# fail: the next one is served.
start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2 \
    2> "$tmp/nbdkit.log"
rm -f "$tmp/connected" "$tmp/killed4"
/usr/bin/python3 - "$(uri)" "$tmp" > "$tmp/client4.out" 2>&1 <<'PY' &
import nbd, os, sys, time
uri, tmp = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_uri(uri)
want = h.pread(65536, 0)
open(os.path.join(tmp, "connected"), "w").close()
while not os.path.exists(os.path.join(tmp, "killed4")):
    time.sleep(0.02)
n = nbd.NBD()
n.connect_uri(uri)              # the first connection after the restart
assert n.pread(65536, 0) == want, "wrong data on the new connection"
print("ok: the first new connection after an idle restart is served")
try:
    h.pread(65536, 0)
except nbd.Error as e:
    print(f"the old connection's read that met the old instance: {e}")
assert h.pread(65536, 0) == want, "wrong data on the old connection"
print("ok: the old connection is served again")
PY
client=$!
cleanup_fn "kill $client 2>/dev/null"
wait_marker connected
kill -9 "$qsd_pid"
start_qsd "$VU_IMG"
sleep 1
touch "$tmp/killed4"
wait_client "$client" 60 "$tmp/client4.out"
