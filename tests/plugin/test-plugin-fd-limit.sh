#!/usr/bin/env bash
# Many connections against a small file-descriptor limit (ulimit -n 256 for
# nbdkit).  Threads stop adding private io_uring queues once half of the
# descriptors are in use and share the pool's queues, so far more
# connections are served than queues alone would allow; the connection
# that would leave nbdkit almost none is refused with an error naming the
# limit, instead of nbdkit's accept() failing with EMFILE, which nbdkit
# 1.32 retries in a loop (an error line each time, the client left
# hanging).  Afterwards the server still serves.  At ulimit -n 32 and 64
# the pool opens fewer queues (sixteen io_uring queues took so many that
# every connection was refused below 76) and serves clients.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
requires /usr/bin/python3 -c 'import nbd'
set -x

truncate -s 64M "$tmp/disk"
rm -f "$pidfile" "$sock"
bash -c 'ulimit -n 256 && exec "$@"' nbdkit "$NBDKIT" -U "$sock" \
    -P "$pidfile" -f "$PLUGIN" io_uring path="$tmp/disk" \
    > "$tmp/nbdkit.log" 2>&1 &
cleanup_fn _stop_nbdkit
for _ in $(seq 200); do [ -S "$sock" ] && [ -s "$pidfile" ] && break; sleep 0.1; done
[ -S "$sock" ]

timeout -k 5 30 /usr/bin/python3 - "$(uri)" <<'PY'
import nbd, os, sys
uri = sys.argv[1]
hs, refused = [], 0
for i in range(300):
    h = nbd.NBD()
    try:
        h.connect_uri(uri)
    except nbd.Error:
        refused += 1
        continue
    # Each connection writes its own block and reads it back, so that
    # its thread takes a queue.
    data = os.urandom(4096)
    h.pwrite(data, i * 4096)
    assert h.pread(4096, i * 4096) == data, f"connection {i}: data"
    hs.append(h)
print(f"{len(hs)} connections served at once, {refused} refused")
if len(hs) < 100:   # a queue each (3 descriptors a connection): about 60
    sys.exit(f"FAIL: only {len(hs)} connections served (queues took the descriptors?)")
if refused == 0:
    sys.exit("FAIL: 300 connections with 256 descriptors and none refused")
for h in hs:
    h.shutdown()
h = nbd.NBD()
h.connect_uri(uri)
h.pread(4096, 0)
print("ok: served again after the connections closed")
PY
grep "refusing a connection" "$tmp/nbdkit.log" | head -1
grep -q "refusing a connection: .*file descriptors in use (ulimit -n)" \
    "$tmp/nbdkit.log"
n=$(grep -c "accept: Too many open files" "$tmp/nbdkit.log" || true)
echo "accept() failures: $n"
[ "$n" -lt 10 ] || { echo "FAIL: nbdkit ran out of descriptors in accept()"; exit 1; }

# Low limits: the pool's queues leave room for connections.
for lim in 32 64; do
    _stop_nbdkit
    rm -f "$pidfile" "$sock"
    bash -c 'ulimit -n "$1" && shift && exec "$@"' limit "$lim" \
        "$NBDKIT" -U "$sock" -P "$pidfile" -f "$PLUGIN" io_uring \
        path="$tmp/disk" > "$tmp/nbdkit-$lim.log" 2>&1 &
    for _ in $(seq 200); do [ -S "$sock" ] && [ -s "$pidfile" ] && break; sleep 0.1; done
    [ -S "$sock" ]
    timeout -k 5 30 /usr/bin/python3 - "$(uri)" "$lim" <<'PY'
import nbd, sys
uri, lim = sys.argv[1], sys.argv[2]
hs = []
for i in range(3):
    h = nbd.NBD()
    h.connect_uri(uri)   # fails the test if refused
    h.pread(4096, i * 4096)
    hs.append(h)
print(f"ulimit -n {lim}: 3 connections served")
PY
    n=$(grep -c "accept: Too many open files" "$tmp/nbdkit-$lim.log" || true)
    [ "$n" -eq 0 ] || { echo "FAIL: accept() ran out of descriptors at $lim"; exit 1; }
done
