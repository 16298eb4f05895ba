#!/usr/bin/env bash
# FUA writes, flush, zero (with and without may-trim, fast zero), trim and
# cache through nbdsh; the file shows each result.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
set -x

size=$((16 * 1024 * 1024))
make_random "$tmp/disk" $size
start_nbdkit io_uring path="$tmp/disk"

timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$tmp/disk" <<'PY'
import nbd, os, sys
uri, path = sys.argv[1], sys.argv[2]
h = nbd.NBD()
h.connect_uri(uri)
MiB = 1024 * 1024

def file_at(off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)

# FUA write: on the file (and its page cache) when the reply arrives.
data = os.urandom(MiB)
h.pwrite(data, 0, nbd.CMD_FLAG_FUA)
assert file_at(0, MiB) == data, "FUA write not in file"

# Plain write then flush.
data2 = os.urandom(128 * 1024)
h.pwrite(data2, 3 * MiB + 512)
h.flush()
assert file_at(3 * MiB + 512, len(data2)) == data2

zero = bytes(MiB)
# Zero without may-trim (NO_HOLE: the plugin passes BLKIO_REQ_NO_UNMAP).
h.zero(MiB, 4 * MiB, nbd.CMD_FLAG_NO_HOLE)
assert file_at(4 * MiB, MiB) == zero
# Zero with may-trim, and with FUA.
h.zero(MiB, 5 * MiB, nbd.CMD_FLAG_FUA)
assert file_at(5 * MiB, MiB) == zero
assert h.pread(MiB, 5 * MiB) == zero
# Fast zero: either done (io_uring zeroes files natively) or refused with
# ENOTSUP; never an I/O error, and never partly done.
before = file_at(6 * MiB, MiB)
try:
    h.zero(MiB, 6 * MiB, nbd.CMD_FLAG_FAST_ZERO)
    assert file_at(6 * MiB, MiB) == zero, "fast zero claimed success"
    print("fast zero: done")
except nbd.Error as e:
    assert e.errno == "ENOTSUP" or e.errnum == 95, e
    assert file_at(6 * MiB, MiB) == before
    print("fast zero: refused with ENOTSUP")
# Unaligned zero, odd length.
h.zero(1000, 7 * MiB + 3)
assert file_at(7 * MiB + 3, 1000) == bytes(1000)

# Trim: advisory; the data must not change outside the range.
outside = file_at(8 * MiB - 4096, 4096) + file_at(9 * MiB, 4096)
h.trim(MiB, 8 * MiB)
h.trim(MiB, 10 * MiB, nbd.CMD_FLAG_FUA)
assert file_at(8 * MiB - 4096, 4096) + file_at(9 * MiB, 4096) == outside
h.pread(MiB, 8 * MiB)   # unspecified data, but readable

# Cache (emulated by nbdkit with reads).
h.cache(MiB, 0)

# Reads past the end are refused by nbdkit, not sent to libblkio.
try:
    h.pread(4096, h.get_size())
    raise AssertionError("read past the end succeeded")
except nbd.Error:
    pass
h.shutdown()
PY
