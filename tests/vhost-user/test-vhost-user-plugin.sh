#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# test-vhost-user-plugin.sh PLUGIN - nbdkit-blkio-plugin serving a
# vhost-user-blk export (run under qsd-run.sh) to two NBD clients that are
# connected at the same time: data written by one is read by the other,
# with writes from both interleaved.  Skips when the plugin is not built.
set -e
set -x

plugin=${1:-}
if [ -z "$plugin" ] || [ ! -f "$plugin" ]; then
    echo "$0: SKIP: nbdkit-blkio-plugin.so not built (${plugin:-no path})"
    exit 77
fi
nbdkit=$(command -v nbdkit || echo /usr/sbin/nbdkit)
if [ ! -x "$nbdkit" ]; then
    echo "$0: SKIP: nbdkit not installed"
    exit 77
fi
if ! /usr/bin/python3 -c 'import nbd' 2>/dev/null; then
    echo "$0: SKIP: python3-libnbd not installed"
    exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/var/tmp}/vu-plugin.XXXXXX")
nbdpid=
cleanup() {
    [ -n "$nbdpid" ] && kill "$nbdpid" 2>/dev/null || true
    [ -n "$nbdpid" ] && wait "$nbdpid" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

# A sanitizer build of the plugin needs its runtime loaded first into
# nbdkit, which is not built with it.
. "$(dirname "$0")/../common/sanitizer.sh"
preload=$(sanitizer_preload "$plugin")

LD_PRELOAD=$preload ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} \
"$nbdkit" -f -U "$dir/nbd.sock" -P "$dir/nbdkit.pid" "$plugin" \
    virtio-blk-vhost-user path="$VU_SOCK" num-queues=2 &
nbdpid=$!
for _ in $(seq 1 100); do
    [ -S "$dir/nbd.sock" ] && break
    kill -0 "$nbdpid" 2>/dev/null || { echo "$0: nbdkit exited" >&2; exit 1; }
    sleep 0.1
done
[ -S "$dir/nbd.sock" ]

timeout 60 /usr/bin/python3 - "$dir/nbd.sock" "$VU_SIZE" <<'PY'
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
