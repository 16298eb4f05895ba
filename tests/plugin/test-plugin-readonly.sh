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
