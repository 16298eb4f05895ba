#!/usr/bin/env bash
# The plugin over virtio-blk-vhost-user (bounce buffers, request-alignment
# 512), run under tests/vhost-user/qsd-run.sh: block size, then nbdcopy
# with 4 connections and 64 requests each way; the raw image holds the data.
source "$(dirname "$0")/functions.sh"
requires nbdcopy --version
requires nbdinfo --version
requires_vhost_user_export
set -x

start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" get=needs-mem-regions
timeout -k 5 30 nbdinfo --json "$(uri)" > "$tmp/info.json"
/usr/bin/python3 - "$tmp/info.json" "$VU_SIZE" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["exports"][0]
assert e["export-size"] == int(sys.argv[2]), e["export-size"]
assert e["block_size_minimum"] == 512, e["block_size_minimum"]
assert e["can_multi_conn"] and e["can_fua"] and e["can_zero"], e
PY

make_random "$tmp/data" "$VU_SIZE"
timeout -k 5 60 nbdcopy --connections=4 --requests=64 --flush \
    "$tmp/data" "$(uri)"
timeout -k 5 60 nbdcopy --connections=4 --requests=64 "$(uri)" "$tmp/back"
cmp "$tmp/data" "$tmp/back"
cmp "$tmp/data" "$VU_IMG"
