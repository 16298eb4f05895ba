#!/usr/bin/env bash
# Requests from 512 bytes up to the largest nbdkit allows (32 MiB), at
# aligned and unaligned offsets, write then read back; also with bounce
# buffers and splitting forced by direct=true (buf-alignment > 1).
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
set -x

MiB=$((1024 * 1024))
size=$((80 * MiB))

run_sizes ()
{
    timeout -k 5 120 /usr/bin/python3 - "$(uri)" "$tmp/disk" "$1" <<'PY'
import nbd, os, sys
uri, path, align = sys.argv[1], sys.argv[2], int(sys.argv[3])
MiB = 1024 * 1024
h = nbd.NBD()
h.connect_uri(uri)
sizes = [512, 4096, 65536 + 512, MiB, 3 * MiB + 4096, 16 * MiB, 32 * MiB]
off = 0
expect = {}
up = lambda v: (v + align - 1) // align * align
for n in sizes:
    n = up(n)
    data = os.urandom(n)
    h.pwrite(data, off)
    expect[off] = data
    off = up(off + n + 7)       # unaligned offsets when align is 1
h.flush()
for off, data in expect.items():
    assert h.pread(len(data), off) == data, f"read back at {off} len {len(data)}"
with open(path, "rb") as f:
    for off, data in expect.items():
        f.seek(off)
        assert f.read(len(data)) == data, f"file at {off} len {len(data)}"
# A 32 MiB zero and a 32 MiB read of it.
h.zero(32 * MiB, 0)
assert h.pread(32 * MiB, 0) == bytes(32 * MiB)
h.shutdown()
print("ok", align)
PY
}

# Buffered: zero copy, any alignment.
truncate -s $size "$tmp/disk"
start_nbdkit io_uring path="$tmp/disk"
run_sizes 1
_stop_nbdkit

# O_DIRECT: request-alignment and buf-alignment > 1, nbdkit's buffers get
# bounced.  Skip that half where the file system refuses O_DIRECT.
if [ "$(direct_works)" = true ]; then
    start_nbdkit io_uring path="$tmp/disk" direct=true
    run_sizes 4096
    _stop_nbdkit

    # A size that is not a multiple of the block size: served without the
    # last partial block (which O_DIRECT cannot reach in whole blocks), so
    # a client that copies the whole export in blocks succeeds.
    make_random "$tmp/odd" 1000001
    start_nbdkit io_uring path="$tmp/odd" direct=true
    test "$(timeout -k 5 30 nbdinfo --size "$(uri)")" = 999936
    timeout -k 5 60 nbdcopy "$(uri)" "$tmp/odd.copy"
    cmp -n 999936 "$tmp/odd" "$tmp/odd.copy"
else
    echo "O_DIRECT not supported in $tmp: direct=true part skipped"
fi
