#!/usr/bin/env bash
# zero-copy= over vhost-user (run under tests/vhost-user/qsd-run.sh) while
# the kernel is short of memory: moving nbdkit's request buffer to new
# pages (mmap with MAP_FIXED, made to fail by the fail-do-io shim) fails
# twice, the second time after the old pages may have gone.  The move is
# tried again until memory comes back, and nbdkit goes on serving with the
# data right.  Before, the second failure aborted nbdkit, dropping every
# client.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 -c 'import nbd'
requires_vhost_user_export
requires_fail_shim
if [ -n "$_preload" ] || [ "${BLKIO_TEST_VALGRIND:-0}" = 1 ]; then
    echo "$0: SKIP: buffers are not lent under sanitizers or valgrind"
    exit 77
fi
set -x

export FAIL_MMAP_FIXED_FILE=$tmp/fail-mmap FAIL_MMAP_FIXED_N=2
LD_PRELOAD=$FAIL_DO_IO_SHIM start_nbdkit -v virtio-blk-vhost-user \
    path="$VU_SOCK" 2> "$tmp/nbdkit.log"
nbd_pid=$(cat "$pidfile")

timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$FAIL_MMAP_FIXED_FILE" <<'PY'
import nbd, os, sys
uri, trigger = sys.argv[1], sys.argv[2]
MiB = 1 << 20
h = nbd.NBD()
h.connect_uri(uri)
open(trigger, "w").close()        # the next two MAP_FIXED mmaps fail
for i in range(4):
    data = bytes([0x41 + i]) * MiB
    h.pwrite(data, i * MiB)
    assert h.pread(MiB, i * MiB) == data, f"round {i}: data"
os.unlink(trigger)
h.flush()
h2 = nbd.NBD()
h2.connect_uri(uri)
for i in range(4):
    assert h2.pread(MiB, i * MiB) == bytes([0x41 + i]) * MiB, f"{i}: again"
print("ok: served with the data right")
PY
kill -0 "$nbd_pid"
grep "zero-copy: putting nbdkit's request buffer on new pages" "$tmp/nbdkit.log"
