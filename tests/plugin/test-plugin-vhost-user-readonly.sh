#!/usr/bin/env bash
# A read-only vhost-user export (qsd-run.sh --readonly: the device offers
# VIRTIO_BLK_F_RO, which the library learns only when it starts) is served
# read-only, with and without -r: the plugin opens it again read-only
# instead of failing at start-up, and the data reads back.
source "$(dirname "$0")/functions.sh"
requires nbdinfo --version
requires_vhost_user_export
set -x

make_random "$tmp/data" 65536
dd if="$tmp/data" of="$VU_IMG" conv=notrunc status=none
for r in "" "-r"; do
    timeout -k 5 60 "$NBDKIT" $r -v -U - "$PLUGIN" \
        virtio-blk-vhost-user path="$VU_SOCK" \
        --run 'nbdinfo --json "$uri" && nbdcopy "$uri" - | head -c 65536 > '"$tmp/back" \
        > "$tmp/out" 2>&1 || { cat "$tmp/out"; exit 1; }
    grep -q '"is_read_only": true' "$tmp/out"
    cmp "$tmp/data" "$tmp/back"
done
grep 'falling back to read-only' "$tmp/out"
