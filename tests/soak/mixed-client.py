#!/usr/bin/python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""mixed-client.py URI OFFSET LENGTH SECONDS SEED - one NBD connection
running a checked mix of requests on its own range of the export.

Requests of 512 B to 4 MiB, up to 8 in flight, never two overlapping:
writes (a third with FUA), reads, write zeroes (some with FUA or
NO_HOLE), trims and flushes.  A model of the range says what every read
must return: written data, zeroes after write zeroes, and after a trim
either the old data or zeroes (trims are advisory) until the bytes are
written again.  Any error or wrong byte fails.  Prints one "ok:" line
with the number of requests of each kind.
"""
import os
import random
import sys
import time

import nbd

uri = sys.argv[1]
base, length, seconds = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
rng = random.Random(sys.argv[5])
SECTOR = 512
DEPTH = 8
SIZES = [512, 4096, 4096, 65536, 65536, 262144, 1 << 20, 4 << 20]

h = nbd.NBD()
h.connect_uri(uri)
can_fua = h.can_fua()
model = bytearray()                 # what the range holds: start from
for off in range(0, length, 1 << 20):  # what an earlier run left there
    model += h.pread(min(1 << 20, length - off), base + off)
loose = bytearray(length // SECTOR)  # 1: trimmed, old data or zeroes
pool = os.urandom(8 << 20)          # write data comes from here
inflight = {}                       # cookie -> (kind, off, n, extra)
# Buffers are reused: python3-libnbd 1.14 never releases a buffer passed
# to aio_pread/aio_pwrite (300 MiB per 300 MiB written), so fresh ones
# would grow this client by gigabytes in a long run.
free_bufs = {n: [] for n in SIZES}


def get_buf(n):
    return free_bufs[n].pop() if free_bufs[n] else \
        nbd.Buffer.from_buffer(bytearray(n))
counts = {}
fail = []


def busy(off, n):
    return any(o < off + n and off < o + m
               for _, o, m, _ in inflight.values() if m)


def pick():
    for _ in range(8):
        n = rng.choice([s for s in SIZES if s <= length])
        off = rng.randrange(0, length - n + 1, SECTOR)
        if not busy(off, n):
            return off, n
    return None


def issue():
    kind = rng.choices(["write", "read", "zero", "trim", "flush"],
                       [35, 35, 12, 12, 6])[0]
    if kind == "flush":
        cookie = h.aio_flush()
        inflight[cookie] = (kind, 0, 0, None)
        return
    r = pick()
    if r is None:
        return
    off, n = r
    flags = 0
    if kind in ("write", "zero") and can_fua and rng.random() < 0.33:
        flags |= nbd.CMD_FLAG_FUA
    if kind == "write":
        start = rng.randrange(0, len(pool) - n + 1)
        buf = get_buf(n)
        buf.to_buffer()[:] = pool[start:start + n]
        cookie = h.aio_pwrite(buf, base + off, flags=flags)
        extra = (start, buf)
    elif kind == "read":
        extra = get_buf(n)
        cookie = h.aio_pread(extra, base + off)
    elif kind == "zero":
        if rng.random() < 0.3:
            flags |= nbd.CMD_FLAG_NO_HOLE
        cookie = h.aio_zero(n, base + off, flags=flags)
        extra = None
    else:
        cookie = h.aio_trim(n, base + off)
        extra = None
    if flags & nbd.CMD_FLAG_FUA:
        kind += "-fua"
    inflight[cookie] = (kind, off, n, extra)


def check_read(off, n, got):
    want = model[off:off + n]
    if got == want:
        return
    for s in range(0, n, SECTOR):
        g, w = got[s:s + SECTOR], want[s:s + SECTOR]
        if g == w or (loose[(off + s) // SECTOR] and g == bytes(SECTOR)):
            continue
        fail.append(f"read {base + off + s:#x}: wrong data")
        return


def done(kind, off, n, extra):
    counts[kind] = counts.get(kind, 0) + 1
    sl = slice(off // SECTOR, (off + n) // SECTOR)
    if kind.startswith("write"):
        start, buf = extra
        model[off:off + n] = pool[start:start + n]
        loose[sl] = bytes(n // SECTOR)
        free_bufs[n].append(buf)
    elif kind.startswith("zero"):
        model[off:off + n] = bytes(n)
        loose[sl] = bytes(n // SECTOR)
    elif kind == "trim":
        loose[sl] = b"\1" * (n // SECTOR)
    elif kind == "read":
        check_read(off, n, bytes(extra.to_buffer()))
        free_bufs[n].append(extra)


end = time.time() + seconds
while (time.time() < end or inflight) and not fail:
    while time.time() < end and len(inflight) < DEPTH:
        issue()
    h.poll(100)
    for cookie in list(inflight):
        try:
            if h.aio_command_completed(cookie):
                done(*inflight.pop(cookie))
        except nbd.Error as e:
            kind, off, *_ = inflight.pop(cookie)   # its buffer is dropped
            fail.append(f"{kind} at {base + off:#x}: {e}")

# Everything must read back as the model says.
for off in range(0, length, 1 << 20):
    n = min(1 << 20, length - off)
    check_read(off, n, h.pread(n, base + off))
h.shutdown()
for f in fail[:10]:
    print("FAIL:", f)
if fail:
    sys.exit(1)
print("ok:", sum(counts.values()), "requests",
      " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
