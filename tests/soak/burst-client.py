#!/usr/bin/python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""burst-client.py URI N OFFSET [--hangup] - N NBD connections at once.

Every connection writes its own 64 KiB block (at OFFSET + i * 64 KiB)
while all the others are connected and busy, then every connection reads
every block back and checks it.  With --hangup, each connection then
queues 8 more requests and hangs up without waiting for them.  Prints an
"ok:" line.
"""
import os
import sys

import nbd

uri, n, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
hangup = "--hangup" in sys.argv[4:]
K64 = 64 << 10
handles = []
for i in range(n):
    h = nbd.NBD()
    h.connect_uri(uri)
    handles.append(h)
blocks = [os.urandom(K64) for _ in range(n)]


def wait_all(cookies):
    while cookies:
        for h, c in cookies[:]:
            if h.aio_command_completed(c):
                cookies.remove((h, c))
        for h, _ in cookies[:1]:
            h.poll(10)


wait_all([(h, h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(blocks[i])),
                           base + i * K64))
          for i, h in enumerate(handles)])
bufs = [(i, nbd.Buffer(n * K64)) for i in range(n)]
wait_all([(handles[i], handles[i].aio_pread(b, base)) for i, b in bufs])
for i, b in bufs:
    if bytes(b.to_bytearray()) != b"".join(blocks):
        sys.exit(f"FAIL: connection {i} read wrong data")
for h in handles:
    if hangup:
        for j in range(8):
            h.aio_pread(nbd.Buffer(K64), base + (j % n) * K64)
        del h
    else:
        h.shutdown()
handles.clear()
print(f"ok: {n} connections at once, {n * (n + 1)} blocks checked"
      + (", each hung up with 8 requests in flight" if hangup else ""))
