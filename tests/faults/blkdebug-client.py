#!/usr/bin/python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""blkdebug-client.py URI - the NBD client of the blkdebug fault tests.

The export is served from a backend image under qemu-storage-daemon's
blkdebug node with the rules of BLKDEBUG_RULES in test-faults-blkdebug.sh
(reads of sector 2048, ENOSPC writes of sector 4096, write zeroes of 6144,
discards of 8192, the first flush).  Every request that touches a failing
sector must fail with EIO, every other one succeed with the right data.
Prints an "ok:" line, exits 1 with the failures.
"""
import errno, os, sys
import nbd

uri = sys.argv[1]
h = nbd.NBD()
h.connect_uri(uri)
MiB, K64 = 1 << 20, 64 << 10
failures = []

def expect(what, fn, err=None):
    """Run fn; it must fail with err (an errno), or succeed if None."""
    try:
        r = fn()
    except nbd.Error as e:
        if err is None or e.errno != errno.errorcode[err]:
            failures.append(f"{what}: {e} (errno {e.errno}), expected "
                            f"{errno.errorcode.get(err, 'success')}")
        return None
    if err is not None:
        failures.append(f"{what}: succeeded, expected "
                        f"{errno.errorcode[err]}")
    return r

# Writes in 64 KiB pieces over 5 MiB: only the piece holding sector 4096
# (2 MiB) fails; ENOSPC inside the backend is EIO on virtio-blk.
data = os.urandom(5 * MiB)
for off in range(0, 5 * MiB, K64):
    expect(f"write {off:#x}", lambda: h.pwrite(data[off:off + K64], off),
           errno.EIO if off == 2 * MiB else None)

# The first flush fails, the next one works (QEMU skips flushes with
# nothing written since the last one: write before each).
expect("first flush", h.flush, errno.EIO)
h.pwrite(data[:K64], 0)
expect("second flush", h.flush)

# Reads: the piece holding sector 2048 (1 MiB) fails; the rest returns
# what was written (zeroes where the write failed).
for off in range(0, 5 * MiB, K64):
    want = bytes(K64) if off == 2 * MiB else data[off:off + K64]
    got = expect(f"read {off:#x}", lambda: h.pread(K64, off),
                 errno.EIO if off == MiB else None)
    if got is not None and got != want:
        failures.append(f"read {off:#x}: wrong data")

# Small requests right next to the failing sector work.
for off, n, err in [(MiB - 512, 512, None), (MiB, 512, errno.EIO),
                    (MiB + 512, 512, None), (MiB - 4096, 4096, None),
                    (MiB + 4096, 4096, None), (MiB - 512, 1024, errno.EIO)]:
    got = expect(f"read {off:#x}+{n}", lambda: h.pread(n, off), err)
    if got is not None and got != data[off:off + n]:
        failures.append(f"read {off:#x}+{n}: wrong data")

# Write zeroes and trim: the piece holding the sector fails, its
# neighbour works (and reads back as zeroes after write zeroes).
expect("zero at 3 MiB", lambda: h.zero(K64, 3 * MiB), errno.EIO)
expect("zero next to it", lambda: h.zero(K64, 3 * MiB + K64))
if expect("read zeroed", lambda: h.pread(K64, 3 * MiB + K64)) != bytes(K64):
    failures.append("write zeroes next to the failing sector: not zero")
if expect("read beside zero", lambda: h.pread(K64, 3 * MiB)) != \
        data[3 * MiB:3 * MiB + K64]:
    failures.append("the failed write zeroes changed the data")
expect("trim at 4 MiB", lambda: h.trim(K64, 4 * MiB), errno.EIO)
expect("trim next to it", lambda: h.trim(K64, 4 * MiB + K64))
h.shutdown()

# Another client is served normally after all that.
h2 = nbd.NBD()
h2.connect_uri(uri)
if h2.pread(K64, 0) != data[:K64]:
    failures.append("second client: wrong data")
h2.shutdown()

for f in failures:
    print("FAIL:", f)
if failures:
    sys.exit(1)
print("ok: every injected error reached exactly its request")
