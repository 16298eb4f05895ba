#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Description: run the example programs as an outside user would: blkio-copy
# copies a random 8 MiB file to another (buffered, then O_DIRECT with a
# small ring and an odd chunk size) and the copies compare equal;
# blkio-info reports the right capacity and the properties it was given.
set -e
info=$1
copy=$2
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/blkio-examples-XXXXXX")
trap 'rm -rf "$dir"' EXIT
set -x

head -c $((8 << 20)) /dev/urandom > "$dir/src"
truncate -s $((8 << 20)) "$dir/dst"
"$copy" "io_uring:path=$dir/src" "io_uring:path=$dir/dst"
cmp "$dir/src" "$dir/dst"

truncate -s 0 "$dir/dst"
truncate -s $((9 << 20)) "$dir/dst"
if "$copy" -d 3 -s 12288 "io_uring:path=$dir/src,direct=true,read-only=true" \
        "io_uring:path=$dir/dst,direct=true,num-entries=2"; then
    cmp -n $((8 << 20)) "$dir/src" "$dir/dst"
else
    echo "note: O_DIRECT copy failed (no O_DIRECT here?)"
    "$copy" -d 3 -s 12288 "io_uring:path=$dir/src" "io_uring:path=$dir/dst"
    cmp -n $((8 << 20)) "$dir/src" "$dir/dst"
fi

# A destination that is too small is refused.
truncate -s 4096 "$dir/small"
if "$copy" "io_uring:path=$dir/src" "io_uring:path=$dir/small"; then
    exit 1
fi

"$info" io_uring path="$dir/src" num-entries=64 read-only=true > "$dir/info"
cat "$dir/info"
grep -qx "capacity: 8388608" "$dir/info"
grep -qx "num-entries: 64" "$dir/info"
grep -qx "read-only: true" "$dir/info"
grep -qx "driver: io_uring" "$dir/info"
# Unknown properties and drivers are errors.
if "$info" io_uring path="$dir/src" no-such-property=1; then exit 1; fi
if "$info" no-such-driver; then exit 1; fi
