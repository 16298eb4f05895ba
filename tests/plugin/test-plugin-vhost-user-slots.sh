#!/usr/bin/env bash
# Many requests of mixed sizes in flight on one vhost-user queue (run
# under tests/vhost-user/qsd-run.sh): the queue has 128 bounce slots, 16
# with 1 MiB chunks and the rest with 64 KiB ones, so small requests do
# not wait for the large chunks.  Four clients with 32 requests each in
# flight write their own range in pieces of 4 KiB to 3 MiB (pieces larger
# than a small chunk land on small slots once the large ones are busy,
# and threads wait for slots), then read it back the same way; the data
# must match and no client may hang.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 -c 'import nbd'
requires_vhost_user_export
set -x

start_nbdkit -v virtio-blk-vhost-user path="$VU_SOCK" num-queues=1 \
    thread-model=parallel 2> "$tmp/nbdkit.log"
grep -q "1 queue(s), 128 slot(s) each, bounce buffers" "$tmp/nbdkit.log"

cat > "$tmp/client.py" <<'PY'
# client.py URI SIZE INDEX NCLIENTS
import nbd, os, random, sys
uri, size, idx, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
part = size // n
base = idx * part
rng = random.Random(idx)
small = [4096, 8192, 61440, 65536, 69632, 135168]
large = [512 << 10, 1 << 20, (1 << 20) + 65536, 3 << 20]
h = nbd.NBD()
h.connect_uri(uri)

def run(reqs):
    for r in reqs:
        while h.aio_in_flight() >= 32:
            h.poll(-1)
        r()
    while h.aio_in_flight() > 0:
        h.poll(-1)

npieces = 0
for rnd in range(3):
    data = os.urandom(part)
    pieces, off = [], 0
    while off < part:
        ln = min(rng.choice(large if rng.random() < 0.1 else small), part - off)
        pieces.append((off, ln))
        off += ln
    npieces += len(pieces)
    run([lambda o=o, l=l: h.aio_pwrite(nbd.Buffer.from_bytearray(
            bytearray(data[o:o + l])), base + o) for o, l in pieces])
    bufs = []
    def read(o, l):
        b = nbd.Buffer(l)
        bufs.append((o, l, b))
        h.aio_pread(b, base + o)
    rng.shuffle(pieces)
    run([lambda o=o, l=l: read(o, l) for o, l in pieces])
    for o, l, b in bufs:
        assert b.to_bytearray() == data[o:o + l], \
            f"client {idx}: bytes at {base + o} differ"
h.shutdown()
print(f"client {idx}: {npieces} pieces ok")
PY

pids=()
for i in 0 1 2 3; do
    timeout -k 5 120 /usr/bin/python3 "$tmp/client.py" "$(uri)" "$VU_SIZE" $i 4 &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p"
done
