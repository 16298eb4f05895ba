#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# conform-run.sh - run one conformance scenario on our libblkio.so.1 and on
# libblkio 1.5 (the reference, see scripts/fetch-reference.sh) and compare
# the two traces; the differences listed in the expectation file
# (expected/NAME.diff, see docs/DIFFERENCES.md) are accepted, anything else
# fails the test with the diff shown.
#
#   conform-run.sh --name NAME TARGET -- PROGRAM [ARGS...]
#   conform-run.sh --fetch-only COMMAND...   make sure the reference is
#                                            there, then run COMMAND
#
# TARGET, a fresh one for each of the two runs:
#   --file SIZE          a new sparse file; @FILE@ in ARGS is its path
#   --qsd "OPTS"         a new qemu-storage-daemon export (qsd-run.sh OPTS);
#                        @SOCK@ in ARGS is its socket
#   --device             nothing to prepare (ARGS name the device; VM tests)
#   --loop SIZE          a new loop device over a new file (root); @FILE@
#                        in ARGS is the /dev/loopN node
#   --vdpa               a new vduse-blk export (test VM: vdpa-setup.sh);
#                        @FILE@ in ARGS is its /dev/vhost-vdpa-N
# PROGRAM prints a trace ("label = value" lines, see conform.h) and runs
# with LD_LIBRARY_PATH pointing at the reference for the reference run.
#
# The reference: $BLKIO_REFERENCE (a root with usr/lib/x86_64-linux-gnu/
# libblkio.so.1), else <build>/reference, fetched when missing.  Without it
# the test is skipped with the reason, except under CI=true or
# BLKIO_CONFORM_REQUIRE=1, where that is a failure.
# CONFORM_KEEP=1 keeps the two traces (ours, ref) in the work directory
# under ${TMPDIR:-/var/tmp}/conform.*, for reading a difference.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

# Inner mode: run PROGRAM with @FILE@/@SOCK@ substituted, stdout to OUT.
if [ "${1:-}" = --exec ]; then
    out=$2 libdir=$3 file=$4
    shift 5
    args=()
    for a in "$@"; do
        a=${a//@FILE@/$file}
        a=${a//@SOCK@/${VU_SOCK:-}}
        args+=("$a")
    done
    if [ -n "$libdir" ]; then
        LD_LIBRARY_PATH=$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
            "${args[@]}" >"$out" 2>"$out.err"
    else
        "${args[@]}" >"$out" 2>"$out.err"
    fi
    echo "exit = $?" >>"$out"
    exit 0
fi

name= mode= arg= fetch_only=
while [ $# -gt 0 ]; do
    case "$1" in
    --fetch-only) fetch_only=1; shift; break ;;
    --name) name=$2; shift 2 ;;
    --file) mode=file; arg=$2; shift 2 ;;
    --qsd) mode=qsd; arg=$2; shift 2 ;;
    --device) mode=device; shift ;;
    --vdpa) mode=vdpa; shift ;;
    --loop) mode=loop; arg=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$fetch_only" ] && { [ -z "$name" ] || [ -z "$mode" ] || [ $# -eq 0 ]; }; then
    echo "usage: $0 --name NAME --file SIZE|--qsd OPTS|--device -- PROGRAM [ARGS...]" >&2
    exit 2
fi

require=${BLKIO_CONFORM_REQUIRE:-}
[ "${CI:-}" = true ] && require=1
unavailable() {
    if [ -n "$require" ]; then
        echo "$0: FAIL: $1 (required under CI=true / BLKIO_CONFORM_REQUIRE)"
        exit 1
    fi
    echo "$0: SKIP: $1"
    exit 77
}

ref=${BLKIO_REFERENCE:-}
if [ -z "$ref" ]; then
    build=${MESON_BUILD_ROOT:-$top/build}
    ref=$build/reference
    if [ ! -f "$ref/.complete" ]; then
        # One fetch at a time: tests run in parallel.
        if ! flock "$build/.reference.lock" "$top/scripts/fetch-reference.sh" "$ref" >/dev/null; then
            unavailable "libblkio 1.5 could not be fetched (scripts/fetch-reference.sh)"
        fi
    fi
fi
export BLKIO_REFERENCE=$ref
reflib=$ref/usr/lib/x86_64-linux-gnu
[ -e "$reflib/libblkio.so.1" ] || unavailable "no libblkio.so.1 under $reflib"
if [ -n "$fetch_only" ]; then
    # Then run the given command (the test VM, which has no network).
    exec "$@"
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/conform.XXXXXX")
trap '[ -n "${CONFORM_KEEP:-}" ] || rm -rf "$work"' EXIT

run_one() {   # which libdir
    local which=$1 libdir=$2 file=$work/disk
    shift 2
    rm -f "$file"
    case $mode in
    file)
        truncate -s "$arg" "$file" || exit 1
        "$0" --exec "$work/$which" "$libdir" "$file" -- "$@" ;;
    qsd)
        # shellcheck disable=SC2086
        "$top/tests/vhost-user/qsd-run.sh" $arg -- \
            "$0" --exec "$work/$which" "$libdir" "$file" -- "$@"
        local rc=$?
        [ $rc -eq 77 ] && { echo "$0: SKIP: qemu-storage-daemon not available"; exit 77; }
        [ $rc -eq 0 ] || { echo "$0: qsd-run.sh failed ($rc)"; exit 1; } ;;
    device)
        "$0" --exec "$work/$which" "$libdir" "" -- "$@" ;;
    loop)
        local loopdev
        truncate -s "$arg" "$file" || exit 1
        loopdev=$(losetup -f --show "$file" 2>/dev/null) ||
            { echo "$0: SKIP: no loop device (needs root and loop support)"; exit 77; }
        "$0" --exec "$work/$which" "$libdir" "$loopdev" -- "$@"
        losetup -d "$loopdev" ;;
    vdpa)
        local setup=${BLKIO_VM_GUEST_DIR:-$top/tests/vm/guest}/vdpa-setup.sh dev
        dev=$("$setup" start 16M) || { echo "$0: vdpa-setup.sh start failed"; exit 1; }
        "$0" --exec "$work/$which" "$libdir" "$dev" -- "$@"
        "$setup" stop ;;
    esac
}
shift_args=("$@")
run_one ours "" "${shift_args[@]}"
run_one ref "$reflib" "${shift_args[@]}"

# The reference run must really have loaded the reference library.
if ! grep -q "^library: $reflib/" "$work/ref.err" &&
   ! grep -q "^library: $(readlink -f "$reflib")/" "$work/ref.err"; then
    if grep -q '^library: ' "$work/ref.err"; then
        echo "$0: the reference run did not load $reflib:"
        grep '^library: ' "$work/ref.err"
        exit 1
    fi
fi
if grep -q "^library: $reflib/" "$work/ours.err"; then
    echo "$0: our run loaded the reference library"
    exit 1
fi

expect=$here/expected/$name.diff
/usr/bin/python3 "$here/conform-compare.py" --name "$name" \
    --differences "$top/docs/DIFFERENCES.md" \
    ${expect:+--expected "$expect"} "$work/ours" "$work/ref"
rc=$?
if [ $rc -ne 0 ]; then
    for w in ours ref; do
        if [ -s "$work/$w.err" ]; then
            echo "--- stderr of the $w run ---"
            tail -n 20 "$work/$w.err"
        fi
    done
fi
exit $rc
