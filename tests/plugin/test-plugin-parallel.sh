#!/usr/bin/env bash
# One, two, then four clients at once, each writing (many requests in
# flight) and reading back its own disjoint range; afterwards the file
# holds what every client wrote.  Through the page cache, where io_uring
# completes most requests inline, then with direct=true, where every
# completion comes later: one client's threads each have a queue of their
# own (and wait inside blkioq_do_io), four clients' threads share queues
# (and wait through the completion fd).
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
set -x

MiB=$((1024 * 1024))
size=$((32 * MiB))
truncate -s $size "$tmp/disk"
make_random "$tmp/data" $size

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

modes=(cached)
if [ "$(direct_works)" = true ]; then
    modes+=(direct)
else
    echo "O_DIRECT not supported in $tmp: direct=true part skipped"
fi

for mode in "${modes[@]}"; do
    truncate -s 0 "$tmp/disk"
    truncate -s $size "$tmp/disk"
    if [ "$mode" = direct ]; then
        start_nbdkit io_uring path="$tmp/disk" direct=true thread-model=parallel
    else
        start_nbdkit io_uring path="$tmp/disk" thread-model=parallel
    fi
    for n in 1 2 4; do
        pids=()
        for i in $(seq 0 $((n - 1))); do
            timeout -k 5 60 /usr/bin/python3 "$tmp/client.py" "$(uri)" \
                "$tmp/data" $i $n &
            pids+=($!)
        done
        for p in "${pids[@]}"; do
            wait "$p"
        done
        cmp "$tmp/data" "$tmp/disk"
        # The next round must write everything again.
        truncate -s 0 "$tmp/disk"
        truncate -s $size "$tmp/disk"
    done
    _stop_nbdkit
done
