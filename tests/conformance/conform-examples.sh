#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# conform-examples.sh - libblkio's own example programs (blkio-info,
# blkio-copy, blkio-bench, from libblkio-dev 1.5's sources, built against
# OUR <blkio.h> and linked to our libblkio.so.1) as a conformance trace:
# conform-run.sh runs this once on each library (LD_LIBRARY_PATH), and the
# outputs, exit statuses and data checksums are compared.
#
#   conform-examples.sh DRIVER NAME=VALUE...
#
# The device gets a 4 MiB pattern written with blkio-copy, is copied back
# to a file with blkio-copy, and is described by blkio-info; blkio-bench
# runs one second of random reads (only its exit status and the names of
# its results are compared: speed is a benchmark's business, bench/).
# For io_uring a file is also copied into a new, empty file.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${MESON_BUILD_ROOT:-$top/build}
ref=${BLKIO_REFERENCE:-$build/reference}
src=$ref/usr/share/doc/libblkio-dev/examples
driver=$1
shift

line() { echo "$1 = $2"; }

# Build once per build tree, in /tmp so that the test VM (whose /tmp is an
# overlay on the host's) finds them built.
bin=${CONFORM_EXAMPLES_DIR:-/tmp/conform-examples-$(echo "$build" | md5sum | cut -c1-12)}
mkdir -p "$bin"
(
    flock 9
    for p in blkio-info blkio-copy blkio-bench; do
        if [ ! -x "$bin/$p" ] || [ "$src/$p.c" -nt "$bin/$p" ] ||
           [ "$top/include/blkio.h" -nt "$bin/$p" ]; then
            cc -std=gnu11 -O2 -Wall -I"$top/include" -o "$bin/$p.tmp" "$src/$p.c" \
                -L"$build/lib" -lblkio -Wl,-rpath,"$build/lib" -pthread >&2 &&
                mv "$bin/$p.tmp" "$bin/$p"
        fi
    done
) 9>"$bin/.lock"
for p in blkio-info blkio-copy blkio-bench; do
    [ -x "$bin/$p" ] || { line "build $p" failed; exit 1; }
done
# Which library the examples load (conform-run.sh checks it).
lib=$(LD_TRACE_LOADED_OBJECTS=1 "$bin/blkio-info" | awk '/libblkio.so.1/ { print $3 }')
echo "library: $(readlink -f "$lib")" >&2
# conform-run.sh compares against the directory, not the resolved file.
echo "library: $lib" >&2

work=$(mktemp -d "${TMPDIR:-/var/tmp}/conform-ex.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A deterministic 4 MiB pattern.
seq 1 2000000 | head -c 4194304 > "$work/pattern"

"$bin/blkio-copy" --input-file="$work/pattern" --output-blkio="$driver" "$@" \
    2>"$work/err"
line "copy file to device exit" $?
: > "$work/back"
"$bin/blkio-copy" --input-blkio="$driver" "$@" --output-file="$work/back" \
    2>>"$work/err"
line "copy device to file exit" $?
line "copy device to file size" "$(stat -c %s "$work/back")"
line "copy device to file data" "$(md5sum < "$work/back" | cut -c1-32)"
line "copy device to file head is the pattern" \
    "$(cmp -s -n 4194304 "$work/pattern" "$work/back" && echo yes || echo no)"

props="driver capacity max-queues supports-poll-queues max-mem-regions
    may-pin-mem-regions mem-region-alignment needs-mem-regions
    needs-mem-region-fd optimal-io-alignment optimal-io-size
    request-alignment flush-needed buf-alignment can-grow max-segments
    max-segment-len max-transfer optimal-buf-alignment supports-fua-natively
    max-write-zeroes-len discard-alignment discard-alignment-offset
    max-discard-len read-only num-queues num-poll-queues ${CONFORM_INFO_PROPS:-}"
# shellcheck disable=SC2086
"$bin/blkio-info" --output=json "$driver" "$@" $props >"$work/info" 2>>"$work/err"
line "info exit" $?
sed -n 's/^ *"\([^"]*\)": \(.*\)$/info \1 = \2/p' "$work/info"
line "info lines" "$(wc -l < "$work/info")"

# blkio-bench aborts when no completion event comes within 500 ms, which
# a loaded machine (test VMs) can cause on either library: try again then.
for try in 1 2 3; do
    "$bin/blkio-bench" --runtime=1 --readwrite=randread --iodepth=4 \
        "$driver" "$@" >"$work/bench" 2>"$work/bench.err"
    rc=$?
    cat "$work/bench.err" >>"$work/err"
    [ $rc -eq 134 ] && grep -q 'Timeout receiving completion event' "$work/bench.err" ||
        break
done
line "bench exit" $rc
line "bench result names" \
    "$(grep -o '"[a-z_]*":' "$work/bench" | sort -u | tr -d '":\n')"

if [ "$driver" = io_uring ]; then
    # Into a new, empty file: the copy must grow it.
    : > "$work/new"
    "$bin/blkio-copy" --input-file="$work/pattern" --output-blkio=io_uring \
        path="$work/new" 2>>"$work/err"
    line "copy into empty file exit" $?
    line "copy into empty file data" "$(md5sum < "$work/new" | cut -c1-32)"
fi
sed 's/^/stderr: /' "$work/err" >&2
echo "end = ok"
