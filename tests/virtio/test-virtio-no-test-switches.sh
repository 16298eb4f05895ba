#!/bin/sh
# Description: the test-only switches (LIBBLKIO_* environment variables,
# docs/HACKING.md) are compiled into the test build of the library only:
# the installed library must not contain their names, the test build must.
# Usage: test-virtio-no-test-switches.sh LIBBLKIO_SO LIBBLKIO_TEST_A
set -eu
lib=$1
testlib=$2
switches="LIBBLKIO_VIRTIO_DECLINE_FEATURES LIBBLKIO_VHOST_USER_DECLINE_PROTOCOL
LIBBLKIO_VHOST_USER_REPLY_TIMEOUT_MS"
# Meson makes thin archives: their objects are separate files.
testfiles=$testlib
if [ "$(head -c 7 "$testlib")" = '!<thin>' ]; then
    testfiles=$(ar t "$testlib")
fi
for s in $switches; do
    if grep -q -a "$s" "$lib"; then
        echo "FAIL: $lib reads the test-only switch $s"
        exit 1
    fi
    # shellcheck disable=SC2086 # one path per word
    if ! cat $testfiles | grep -q -a "$s"; then
        echo "FAIL: the test build $testlib lacks $s (list out of date?)"
        exit 1
    fi
done
echo "no test-only switch in $lib"
