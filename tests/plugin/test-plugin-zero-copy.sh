#!/usr/bin/env bash
# zero-copy= over vhost-user (run under tests/vhost-user/qsd-run.sh): large
# requests use nbdkit's own request buffer, lent to the device (plugin/
# lend.c), and the data is right through everything that can happen to
# that buffer:
#   - requests growing from 64 KiB to 32 MiB on one connection (nbdkit
#     reallocates its buffer, glibc must copy it to a new chunk), mixed
#     with small ones, reads and writes at odd offsets, compared with the
#     image file and with reads back;
#   - connections one after another (a thread's buffer freed with the
#     thread, the next one's often at the same address);
#   - the parallel model: more threads with large buffers than may be lent
#     at once (the rest are bounced);
#   - a filter's buffer allocated per request, freed and allocated again
#     at the same address (the check before each request catches it);
#   - the daemon killed and restarted under a connection that lent its
#     buffer: after the reconnect the buffer is lent to the new instance
#     and large reads and writes go on;
#   - zero-copy=false lends nothing.
# nbdkit's debug output must say that buffers were lent, except where the
# allocator is not glibc's (valgrind, sanitizers), which bounce instead.
source "$(dirname "$0")/functions.sh"
requires /usr/bin/python3 -c 'import nbd'
requires_vhost_user_export
set -x

expect_lent=1
if [ -n "$_preload" ] || [ "${BLKIO_TEST_VALGRIND:-0}" = 1 ]; then
    expect_lent=0
fi

