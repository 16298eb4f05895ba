#!/usr/bin/env bash
# A file grown under a running nbdkit: a new connection sees the new size
# and the data beyond the old end; a connection opened before keeps its
# size (NBD sizes do not change) and its requests, in flight while the
# device is re-opened at the new size, all succeed.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
requires /usr/bin/python3 -c 'import nbd'
set -x

make_random "$tmp/disk" $((8 << 20))
start_nbdkit io_uring path="$tmp/disk" 2> "$tmp/nbdkit.log"

timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$tmp/disk" <<'PY'
import nbd, os, sys
uri, path = sys.argv[1], sys.argv[2]
MiB = 1 << 20
with open(path, "rb") as f:
    old = f.read()
a = nbd.NBD()
a.connect_uri(uri)
assert a.get_size() == 8 * MiB, a.get_size()

# Grow the file by 16 MiB of new data, behind nbdkit's back.
new = os.urandom(16 * MiB)
with open(path, "ab") as f:
    f.write(new)

# a keeps reads in flight while b connects (and the device is re-opened).
cmds = [(off, buf, a.aio_pread(buf, off))
        for off, buf in ((i * 65536 % (8 * MiB), nbd.Buffer(65536))
                         for i in range(64))]
b = nbd.NBD()
b.connect_uri(uri)
for off, buf, c in cmds:
    while not a.aio_command_completed(c):
        a.poll(-1)
    assert buf.to_bytearray() == old[off:off + 65536], f"a: wrong data at {off}"
assert b.get_size() == 24 * MiB, f"new connection sees {b.get_size()}"
assert b.pread(MiB, 20 * MiB) == new[12 * MiB:13 * MiB], "b: data beyond the old end"
assert a.get_size() == 8 * MiB, "the old connection's size changed"
assert a.pread(MiB, 0) == old[:MiB]
b.pwrite(b"x" * 4096, 23 * MiB)
b.flush()
a.shutdown()
b.shutdown()
print("ok")
PY
cat "$tmp/nbdkit.log"
[ "$(stat -c %s "$tmp/disk")" -eq $((24 << 20)) ]
[ "$(dd if="$tmp/disk" bs=4096 skip=$((23 * 256)) count=1 2>/dev/null | tr -d x | wc -c)" -eq 0 ]
