#!/usr/bin/env bash
# Guest test: the NVMe controller goes away under the nbdkit plugin
# (nvme-io_uring) and comes back: the PCI device is removed through sysfs
# while a client is connected, its reads fail with EIO, then a PCI rescan
# brings the controller back and the same connection reads the data it
# wrote and flushed before.  Runs last: it takes the controller away.
# Plugin: $BLKIO_NVME_PLUGIN, else plugin/nbdkit-blkio-plugin.so under the
# current directory (the build directory under `meson test`).
set -euo pipefail

dev=${BLKIO_VM_NVME:-/dev/ng0n1}
plugin=${BLKIO_NVME_PLUGIN:-$PWD/plugin/nbdkit-blkio-plugin.so}

skip() { echo "$0: SKIP: $*"; exit 77; }
[ -c "$dev" ] || skip "$dev is not there (run inside the test VM)"
[ -f "$plugin" ] || skip "plugin $plugin is not built"
command -v nbdkit >/dev/null || skip "nbdkit is not installed"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || skip "no python3-libnbd"
ns=$(basename "$dev")                       # ng0n1
pcidev=$(readlink -f "/sys/class/nvme-generic/$ns/device/device" 2>/dev/null || true)
[ -n "$pcidev" ] && [ -e "$pcidev/remove" ] || skip "no PCI device for $dev"

tmp=$(mktemp -d /tmp/test-nvme-plugin-reconnect.XXXXXX)
nbdpid=
trap 'test -n "$nbdpid" && kill $nbdpid 2>/dev/null; rm -rf "$tmp"' EXIT

set -x
nbdkit -v -U "$tmp/sock" -f "$plugin" driver=nvme-io_uring path="$dev" \
    2> "$tmp/log" &
nbdpid=$!
for _ in $(seq 200); do [ -S "$tmp/sock" ] && break; sleep 0.1; done

/usr/bin/python3 - "$tmp" > "$tmp/client.out" 2>&1 <<'PY' &
import errno, nbd, os, sys, time
tmp = sys.argv[1]
def wait_for(n, secs=60):
    end = time.time() + secs
    while not os.path.exists(os.path.join(tmp, n)):
        if time.time() > end:
            sys.exit(f"FAIL: {n} never came")
        time.sleep(0.05)
h = nbd.NBD()
h.connect_unix(os.path.join(tmp, "sock"))
data = os.urandom(1 << 20)
h.pwrite(data, 0)
h.flush()
open(os.path.join(tmp, "written"), "w").close()
wait_for("removed")
try:
    h.pread(4096, 0)
    sys.exit("FAIL: a read succeeded with the controller removed")
except nbd.Error as e:
    print("with the controller removed:", e)
    if e.errnum != errno.EIO:
        sys.exit(f"FAIL: want EIO, got {e}")
open(os.path.join(tmp, "checked"), "w").close()
wait_for("rescanned")
t = time.time()
while True:
    try:
        got = h.pread(1 << 20, 0)
        break
    except nbd.Error:
        if time.time() - t > 30:
            sys.exit("FAIL: not back 30 s after the rescan")
        time.sleep(0.1)
assert got == data, "data flushed before the removal is not there"
print(f"ok: back {time.time() - t:.2f} s after the rescan, same connection")
PY
client=$!
for _ in $(seq 600); do [ -e "$tmp/written" ] && break; sleep 0.1; done
echo 1 > "$pcidev/remove"
touch "$tmp/removed"
for _ in $(seq 600); do [ -e "$tmp/checked" ] && break; sleep 0.1; done
# The plugin must have let go of the removed controller before it comes
# back: a controller still held open keeps its instance number, and the
# rescan would bring it back under another name (ng2n1), where a plugin
# told path=/dev/ng0n1 cannot find it.  On a busy machine the client's
# EIO can come before the plugin's background thread has destroyed the
# old instance; its first failed attempt comes after.
for _ in $(seq 300); do
    if grep -q 'reconnect attempt 1 failed' "$tmp/log" &&
       ! ls -l "/proc/$nbdpid/fd" 2>/dev/null | grep -q "$ns"; then
        break
    fi
    sleep 0.1
done
echo 1 > /sys/bus/pci/rescan
for _ in $(seq 300); do [ -c "$dev" ] && break; sleep 0.1; done
touch "$tmp/rescanned"
rc=0
wait $client || rc=$?
cat "$tmp/client.out"
grep -E "gone|reconnect|queue .* failed|back after" "$tmp/log" | head -20
[ $rc -eq 0 ]
