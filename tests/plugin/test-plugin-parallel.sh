#!/usr/bin/env bash
# Two, then four clients at once, each writing (many requests in flight)
# and reading back its own disjoint range; afterwards the file holds what
# every client wrote.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
set -x

MiB=$((1024 * 1024))
size=$((32 * MiB))
truncate -s $size "$tmp/disk"
make_random "$tmp/data" $size
start_nbdkit io_uring path="$tmp/disk"

cat > "$tmp/client.py" <<'PY'
# client.py URI DATAFILE INDEX NCLIENTS: write slice INDEX of NCLIENTS with
# up to 32 requests in flight, then read it back and compare.
import nbd, sys
uri, datafile, idx, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = open(datafile, "rb").read()
part = len(data) // n
base = idx * part
chunk = 64 * 1024 + 512 * idx      # different sizes per client
h = nbd.NBD()
h.connect_uri(uri)
off = 0
while off < part:
    while h.aio_in_flight() >= 32:
        h.poll(-1)
    n_ = min(chunk, part - off)
    h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data[base + off:base + off + n_])),
                 base + off)
    off += n_
while h.aio_in_flight() > 0:
    h.poll(-1)
h.flush()
got = bytearray()
off = 0
while off < part:
    n_ = min(chunk, part - off)
    got += h.pread(n_, base + off)
    off += n_
assert got == data[base:base + part], f"client {idx}: read back differs"
h.shutdown()
PY

for n in 2 4; do
    truncate -s 0 "$tmp/disk"
    truncate -s $size "$tmp/disk"
    pids=()
    for i in $(seq 0 $((n - 1))); do
        timeout -k 5 60 /usr/bin/python3 "$tmp/client.py" "$(uri)" "$tmp/data" $i $n &
        pids+=($!)
    done
    for p in "${pids[@]}"; do
        wait "$p"
    done
    cmp "$tmp/data" "$tmp/disk"
done
