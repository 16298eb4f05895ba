#!/usr/bin/env bash
# Every request a client can send, good or bad: beyond the end, straddling
# it, zero-length, larger than nbdkit takes, with flags the command does not
# have.  Each bad one gets an error the client can act on (EINVAL or
# ENOSPC as nbdkit and the NBD spec say; never a hang), or at worst that
# one connection is dropped; the server goes on serving a second client
# that reads and writes the whole time, with the right data.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
set -x

size=$((4 * 1024 * 1024))
make_random "$tmp/disk" $size
cp "$tmp/disk" "$tmp/orig"
start_nbdkit io_uring path="$tmp/disk"

# The bystander: reads and checks the first half, writes the second half
# but its last 64 KiB (the bad client's).
timeout -k 5 120 /usr/bin/python3 - "$(uri)" "$tmp/orig" "$tmp/stop" \
    > "$tmp/bystander.out" 2>&1 <<'PY' &
import nbd, os, random, sys
uri, orig, stop = sys.argv[1:]
data = open(orig, "rb").read()
h = nbd.NBD()
h.connect_uri(uri)
half = len(data) // 2
n = 0
while not os.path.exists(stop) or n < 50:
    off = random.randrange(0, half - 65536) & ~511
    assert h.pread(65536, off) == data[off:off + 65536], f"bad data at {off}"
    woff = half + (random.randrange(0, half - 65536 - 4096) & ~511)
    buf = os.urandom(4096)
    h.pwrite(buf, woff)
    assert h.pread(4096, woff) == buf
    n += 1
h.shutdown()
print(f"ok: bystander made {n} rounds")
PY
bystander=$!

timeout -k 5 120 /usr/bin/python3 - "$(uri)" "$size" <<'PY'
import errno, nbd, sys
uri, size = sys.argv[1], int(sys.argv[2])

def client():
    h = nbd.NBD()
    h.set_strict_mode(0)        # send what libnbd would refuse
    h.connect_uri(uri)
    return h

h = client()
def expect(what, fn, errnos):
    """The request fails with one of errnos (or drops this connection)."""
    global h
    try:
        fn(h)
    except nbd.Error as e:
        if e.errnum in errnos:
            print(f"{what}: refused with {errno.errorcode[e.errnum]}")
            return
        if not h.aio_is_ready() and not h.aio_is_processing():
            print(f"{what}: connection dropped ({e})")
            h = client()
            return
        raise AssertionError(f"{what}: {e} (errno {e.errnum})")
    raise AssertionError(f"{what} succeeded")

EINVAL, ENOSPC, EOVERFLOW, ENOMEM = (errno.EINVAL, errno.ENOSPC,
                                     errno.EOVERFLOW, errno.ENOMEM)
MiB = 1024 * 1024
expect("read at the end", lambda h: h.pread(512, size), {EINVAL})
expect("read across the end", lambda h: h.pread(1024, size - 512), {EINVAL})
expect("read far beyond", lambda h: h.pread(512, 1 << 62), {EINVAL})
expect("write at the end", lambda h: h.pwrite(b"x" * 512, size), {EINVAL, ENOSPC})
expect("write across the end", lambda h: h.pwrite(b"x" * 1024, size - 512),
       {EINVAL, ENOSPC})
expect("zero across the end", lambda h: h.zero(1024, size - 512), {EINVAL, ENOSPC})
expect("trim across the end", lambda h: h.trim(1024, size - 512), {EINVAL, ENOSPC})
expect("cache across the end", lambda h: h.cache(1024, size - 512), {EINVAL})
expect("zero-length read", lambda h: h.pread(0, 0), {EINVAL})
expect("zero-length write", lambda h: h.pwrite(b"", 0), {EINVAL, ENOSPC})
expect("zero-length trim", lambda h: h.trim(0, 0), {EINVAL, ENOSPC})
expect("read of 64 MiB", lambda h: h.pread(64 * MiB, 0), {EINVAL, EOVERFLOW, ENOMEM})
expect("unknown flag on a write",
       lambda h: h.pwrite(b"x" * 512, 0, 1 << 15), {EINVAL})
# Odd but valid: an unaligned, odd-sized write and read succeed.
h.pwrite(b"abc", size - 65536 + 1001)
assert h.pread(3, size - 65536 + 1001) == b"abc"
print("ok: every bad request refused")
h.shutdown()
PY

touch "$tmp/stop"
wait_client $bystander 60 "$tmp/bystander.out"
kill -0 "$(cat "$tmp/nbdkit.pid")"
