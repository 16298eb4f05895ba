#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# A full file system under the io_uring driver: a 16 MiB sparse image on a
# 4 MiB tmpfs.  An NBD client writing it from the start must get ENOSPC
# (not EIO, not success) once the space is gone, for every write after
# that too; everything acknowledged before reads back intact, flush and
# reads keep working, and after a trim frees space writes succeed again.
source "$(dirname "$0")/../plugin/functions.sh"
requires_driver io_uring
requires /usr/bin/python3 -c 'import nbd'
set -x

mkdir "$tmp/fs"
if ! mount -t tmpfs -o size=4M tmpfs "$tmp/fs" 2>/dev/null; then
    echo "$0: SKIP: cannot mount a tmpfs (needs root)"
    exit 77
fi
cleanup_fn umount -l "$tmp/fs"
truncate -s 16M "$tmp/fs/disk"

start_nbdkit io_uring path="$tmp/fs/disk"

timeout -k 5 60 /usr/bin/python3 - "$(uri)" <<'PY'
import errno, os, sys
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
CHUNK = 192 << 10   # does not divide 4 MiB: one write is cut short
size = h.get_size()
data = os.urandom(size)
written = []
first_full = None
for off in range(0, size, CHUNK):
    try:
        h.pwrite(data[off:off + CHUNK], off)
        if first_full is not None:
            sys.exit(f"FAIL: write at {off:#x} succeeded after ENOSPC")
        written.append(off)
    except nbd.Error as e:
        if e.errnum != errno.ENOSPC:
            sys.exit(f"FAIL: write at {off:#x}: {e}, expected ENOSPC")
        if first_full is None:
            first_full = off
print(f"{len(written)} writes of 192 KiB acknowledged, ENOSPC from "
      f"{first_full:#x}")
if first_full is None or not written:
    sys.exit("FAIL: the file system never filled up")

h.flush()
for off in range(0, size, CHUNK):
    want = data[off:off + CHUNK] if off in written else None
    got = h.pread(min(CHUNK, size - off), off)
    if want is not None and got != want:
        sys.exit(f"FAIL: acknowledged data at {off:#x} lost")

# Free space again: trimming the first MiB lets a write succeed.
h.trim(1 << 20, 0)
h.pwrite(data[first_full:first_full + CHUNK], first_full)
if h.pread(CHUNK, first_full) != data[first_full:first_full + CHUNK]:
    sys.exit("FAIL: the write after the trim did not stick")
h.shutdown()
print("ok: ENOSPC reached the client, acknowledged data intact")
PY
