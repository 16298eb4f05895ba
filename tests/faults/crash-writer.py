#!/usr/bin/python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""crash-writer.py URI IMAGE PID [--flush] - crash consistency check.

An NBD client writes 256 KiB pieces of random data (each offset once, in
random order, 8 in flight, every other one with FUA) and SIGKILLs PID
(the backend or nbdkit itself) once 24 writes were acknowledged and
some made durable; every
request still in flight must then complete (with an error or not) within
5 s.  With --flush, writes carry no FUA and a flush follows every 8
acknowledged writes; only writes acknowledged before an acknowledged
flush count.  Finally IMAGE is read directly: every write that counts must
be there.  Prints an "ok:" line with the figures, exits 1 on a failure.
"""
import os
import random
import signal
import sys
import time

import nbd

uri, image, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
use_flush = "--flush" in sys.argv[4:]
PIECE = 256 << 10
DEPTH = 8
KILL_AFTER = 24

h = nbd.NBD()
h.connect_uri(uri)
size = h.get_size()
offsets = list(range(0, size, PIECE))
random.shuffle(offsets)
data = {off: os.urandom(PIECE) for off in offsets}

inflight = {}           # cookie -> offset (or None for a flush)
acked = []              # offsets acknowledged, in order
durable = set()         # offsets that must be on the image
flushing = {}           # flush cookie -> offsets acknowledged before it
errors = 0
killed_at = None


def issue(off):
    flags = 0 if use_flush or off // PIECE % 2 else nbd.CMD_FLAG_FUA
    buf = nbd.Buffer.from_bytearray(bytearray(data[off]))
    cookie = h.aio_pwrite(buf, off, flags=flags)
    inflight[cookie] = (off, flags)


def reap():
    global errors
    for cookie in list(inflight):
        try:
            if not h.aio_command_completed(cookie):
                continue
            off, flags = inflight.pop(cookie)
            if off is None:                 # a flush
                durable.update(flushing.pop(cookie))
            else:
                acked.append(off)
                if flags & nbd.CMD_FLAG_FUA:
                    durable.add(off)
        except nbd.Error:
            inflight.pop(cookie)
            errors += 1


start = time.time()
while offsets or inflight:
    if killed_at is None and len(acked) >= KILL_AFTER and durable:
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
    if killed_at is None and time.time() - start > 30:
        sys.exit("FAIL: 24 writes were not acknowledged within 30 s")
    if killed_at is not None and time.time() - killed_at > 5:
        sys.exit(f"FAIL: {len(inflight)} requests pending 5 s after the kill")
    try:
        while killed_at is None and offsets and len(inflight) < DEPTH:
            issue(offsets.pop())
        if use_flush and killed_at is None and len(acked) % 8 == 0 and \
                acked and not flushing:
            cookie = h.aio_flush()
            inflight[cookie] = (None, 0)
            flushing[cookie] = set(acked)
        h.poll(100)
    except nbd.Error:
        if killed_at is None:
            raise
        break                               # the connection is gone
    reap()
    if killed_at is not None:
        offsets = []

lost = []
with open(image, "rb") as f:
    for off in sorted(durable):
        f.seek(off)
        if f.read(PIECE) != data[off]:
            lost.append(off)
print(f"{len(acked)} writes acknowledged, {len(durable)} durable "
      f"({'flush' if use_flush else 'FUA'}), {errors} failed after the "
      f"kill, {len(inflight)} unanswered when the connection broke")
if lost:
    sys.exit(f"FAIL: {len(lost)} acknowledged writes lost: "
             + ", ".join(hex(o) for o in lost[:8]))
if not durable:
    sys.exit("FAIL: nothing was made durable before the kill")
print("ok: every durable write is on the image")
