#!/usr/bin/env bash
# nbdkit -r: the export is read-only, reads work, writes are refused and the
# file is unchanged.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
set -x

make_random "$tmp/disk" $((4 * 1024 * 1024))
cp "$tmp/disk" "$tmp/orig"
start_nbdkit -r io_uring path="$tmp/disk"

timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$tmp/orig" <<'PY'
import nbd, sys
h = nbd.NBD()
h.set_strict_mode(0)    # send the writes anyway: the server must refuse
h.connect_uri(sys.argv[1])
assert h.is_read_only(), "export is not read-only"
orig = open(sys.argv[2], "rb").read()
assert h.pread(65536, 4096) == orig[4096:4096 + 65536]
for what, fn in [("pwrite", lambda: h.pwrite(b"x" * 512, 0)),
                 ("zero", lambda: h.zero(512, 0)),
                 ("trim", lambda: h.trim(512, 0))]:
    try:
        fn()
    except nbd.Error as e:
        print(f"{what} refused as expected: {e}")
    else:
        raise AssertionError(f"{what} succeeded on a read-only export")
h.shutdown()
PY
cmp "$tmp/disk" "$tmp/orig"
_stop_nbdkit

# -r, wherever it is on the command line, reaches the plugin as nbdkit's
# readonly flag (its debug line says so) and the export is read-only; the
# device is not opened a second time for it.
for args in "-r -v -U - $PLUGIN" "-v -U - $PLUGIN -r" "-vr -U - $PLUGIN"; do
    timeout -k 5 60 "$NBDKIT" $args io_uring path="$tmp/disk" \
        --run 'nbdinfo --json "$uri"' > "$tmp/out" 2>&1
    grep -q 'nbdkit serves the device read-only' "$tmp/out"
    grep -q '"is_read_only": true' "$tmp/out"
    if grep -q 're-opening' "$tmp/out"; then
        echo "FAIL: -r re-opened the device"; exit 1
    fi
done
timeout -k 5 60 "$NBDKIT" -v -U - "$PLUGIN" io_uring path="$tmp/disk" \
    get=read-only --run 'nbdinfo "$uri" >/dev/null' > "$tmp/out" 2>&1
grep 'get read-only = ' "$tmp/out"
if grep -q 'get read-only = true' "$tmp/out"; then
    echo "FAIL: without -r the device was opened read-only"
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    chmod a-w "$tmp/disk"
    timeout -k 5 60 "$NBDKIT" -v -U - "$PLUGIN" io_uring path="$tmp/disk" \
        --run 'nbdinfo --json "$uri"' > "$tmp/out" 2>&1
    grep -q '"is_read_only": true' "$tmp/out"
fi

# fd= opened read-only: the library says read-only=true after connect, so
# the export is read-only (it used to offer writes that all failed).
timeout -k 5 60 "$NBDKIT" -v -U - "$PLUGIN" io_uring fd=3 \
    --run 'nbdinfo --json "$uri"' 3< "$tmp/disk" > "$tmp/out" 2>&1 ||
    { cat "$tmp/out"; exit 1; }
grep -q '"is_read_only": true' "$tmp/out"
timeout -k 5 60 "$NBDKIT" -U - "$PLUGIN" io_uring fd=3 \
    --run 'nbdinfo --json "$uri"' 3<> "$tmp/disk" > "$tmp/out" 2>&1 ||
    { cat "$tmp/out"; exit 1; }
grep -q '"is_read_only": false' "$tmp/out"

# A read-only block device (losetup -r) is opened for writing by the
# kernel all the same; the library refuses it (-EROFS) and the plugin
# serves it read-only, where it used to offer writes that all failed.
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null &&
        loop=$(losetup -r -f --show "$tmp/disk" 2>/dev/null); then
    cleanup_fn "losetup -d $loop"
    timeout -k 5 60 "$NBDKIT" -v -U - "$PLUGIN" io_uring path="$loop" \
        --run 'nbdinfo --json "$uri"' > "$tmp/out" 2>&1 ||
        { cat "$tmp/out"; exit 1; }
    grep -q '"is_read_only": true' "$tmp/out"
    grep -q 'falling back to read-only' "$tmp/out"
else
    echo "note: no read-only loop device (needs root and losetup)"
fi
