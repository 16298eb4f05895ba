#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# An impatient client: the vhost-user backend stalls (SIGSTOP) with 16 NBD
# requests in flight and the client hangs up after 2 s, leaving them.
# When the backend continues, nbdkit must still be there, serve the next
# client the right data, and be back at its fds and threads.
# (nbdkit 1.32 aborts when a client hangs up with requests in flight
# under the parallel thread model; the plugin serializes each
# connection's requests there, and this test fails about one run in five
# without that.)
if [ -z "${VU_SOCK:-}" ]; then
    exec "$(dirname "$0")/../vhost-user/qsd-run.sh" --size 16M -- "$0" "$@"
fi
source "$(dirname "$0")/../plugin/functions.sh"
source "$(dirname "$0")/procstat.sh"
set -x

stall_start 'h.pwrite(b"\x5a" * 65536, 0)'

timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$VU_QSD_PID" <<'PY'
import os, signal, sys, time
import nbd

uri, qsd = sys.argv[1], int(sys.argv[2])
h = nbd.NBD()
h.connect_uri(uri)
K64 = 64 << 10
os.kill(qsd, signal.SIGSTOP)
try:
    for i in range(8):
        h.aio_pread(nbd.Buffer(K64), i * K64)
    for i in range(8, 16):
        h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b"\xa5" * K64)),
                     i * K64)
    deadline = time.time() + 2
    while time.time() < deadline:
        h.poll(100)
    del h               # hang up (nbd_close), 16 requests unanswered
finally:
    os.kill(qsd, signal.SIGCONT)
time.sleep(1)
h = nbd.NBD()
h.connect_uri(uri)
if h.pread(K64, 0) != b"\x5a" * K64:
    sys.exit("FAIL: wrong data after the hang-up")
h.shutdown()
print("ok: served again after a client left 16 requests behind")
PY
kill -0 "$nbd_pid"
proc_settle "$nbd_pid" "$fds0" "$threads0"
assert_exits_on_term "$nbd_pid"
