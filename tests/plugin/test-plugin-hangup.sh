#!/usr/bin/env bash
# Clients that queue many requests and hang up without waiting, again and
# again, four at once, while two others keep reading: nbdkit stays up and
# the readers see correct data.  nbdkit before 1.33.10 (Debian 12 has
# 1.32) aborts here with a parallel plugin ("raw_send_socket: Assertion
# `sock >= 0' failed"); the plugin must pick a thread model that survives
# it on the nbdkit it runs in.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
requires /usr/bin/python3 -c 'import nbd'
set -x

make_random "$tmp/disk" $((96 << 20))
start_nbdkit io_uring path="$tmp/disk" 2> "$tmp/nbdkit.log"
nbd_pid=$(cat "$pidfile")

timeout -k 5 120 /usr/bin/python3 - "$(uri)" "$tmp/disk" <<'PY'
import multiprocessing as mp, nbd, random, sys, time
uri, path = sys.argv[1], sys.argv[2]
MiB = 1 << 20

def storm(k):
    """Queue 64 reads of 1 MiB and a write, then hang up; 30 times."""
    with open(path, "rb") as f:
        f.seek(95 * MiB)
        tail = f.read(4096)
    for r in range(30):
        try:
            h = nbd.NBD()
            h.connect_uri(uri)
        except nbd.Error as e:
            return f"storm {k} round {r}: connect: {e}"
        for i in range(64):
            h.aio_pread(nbd.Buffer(MiB), (i % 90) * MiB)
        h.aio_pwrite(tail, 95 * MiB)
        del h                   # closes the socket, requests in flight
    return None

def reader(k, stop):
    """Read and check until told to stop."""
    with open(path, "rb") as f:
        want = f.read(90 * MiB)
    h = nbd.NBD()
    h.connect_uri(uri)
    rng = random.Random(k)
    n = 0
    while not stop.is_set() or n < 10:
        off = rng.randrange(90 * MiB // 65536) * 65536
        got = h.pread(65536, off)
        if got != want[off:off + 65536]:
            return f"reader {k}: wrong data at {off}"
        n += 1
    h.shutdown()
    return None

with mp.Manager() as m:
    stop = m.Event()
    with mp.Pool(6) as p:
        readers = [p.apply_async(reader, (k, stop)) for k in range(2)]
        storms = [p.apply_async(storm, (k,)) for k in range(4)]
        errs = [s.get(timeout=100) for s in storms]
        stop.set()
        errs += [r.get(timeout=30) for r in readers]
errs = [e for e in errs if e]
if errs:
    sys.exit("FAIL: " + "; ".join(errs))
print("ok: readers saw correct data through 120 hang-ups")
PY
if ! kill -0 "$nbd_pid" 2>/dev/null; then
    tail -5 "$tmp/nbdkit.log"
    echo "FAIL: nbdkit died"
    exit 1
fi
grep -i "assert" "$tmp/nbdkit.log" && exit 1
nbdsh -u "$(uri)" -c 'assert h.get_size() == 96 << 20'
