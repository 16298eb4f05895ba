#!/usr/bin/env bash
# The vhost-user backend dies under load: kill -9 qemu-storage-daemon while
# a client keeps 16 reads in flight.  The client must get errors within a
# few seconds (no request may hang), nbdkit must not spin afterwards, and
# it must still exit when asked.  Run under tests/vhost-user/qsd-run.sh.
source "$(dirname "$0")/functions.sh"
requires_qsd_daemon
set -x

start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2
nbd_pid=$(cat "$pidfile")

# The client: reads at depth 16 (and says so in $tmp/reading once 16 have
# succeeded) until told the backend is dead (the file $tmp/killed holds the
# time of the kill), then checks that errors come quickly and that every
# later request fails quickly too.
/usr/bin/python3 - "$(uri)" "$tmp/killed" "$tmp/reading" > "$tmp/client.out" 2>&1 <<'PY' &
import nbd, os, random, sys, time
uri, killed, reading = sys.argv[1], sys.argv[2], sys.argv[3]
h = nbd.NBD()
h.connect_uri(uri)
blocks = h.get_size() // 4096
inflight = []
ok = errs = 0
first_err = kill_time = None
start = time.time()

def issue():
    inflight.append(h.aio_pread(nbd.Buffer(4096),
                                random.randrange(blocks) * 4096))

while True:
    now = time.time()
    if kill_time is None and os.path.exists(killed):
        with open(killed) as f:
            kill_time = float(f.read())
    if kill_time is not None and now - kill_time > 3:
        print(f"FAIL: no error 3s after the kill ({ok} reads ok, "
              f"{len(inflight)} in flight)")
        sys.exit(1)
    if now - start > 60:
        print("FAIL: the backend was never killed")
        sys.exit(1)
    while first_err is None and len(inflight) < 16:
        issue()
    h.poll(100)
    for c in inflight[:]:
        try:
            done = h.aio_command_completed(c)
        except nbd.Error as e:
            done = True
            errs += 1
            if first_err is None:
                first_err = time.time()
                print(f"first error {first_err - (kill_time or first_err):.2f}s"
                      f" after the kill: {e}")
        if done:
            inflight.remove(c)
            if first_err is None:
                ok += 1
                if ok == 16:
                    open(reading, "w").close()
    if first_err is not None:
        break

# Everything still in flight must complete (its reply may have been on its
# way before the kill), and new requests must fail; all quickly.
deadline = time.time() + 5
old = set(inflight)
for i in range(32):
    issue()
while inflight and time.time() < deadline:
    h.poll(100)
    for c in inflight[:]:
        try:
            if h.aio_command_completed(c):
                if c not in old:
                    print("FAIL: a read succeeded after the backend died")
                    sys.exit(1)
                inflight.remove(c)
        except nbd.Error:
            errs += 1
            inflight.remove(c)
if inflight:
    print(f"FAIL: {len(inflight)} requests hang after the backend died")
    sys.exit(1)
if ok == 0:
    print("FAIL: no read succeeded before the kill")
    sys.exit(1)
print(f"ok: {ok} reads before, {errs} errors after the kill")
PY
client=$!
cleanup_fn "kill $client 2>/dev/null"

# Kill when the client is reading (a fixed sleep raced a slow start).
for _ in $(seq 600); do
    [ -e "$tmp/reading" ] && break
    kill -0 "$client" || break
    sleep 0.05
done
[ -e "$tmp/reading" ] || { cat "$tmp/client.out"; exit 1; }
kill -0 "$client"               # still reading
kill -9 "$VU_QSD_PID"
date +%s.%N > "$tmp/killed.new"
mv "$tmp/killed.new" "$tmp/killed"

wait_client "$client" 20 "$tmp/client.out"

# Idle now, and it still exits when asked.
assert_idle "$nbd_pid"
assert_exits_on_term "$nbd_pid"
