#!/bin/bash
# Harness self-test: run-in-vm.sh must report a passing test as PASS and a
# failing, a hanging and a guest-killing test as FAIL, with a non-zero exit
# status; the tests after the guest died have no result and are FAIL too.
# Further runs check that the whole-run timeout kills qemu, that a boot which
# never reached the tests is retried once, that a qemu error is not retried,
# and that nothing is left in TMPDIR.
# Usage: test-vm-harness.sh PATH/TO/run-in-vm.sh
set -u

run=${1:-$(dirname "$0")/run-in-vm.sh}
g=$(cd "$(dirname "$run")" && pwd)/guest
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tmp"

failed=0
expect()
{
    if grep -qxF -- "$1" "$work/out"; then
        echo "ok: $1"
    else
        echo "NOT OK: expected the line: $1"
        failed=1
    fi
}

TMPDIR=$work/tmp "$run" --test-timeout 6 -- \
    "$g/test-vm-pass.sh" "$g/test-vm-fail.sh" "$g/test-vm-hang.sh" \
    "$g/test-vm-crash.sh" "$g/test-vm-pass.sh" > "$work/out" 2>&1
rc=$?
sed 's/^/  | /' "$work/out"
if [ $rc = 77 ]; then
    echo "test VM not available here (see above)"
    exit 77
fi
[ $rc = 1 ] || { echo "NOT OK: run-in-vm.sh exited $rc, expected 1"; failed=1; }
expect "PASS $g/test-vm-pass.sh"
expect "FAIL $g/test-vm-fail.sh (exit status 1)"
expect "FAIL $g/test-vm-hang.sh (timed out after 6s)"
expect "FAIL $g/test-vm-crash.sh (no result: the guest stopped before the test ended)"
expect "FAIL $g/test-vm-pass.sh (no result: the guest stopped before the test ended)"

# The whole-run timeout: the hanging test outlives it.
TMPDIR=$work/tmp "$run" --timeout 10 -- "$g/test-vm-hang.sh" > "$work/out" 2>&1
rc=$?
sed 's/^/  | /' "$work/out"
[ $rc = 1 ] || { echo "NOT OK: run-in-vm.sh exited $rc, expected 1"; failed=1; }
expect "FAIL $g/test-vm-hang.sh (run timed out after 10s)"
# A boot that dies before the tests start is booted again.
BLKIO_VM_DEBUG_BREAK_FIRST_BOOT=1 TMPDIR=$work/tmp "$run" -- "$g/test-vm-pass.sh" \
    > "$work/out" 2>&1
rc=$?
sed 's/^/  | /' "$work/out"
[ $rc = 0 ] || { echo "NOT OK: run-in-vm.sh exited $rc, expected 0"; failed=1; }
expect "run-in-vm: booting once more"
expect "PASS $g/test-vm-pass.sh"

# qemu refusing its options is a failure, and not worth a second boot.
TMPDIR=$work/tmp "$run" --nvme-size 1M --nvme-opts no-such-property=1 -- \
    "$g/test-vm-pass.sh" > "$work/out" 2>&1
rc=$?
sed 's/^/  | /' "$work/out"
[ $rc = 1 ] || { echo "NOT OK: run-in-vm.sh exited $rc, expected 1"; failed=1; }
expect "FAIL $g/test-vm-pass.sh (qemu failed with exit status 1, see the console)"
if grep -q "booting once more" "$work/out"; then
    echo "NOT OK: qemu was started twice"
    failed=1
fi

if [ -n "$(ls -A "$work/tmp")" ]; then
    echo "NOT OK: run-in-vm.sh left files behind: $(ls -A "$work/tmp")"
    failed=1
fi
exit $failed
