#!/usr/bin/env bash
# Every kind of bad parameter makes nbdkit exit non-zero (never crash or
# hang) with a message that names the culprit.
source "$(dirname "$0")/functions.sh"
requires test -x "$NBDKIT"
set -x

truncate -s 1M "$tmp/disk"

# expect_fail PATTERN ARGS...: nbdkit ARGS fails within 20 s, no signal,
# and its stderr matches PATTERN (grep -E).
# Under valgrind nbdkit starts 20-50x slower (num-queues=100000000 makes
# ~10000 eventfds before it fails: about 20 s on a busy machine).
limit=20
[ "${BLKIO_TEST_VALGRIND:-0}" = 1 ] && limit=180

expect_fail ()
{
    local pattern=$1 status=0
    shift
    timeout -k 5 $limit "$NBDKIT" -U "$sock" -f "$PLUGIN" "$@" \
        </dev/null >"$tmp/out" 2>&1 || status=$?
    cat "$tmp/out"
    if [ $status -eq 0 ]; then
        echo "FAIL: nbdkit $* succeeded"; exit 1
    fi
    # Known: nbdkit with an LD_PRELOADed sanitizer runtime can deadlock in
    # an exit handler (libp11-kit's freelocale) after a startup error; the
    # file plugin does the same.  Only there, a timeout after the message
    # is tolerated.
    if [ $status -eq 124 ] && [ -n "$_preload" ] &&
           grep -Eq -- "$pattern" "$tmp/out"; then
        echo "note: sanitizer build: nbdkit hung in exit after the error"
        return 0
    fi
    if [ $status -eq 124 ] || [ $status -gt 128 ]; then
        echo "FAIL: nbdkit $* hung or crashed (status $status)"; exit 1
    fi
    if ! grep -Eq -- "$pattern" "$tmp/out"; then
        echo "FAIL: nbdkit $*: message does not match '$pattern'"; exit 1
    fi
}

# These need no working driver.
expect_fail 'driver' path="$tmp/disk"
expect_fail 'no-such-driver' no-such-driver path="$tmp/disk"
expect_fail 'read-only.*-r' io_uring path="$tmp/disk" read-only=true
expect_fail 'num-queues' io_uring path="$tmp/disk" num-queues=abc
expect_fail 'num-queues' io_uring path="$tmp/disk" num-queues=0
expect_fail 'driver' io_uring driver=io_uring path="$tmp/disk"
expect_fail 'thread-model=bogus' io_uring path="$tmp/disk" thread-model=bogus
expect_fail 'reconnect=maybe' io_uring path="$tmp/disk" reconnect=maybe
expect_fail 'reconnect-wait' io_uring path="$tmp/disk" reconnect-wait=abc
expect_fail 'reconnect-wait' io_uring path="$tmp/disk" reconnect-wait=100000
expect_fail 'read-split' io_uring path="$tmp/disk" read-split=100
expect_fail 'read-split' io_uring path="$tmp/disk" read-split=2M
expect_fail 'read-split' io_uring path="$tmp/disk" read-split=abc
expect_fail 'zoned-writable=maybe' io_uring path="$tmp/disk" zoned-writable=maybe
expect_fail 'zero-copy=xx' io_uring path="$tmp/disk" zero-copy=xx

requires_driver io_uring
expect_fail 'no-such-property' io_uring path="$tmp/disk" no-such-property=1
expect_fail 'num-entries=abc' io_uring path="$tmp/disk" num-entries=abc
expect_fail 'direct=maybe' io_uring path="$tmp/disk" direct=maybe
expect_fail 'capacity' io_uring path="$tmp/disk" capacity=5
expect_fail 'blkio_connect|path' io_uring
expect_fail 'no-such-file' io_uring path="$tmp/no-such-file"
expect_fail 'num-queues' io_uring path="$tmp/disk" num-queues=100000000