# client SEED [CONNECTIONS]: writes and reads of growing sizes, checked.
client ()
{
    timeout -k 5 120 /usr/bin/python3 - "$(uri)" "$VU_IMG" "$@" <<'PY'
import nbd, os, random, sys
uri, img, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
conns = int(sys.argv[4]) if len(sys.argv) > 4 else 1
K, MiB = 1024, 1 << 20
rng = random.Random(seed)
with open(img, "rb") as f:
    model = bytearray(f.read())
size = len(model)
sizes = [64 * K, 64 * K + 512, 512, 256 * K, MiB, 4 * K, MiB + 512,
         3 * MiB - 512, 8 * MiB, 32 * MiB, 64 * K, MiB]
for c in range(conns):
    h = nbd.NBD()
    h.connect_uri(uri)
    for n in sizes:
        off = rng.randrange(0, (size - n) // 512 + 1) * 512
        data = os.urandom(n)
        h.pwrite(data, off)
        model[off:off + n] = data
        got = h.pread(n, off)
        assert got == model[off:off + n], f"conn {c} read back {off:#x}+{n:#x}"
        off = rng.randrange(0, (size - n) // 512 + 1) * 512
        assert h.pread(n, off) == model[off:off + n], f"conn {c} read {off:#x}+{n:#x}"
    h.flush()
    h.shutdown()
with open(img, "rb") as f:
    assert f.read() == model, "the image differs from what was written"
print("ok")
PY
}

# glibc's own report of a damaged heap (it aborts after it), anywhere in
# nbdkit's output: the plugin must leave nbdkit's allocations alone.
assert_heap_intact ()
{
    ! grep -E "munmap_chunk|free\(\)|malloc\(\)|corrupted" "$@"
}

lent_count ()
{
    grep -c "zero-copy: nbdkit's request buffer .* lent to the device" "$1" || true
}

# One connection, then five in turn.
start_nbdkit -v virtio-blk-vhost-user path="$VU_SOCK" num-queues=2 \
    2> "$tmp/nbdkit.log"
client 1
client 2 5
_stop_nbdkit
grep "zero-copy" "$tmp/nbdkit.log" | head -20
if [ "$expect_lent" = 1 ]; then
    test "$(lent_count "$tmp/nbdkit.log")" -ge 6
fi
! grep -q "zero-copy: mapping a request buffer" "$tmp/nbdkit.log"

# Parallel model: 4 connections at once, 16 threads each.
start_nbdkit -v virtio-blk-vhost-user path="$VU_SOCK" num-queues=2 \
    thread-model=parallel 2> "$tmp/par.log"
timeout -k 5 120 /usr/bin/python3 - "$(uri)" "$VU_IMG" <<'PY'
import nbd, random, sys
uri, img = sys.argv[1], sys.argv[2]
K, MiB = 1024, 1 << 20
rng = random.Random(3)
with open(img, "rb") as f:
    image = f.read()
hs = [nbd.NBD() for _ in range(4)]
for h in hs:
    h.connect_uri(uri)
for _ in range(6):
    reqs = []
    for h in hs:
        for _ in range(16):
            n = rng.choice([MiB, 2 * MiB - 512, 256 * K, 128 * K + 512])
            off = rng.randrange(0, (len(image) - n) // 512 + 1) * 512
            buf = nbd.Buffer(n)
            reqs.append((h, off, n, buf, h.aio_pread(buf, off)))
    for h, off, n, buf, cookie in reqs:
        while not h.aio_command_completed(cookie):
            h.poll(-1)
        assert buf.to_bytearray() == image[off:off + n], f"read {off:#x}+{n:#x}"
for h in hs:
    h.shutdown()
print("ok")
PY
_stop_nbdkit
if [ "$expect_lent" = 1 ]; then
    # At most 16 at once, but threads come and go: more than 16 in all
    # is possible, fewer than 2 is not.
    test "$(lent_count "$tmp/par.log")" -ge 2
fi

# A filter that allocates a buffer per request (swab, for writes): the
# buffer lent on its second request is freed and allocated again at the
# same place; the check before each request finds it replaced, and the
# writes are bounced from then on.  Writes and reads still match.
if "$NBDKIT" --filter=swab null --run true 2>/dev/null; then
    start_nbdkit -v --filter=swab virtio-blk-vhost-user path="$VU_SOCK" \
        swab-bits=16 2> "$tmp/swab.log"
    timeout -k 5 120 /usr/bin/python3 - "$(uri)" <<'PY'
import nbd, os, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
M = 1 << 20
data = [os.urandom(M) for _ in range(6)]
for i, d in enumerate(data):
    h.pwrite(d, i * M)
for i, d in enumerate(data):
    assert h.pread(M, i * M) == d, f"read {i} MiB through swab"
h.flush()
h.shutdown()
print("ok")
PY
    _stop_nbdkit
    grep "zero-copy" "$tmp/swab.log"
    if [ "$expect_lent" = 1 ]; then
        grep -q "zero-copy: request buffer .* was replaced" "$tmp/swab.log"
    fi
fi

# blkioq_do_io() fails (a shim) while lent reads are in flight and the
# daemon still runs: the queue dies with pieces in the device, which may
# write them later.  The failing request moves its buffer to new pages
# before it returns, the device is reconnected (the shim stops), and the
# data read and written after is right.
if [ -n "${FAIL_DO_IO_SHIM:-}" ] && [ -f "$FAIL_DO_IO_SHIM" ] &&
        [ -z "$_preload" ] && [ "${BLKIO_TEST_VALGRIND:-0}" != 1 ]; then
    export FAIL_DO_IO_FILE=$tmp/fail
    LD_PRELOAD=$FAIL_DO_IO_SHIM start_nbdkit -v virtio-blk-vhost-user \
        path="$VU_SOCK" num-queues=1 reconnect-wait=20 2> "$tmp/lost.log"
    timeout -k 5 120 /usr/bin/python3 - "$(uri)" "$FAIL_DO_IO_FILE" <<'PY'
import nbd, os, sys, time
uri, fail = sys.argv[1], sys.argv[2]
MiB = 1 << 20
h = nbd.NBD()
h.connect_uri(uri)
data = os.urandom(8 * MiB)
h.pwrite(data, 0)
for _ in range(3):
    assert h.pread(8 * MiB, 0) == data
failed = 0
for _ in range(200):
    if failed >= 2:
        break
    buf = nbd.Buffer(8 * MiB)
    cookie = h.aio_pread(buf, 0)
    time.sleep(0.001)
    open(fail, "w").close()
    try:
        while not h.aio_command_completed(cookie):
            h.poll(-1)
        assert buf.to_bytearray() == data, "a read that succeeded"
    except nbd.Error:
        failed += 1
    os.unlink(fail)
    end = time.time() + 30
    while True:
        try:
            assert h.pread(8 * MiB, 0) == data, "read after the failure"
            break
        except nbd.Error:
            assert time.time() < end, "the device never came back"
            time.sleep(0.05)
new = os.urandom(8 * MiB)
h.pwrite(new, 0)
assert h.pread(8 * MiB, 0) == new
h.shutdown()
assert failed > 0, "no read was in flight when blkioq_do_io() failed"
print("ok:", failed, "reads failed")
PY
    unset FAIL_DO_IO_FILE
    _stop_nbdkit
    grep -E "zero-copy|queue .* failed|device is back" "$tmp/lost.log" | head -20
    if [ "$expect_lent" = 1 ]; then
        grep -q "failed with pieces in the device" "$tmp/lost.log"
    fi
fi

# zero-copy=false: nothing lent, data still right.
start_nbdkit -v virtio-blk-vhost-user path="$VU_SOCK" zero-copy=false \
    2> "$tmp/off.log"
client 4
_stop_nbdkit
test "$(lent_count "$tmp/off.log")" = 0

# The daemon restarted under a connection whose buffer is lent.
start_nbdkit -v virtio-blk-vhost-user path="$VU_SOCK" num-queues=1 \
    reconnect-wait=20 2> "$tmp/rc.log"
timeout -k 5 120 /usr/bin/python3 - "$(uri)" "$VU_IMG" "$tmp" \
    > "$tmp/rc.out" 2>&1 <<'PY' &
import nbd, os, sys, time
uri, img, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
MiB = 1 << 20
h = nbd.NBD()
h.connect_uri(uri)
data = os.urandom(2 * MiB)
for _ in range(3):
    h.pwrite(data, 0)
    assert h.pread(2 * MiB, 0) == data
h.flush()
open(os.path.join(tmp, "lent"), "w").close()
# Reads in flight when the daemon dies; each one either fails or returns
# the data.
while not os.path.exists(os.path.join(tmp, "back")):
    try:
        assert h.pread(2 * MiB, 0) == data, "read while the daemon died"
    except nbd.Error:
        time.sleep(0.02)
# The first request after the loss may fail (EIO); then it must work.
try:
    h.pread(2 * MiB, 0)
except nbd.Error as e:
    print("first read after the restart:", e)
for i in range(3):
    d = os.urandom(2 * MiB)
    h.pwrite(d, 4 * MiB)
    assert h.pread(2 * MiB, 4 * MiB) == d, f"read after the restart {i}"
assert h.pread(2 * MiB, 0) == data, "data flushed before the restart"
h.shutdown()
print("ok: reconnected")
PY
client_pid=$!
for _ in $(seq 600); do
    [ -e "$tmp/lent" ] && break
    sleep 0.1
done
test -e "$tmp/lent"
kill -9 "$VU_QSD_PID"
sleep 0.5
start_qsd "$VU_IMG"
touch "$tmp/back"
wait_client "$client_pid" 120 "$tmp/rc.out"
_stop_nbdkit
grep -E "zero-copy|reconnect|device is back" "$tmp/rc.log" | head -20
assert_heap_intact "$tmp"/*.log
if [ "$expect_lent" = 1 ]; then
    test "$(lent_count "$tmp/rc.log")" -ge 1
    grep -q "lent to the new instance" "$tmp/rc.log"
fi
echo "ok"
