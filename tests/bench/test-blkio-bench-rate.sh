#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# blkio-bench --rate, which the report's floor uses to load a daemon as
# serialized connections do: the requests of all threads together stay
# within the rate (pacing can only hold requests back, so this bound does
# not depend on the machine's speed), the threads still run, and a rate
# that is not a count is refused, naming it.  No timing is judged.
set -euo pipefail
bench=${BLKIO_BENCH:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 4M /dev/zero > "$tmp/disk"

if "$bench" --path "$tmp/disk" --rate fast --runtime 0.1 > "$tmp/out" 2>&1; then
    echo "FAIL: --rate fast was accepted" >&2
    exit 1
fi
grep -q 'invalid count: fast' "$tmp/out"

out=$("$bench" --driver io_uring --path "$tmp/disk" --threads 2 --iodepth 2 \
          --rate 400 --runtime 1 --json | tail -1)
echo "$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
j = json.loads(sys.argv[1])
ios = j["kiops"] * 1000
# 400/s for 1 s, plus at most one slot's worth of slack per request in
# flight at the window's edges (2 threads x depth 2).
assert 0 < ios <= 400 * 1.1 + 4, f"{ios} requests/s against --rate 400"
PY
echo PASS
