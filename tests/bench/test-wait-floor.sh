#!/usr/bin/env bash
# bench/wait-floor-plugin.c, the report's floor for a plugin that waits on
# another process: it serves zeroes through its device process on several
# connections at once, a read fails with EIO (and nbdkit lives on) once
# that process is gone, and size= is required.
source "$(dirname "$0")/../plugin/functions.sh"
set -x

# size= missing: refused, naming the parameter.
if "$NBDKIT" -U - "$PLUGIN" --run true > "$tmp/out" 2>&1; then
    echo "FAIL: nbdkit started without size=" >&2
    exit 1
fi
grep -q 'size= is required' "$tmp/out"

start_nbdkit size=1M
pid=$(cat "$pidfile")
device=$(cat "/proc/$pid/task/$pid/children")
test -n "$device"

timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$device" <<'PY'
import nbd, os, sys, time
hs = [nbd.NBD() for _ in range(4)]
for h in hs:
    h.connect_uri(sys.argv[1])
for i in range(100):
    for h in hs:
        assert h.pread(4096, 4096 * i) == bytes(4096), "not zeroes"
os.kill(int(sys.argv[2]), 9)
time.sleep(0.2)
try:
    hs[0].pread(4096, 0)
except nbd.Error as e:
    assert "EIO" in str(e) or "Input/output" in str(e), e
    print("read without the device failed as expected:", e)
else:
    raise AssertionError("a read succeeded without the device process")
assert hs[1].get_size() == 1 << 20
print("ok")
PY
kill -0 "$pid"
