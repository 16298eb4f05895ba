#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# A vhost-user backend that stalls (SIGSTOP) with 16 NBD requests in
# flight, for longer than the client's 2 s of patience:
#  1. it continues (SIGCONT): every request completes with the right data
#     within 5 s, and nbdkit is back at its fds and threads after the
#     client leaves;
#  2. it stalls again and is killed instead: every request completes with
#     an error within 5 s of the kill, nbdkit goes idle and still exits
#     when asked.
if [ -z "${VU_SOCK:-}" ]; then
    exec "$(dirname "$0")/../vhost-user/qsd-run.sh" --size 16M -- "$0" "$@"
fi
source "$(dirname "$0")/../plugin/functions.sh"
source "$(dirname "$0")/procstat.sh"
set -x

stall_start 'h.pread(4096, 0)'

client ()   # mode: resume | kill
{
    timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$VU_QSD_PID" "$1" <<'PY'
import os, signal, sys, time
import nbd

uri, qsd, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
h = nbd.NBD()
h.connect_uri(uri)
K64 = 64 << 10
data = os.urandom(16 * K64)
h.pwrite(data[:8 * K64], 0)

os.kill(qsd, signal.SIGSTOP)
bufs = [nbd.Buffer(K64) for _ in range(8)]
cmds = [h.aio_pread(bufs[i], i * K64) for i in range(8)]
cmds += [h.aio_pwrite(nbd.Buffer.from_bytearray(
             bytearray(data[i * K64:(i + 1) * K64])), i * K64)
         for i in range(8, 16)]

def reap(deadline):
    """Poll until every command is done or the deadline; (ok, errors)."""
    ok = err = 0
    pending = list(cmds)
    while pending and time.time() < deadline:
        h.poll(100)
        for c in pending[:]:
            try:
                if h.aio_command_completed(c):
                    ok += 1
                    pending.remove(c)
            except nbd.Error:
                err += 1
                pending.remove(c)
    return ok, err, len(pending)

# The client's patience: 2 s without an answer (the backend is stopped).
ok, err, left = reap(time.time() + 2)
print(f"during the stall: {ok} ok, {err} errors, {left} pending")
if ok or err:
    sys.exit("FAIL: requests completed while the backend was stopped")

if mode == "resume":
    os.kill(qsd, signal.SIGCONT)
    t0 = time.time()
    ok, err, left = reap(t0 + 5)
    print(f"after SIGCONT: {ok} ok, {err} errors, {left} pending "
          f"in {time.time() - t0:.2f} s")
    if ok != 16:
        sys.exit("FAIL: not every request completed after the stall")
    for i in range(8):
        if bytes(bufs[i].to_bytearray()) != data[i * K64:(i + 1) * K64]:
            sys.exit(f"FAIL: read {i} returned wrong data")
    if h.pread(8 * K64, 8 * K64) != data[8 * K64:]:
        sys.exit("FAIL: the writes made during the stall are wrong")
    h.shutdown()
else:
    os.kill(qsd, signal.SIGKILL)
    t0 = time.time()
    ok, err, left = reap(t0 + 5)
    print(f"after the kill: {ok} ok, {err} errors, {left} pending "
          f"in {time.time() - t0:.2f} s")
    if left:
        sys.exit("FAIL: requests still pending 5 s after the kill")
    if err == 0:
        sys.exit("FAIL: no request failed after the backend was killed")
print("ok:", mode)
PY
}

client resume
proc_settle "$nbd_pid" "$fds0" "$threads0"
client kill
assert_idle "$nbd_pid"
assert_exits_on_term "$nbd_pid"
