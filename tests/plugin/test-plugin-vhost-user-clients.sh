#!/usr/bin/env bash
# The plugin over a vhost-user-blk export (run under
# tests/vhost-user/qsd-run.sh) serving two NBD clients connected at the
# same time: data written by one is read by the other, with writes from
# both interleaved; then a 20 MiB request (split) and zeroes.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 -c 'import nbd'
requires_vhost_user_export
set -x

start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2

timeout -k 5 60 /usr/bin/python3 - "$sock" "$VU_SIZE" <<'PY'
import os, random, sys
import nbd

sock, size = sys.argv[1], int(sys.argv[2])
a = nbd.NBD()
b = nbd.NBD()
a.connect_unix(sock)
b.connect_unix(sock)     # both connected at once
assert a.get_size() == size == b.get_size(), (a.get_size(), size)

rng = random.Random(42)
# Written by a, read by b, and the other way round, interleaved.
for i in range(64):
    off = rng.randrange(0, size // 4096 - 64) * 4096
    ln = rng.randrange(1, 64) * 4096
    data = os.urandom(ln)
    w, r = (a, b) if i % 2 == 0 else (b, a)
    w.pwrite(data, off)
    got = r.pread(ln, off)
    assert got == data, "round %d: data written by one client not read by the other" % i

# Large request through the plugin, beyond 16 MiB, and zeroes.
big = os.urandom(20 << 20)
a.pwrite(big, 8 << 20)
b.flush()
assert b.pread(20 << 20, 8 << 20) == big
b.zero(1 << 20, 12 << 20)
assert a.pread(1 << 20, 12 << 20) == bytes(1 << 20)
a.shutdown()
b.shutdown()
print("two clients OK")
PY
