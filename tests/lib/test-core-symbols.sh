#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Description: libblkio.so.1 exports exactly the 43 public functions of
# libblkio 1.x, unversioned, and nothing else.
# Usage: test-core-symbols.sh path/to/libblkio.so.1
set -e

lib="$1"
if [ -z "$lib" ] || [ ! -e "$lib" ]; then
    echo "$0: library '$lib' not found" >&2
    exit 1
fi
if ! command -v nm >/dev/null 2>&1; then
    echo "SKIP: $0: nm (binutils) is not installed"
    exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/expected" <<'LIST'
blkio_add_poll_queue
blkio_add_queue
blkio_alloc_mem_region
blkio_connect
blkio_create
blkio_destroy
blkio_free_mem_region
blkio_get_bool
blkio_get_error_msg
blkio_get_int
blkio_get_poll_queue
blkio_get_queue
blkio_get_str
blkio_get_uint64
blkio_map_mem_region
blkio_remove_poll_queue
blkio_remove_queue
blkio_set_bool
blkio_set_int
blkio_set_str
blkio_set_uint64
blkio_start
blkio_unmap_mem_region
blkioq_close_all_zones
blkioq_close_zone
blkioq_discard
blkioq_do_io
blkioq_do_io_interruptible
blkioq_finish_all_zones
blkioq_finish_zone
blkioq_flush
blkioq_get_completion_fd
blkioq_open_all_zones
blkioq_open_zone
blkioq_read
blkioq_readv
blkioq_report_zones
blkioq_reset_all_zones
blkioq_reset_zone
blkioq_set_completion_fd_enabled
blkioq_write
blkioq_write_zeroes
blkioq_writev
LIST
LC_ALL=C sort -o "$tmp/expected" "$tmp/expected"
n=$(wc -l < "$tmp/expected")
if [ "$n" -ne 43 ]; then
    echo "$0: internal error: expected list has $n names" >&2
    exit 1
fi

# Every defined dynamic symbol; all must be functions (type T).
nm -D --defined-only "$lib" > "$tmp/nm"
awk '{ print $NF }' "$tmp/nm" | LC_ALL=C sort > "$tmp/actual"
if ! cmp -s "$tmp/expected" "$tmp/actual"; then
    echo "$0: exported symbols differ from the libblkio 1.x API" >&2
    echo "(< missing, > extra)" >&2
    diff "$tmp/expected" "$tmp/actual" >&2 || true
    exit 1
fi
if awk '$2 != "T" { bad = 1; print "not a text symbol: " $0 } END { exit bad }' \
       "$tmp/nm" >&2; then :; else
    exit 1
fi

# Unversioned: no symbol carries @VERSION, and there are no version nodes.
if grep -q '@' "$tmp/nm"; then
    echo "$0: symbols are versioned:" >&2
    grep '@' "$tmp/nm" >&2
    exit 1
fi

# The soname programs link against.
if command -v objdump >/dev/null 2>&1; then
    soname=$(objdump -p "$lib" | awk '$1 == "SONAME" { print $2 }')
    if [ "$soname" != "libblkio.so.1" ]; then
        echo "$0: soname is '$soname', expected libblkio.so.1" >&2
        exit 1
    fi
fi
echo "exactly the 43 public functions are exported, unversioned"
