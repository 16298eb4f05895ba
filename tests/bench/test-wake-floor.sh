#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# wake-floor, whose CPU per round trip the report's ceilings compare with
# libblkio's CPU per request: it stops at the count or at the time limit,
# whichever comes first, reports what it did, and refuses arguments that
# are not positive numbers, naming them.  No timing is judged.
set -euo pipefail
floor=${WAKE_FLOOR:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for bad in "0" "-5" "many"; do
    if "$floor" "$bad" > "$tmp/out" 2>&1; then
        echo "FAIL: ROUND_TRIPS '$bad' was accepted" >&2
        exit 1
    fi
    grep -q "ROUND_TRIPS must be a positive number, not '$bad'" "$tmp/out"
done
if "$floor" 100 0 > "$tmp/out" 2>&1; then
    echo "FAIL: SECONDS '0' was accepted" >&2
    exit 1
fi
grep -q "SECONDS must be a positive number, not '0'" "$tmp/out"

# The count ends a run with a long time limit; a short time limit ends a
# run with a count no machine reaches in it.
count=$("$floor" 3000 60 | tail -1)
timed=$("$floor" 1000000000 0.3 | tail -1)
echo "$count"; echo "$timed"
/usr/bin/python3 - "$count" "$timed" <<'PY'
import json, sys
c, t = (json.loads(a) for a in sys.argv[1:3])
assert c["round_trips"] == 3000, c
assert 0 < t["round_trips"] < 1000000000, t
for j in (c, t):
    assert j["per_s"] > 0 and j["cpu_us"] >= 0, j
    assert abs(j["user_us"] + j["sys_us"] - j["cpu_us"]) < 0.01, j
PY
echo PASS
