#!/usr/bin/env bash
# nbdinfo sees the file's size and the flags the plugin promises: writable,
# flush, FUA, trim, zero, fast zero, multi-conn, cache, block sizes.
source "$(dirname "$0")/functions.sh"
requires nbdinfo --version
requires_driver io_uring
set -x

truncate -s 100M "$tmp/disk"
timeout -k 5 60 "$NBDKIT" -U - "$PLUGIN" io_uring path="$tmp/disk" \
    --run "nbdinfo --json \"\$uri\"" > "$tmp/info.json"
cat "$tmp/info.json"

/usr/bin/python3 - "$tmp/info.json" <<'PY'
import json, sys
info = json.load(open(sys.argv[1]))
e = info["exports"][0]
def check(key, want):
    got = e.get(key)
    assert got == want, f"{key}: expected {want!r}, got {got!r}"
check("export-size", 100 * 1024 * 1024)
check("is_read_only", False)
check("can_flush", True)
check("can_fua", True)
check("can_trim", True)
check("can_zero", True)
check("can_fast_zero", True)
check("can_multi_conn", True)
check("can_cache", True)
check("is_rotational", False)
check("block_size_minimum", 1)
assert e["block_size_preferred"] >= 4096, e["block_size_preferred"]
check("block_size_maximum", 64 * 1024 * 1024)    # nbdkit's payload limit
PY
