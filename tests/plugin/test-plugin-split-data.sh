#!/usr/bin/env bash
# Large bounced reads cut into pieces (read-split=) return the image's
# data (run under tests/vhost-user/qsd-run.sh, which gives VU_IMG).  Reads
# and writes from 512 bytes to 32 MiB at offsets and lengths that are not
# multiples of the pieces (nor of 4 KiB), written through NBD and
# compared both with reads back and with the image file itself, under
# several read-split= values: the default, 64k, a size that is not a
# power of 2 (200k), one that is not a multiple of 512 (100001, rounded
# down to the sectors of the device), 4k (a 32 MiB read
# is 8192 pieces, more than a queue's 128 slots: the request waits for
# its own slots), and 0 (off).  Then, in parallel mode, 16 reads of up
# to 3 MiB in flight at once on one queue, more pieces than the 16 large
# bounce chunks hold.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 -c 'import nbd'
requires_vhost_user_export
set -x

client ()
{
    timeout -k 5 120 /usr/bin/python3 - "$(uri)" "$VU_IMG" "$1" <<'PY'
import nbd, os, random, sys
uri, img, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
K, MiB = 1024, 1 << 20
rng = random.Random(seed)
h = nbd.NBD()
h.connect_uri(uri)
size = h.get_size()
lens = [512, 3 * 512, 256 * K - 512, 256 * K + 512, MiB - 512, MiB + 512,
        3 * MiB + 7 * 512, 5 * MiB - 9 * 512, 32 * MiB]
with open(img, "rb") as f:
    model = bytearray(f.read())
expect = []
for n in lens:
    off = rng.randrange(0, (size - n) // 512) * 512 + 512 * rng.choice([1, 3, 7])
    off = min(off, size - n)
    data = os.urandom(n)
    h.pwrite(data, off)
    model[off:off + n] = data
    expect.append((off, n))
h.flush()
with open(img, "rb") as f:
    assert f.read() == model, "the image differs from what was written"
for off, n in expect:
    assert h.pread(n, off) == model[off:off + n], f"read {off:#x}+{n:#x}"
for _ in range(8):
    n = rng.choice(lens)
    off = rng.randrange(0, (size - n) // 512 + 1) * 512
    assert h.pread(n, off) == model[off:off + n], f"read {off:#x}+{n:#x}"
h.shutdown()
print("ok")
PY
}

seed=1
for split in "" read-split=64k read-split=200k read-split=100001 read-split=4k \
    read-split=0; do
    start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=1 $split
    client $seed
    _stop_nbdkit
    seed=$((seed + 1))
done

# Many large reads in flight on one queue at once.
start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=1 \
    thread-model=parallel
timeout -k 5 120 /usr/bin/python3 - "$(uri)" "$VU_IMG" <<'PY'
import nbd, random, sys
uri, img = sys.argv[1], sys.argv[2]
K, MiB = 1024, 1 << 20
rng = random.Random(7)
h = nbd.NBD()
h.connect_uri(uri)
size = h.get_size()
with open(img, "rb") as f:
    image = f.read()
for _ in range(6):
    reqs = []
    for _ in range(16):
        n = rng.choice([MiB, 3 * MiB - 512, 512 * K + 512, 2 * MiB + 4096])
        off = rng.randrange(0, (size - n) // 512 + 1) * 512
        buf = nbd.Buffer(n)
        reqs.append((off, n, buf, h.aio_pread(buf, off)))
    for off, n, buf, cookie in reqs:
        while not h.aio_command_completed(cookie):
            h.poll(-1)
        assert buf.to_bytearray() == image[off:off + n], f"read {off:#x}+{n:#x}"
h.shutdown()
print("ok")
PY
