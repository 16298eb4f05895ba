#!/usr/bin/env bash
# Guest test: the nbdkit plugin serves a zoned NVMe namespace
# (nvme-io_uring) read-only, saying why in debug output; reads work, also
# across zone boundaries; writes are refused; zoned-writable=true serves it
# writable.  The first zone is filled through the kernel's block device
# first (sequential writes at the write pointer), so the reads are checked
# against known data.
# Plugin: $BLKIO_NVME_PLUGIN, else plugin/nbdkit-blkio-plugin.so under the
# current directory (the build directory under `meson test`).
set -euo pipefail

dev=${BLKIO_VM_NVME_ZONED:-}
blockdev=${BLKIO_VM_NVME_ZONED_BLOCK:-}
plugin=${BLKIO_NVME_PLUGIN:-$PWD/plugin/nbdkit-blkio-plugin.so}

skip() { echo "$0: SKIP: $*"; exit 77; }
[ -n "$dev" ] && [ -c "$dev" ] || skip "no zoned namespace (run inside the test VM with --nvme-zoned)"
[ -b "$blockdev" ] || skip "no block device for the zoned namespace"
[ -f "$plugin" ] || skip "plugin $plugin is not built"
command -v nbdkit >/dev/null || skip "nbdkit is not installed"
command -v nbdcopy >/dev/null || skip "nbdcopy is not installed"
command -v nbdinfo >/dev/null || skip "nbdinfo is not installed"

tmp=$(mktemp -d /tmp/test-nvme-plugin-zoned.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
name=$(basename "$blockdev")
zone=$(( $(cat /sys/block/$name/queue/chunk_sectors) * 512 ))
[ "$zone" -gt 0 ] || skip "$blockdev reports no zone size"
echo "zone size $zone"

set -x
blkzone reset "$blockdev" 2>/dev/null || true
# 512 KiB of data at the start of zones 0 and 1 (within their capacity).
head -c $((512 * 1024)) /dev/urandom > "$tmp/z0"
head -c $((512 * 1024)) /dev/urandom > "$tmp/z1"
dd if="$tmp/z0" of="$blockdev" bs=64K oflag=direct status=none
dd if="$tmp/z1" of="$blockdev" bs=64K seek=$((zone / 65536)) oflag=direct status=none

# Served read-only, with the reason in debug output.
timeout 120 nbdkit -v -U - -f "$plugin" driver=nvme-io_uring path="$dev" \
    --run 'nbdinfo --json "$uri"' > "$tmp/info" 2> "$tmp/log"
grep 'zoned device: served read-only' "$tmp/log"
grep -q '"is_read_only": true' "$tmp/info"

# Reads are correct; one read spans the boundary of zones 0 and 1.
timeout 120 nbdkit -U - -f "$plugin" driver=nvme-io_uring path="$dev" \
    --run "/usr/bin/python3 - \"\$uri\" $zone '$tmp/z0' '$tmp/z1'" <<'PY'
import nbd, sys
uri, zone = sys.argv[1], int(sys.argv[2])
z0, z1 = open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read()
h = nbd.NBD()
h.connect_uri(uri)
assert h.pread(len(z0), 0) == z0, "zone 0 data"
assert h.pread(len(z1), zone) == z1, "zone 1 data"
# The last 64 KiB of zone 0 and the first 64 KiB of zone 1 at once.
got = h.pread(128 * 1024, zone - 65536)
assert got[65536:] == z1[:65536], "read across the zone boundary"
try:
    h.pwrite(b"x" * 4096, len(z0))
    sys.exit("FAIL: a write to the zoned device was accepted")
except nbd.Error as e:
    print("write refused:", e)
print("ok")
PY

# zoned-writable=true: writable, and a write at the write pointer works.
timeout 120 nbdkit -U - -f "$plugin" driver=nvme-io_uring path="$dev" \
    zoned-writable=true --run 'nbdinfo --json "$uri"' > "$tmp/info"
grep -q '"is_read_only": false' "$tmp/info"
