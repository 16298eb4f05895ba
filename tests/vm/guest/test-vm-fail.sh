#!/bin/sh
# Guest test that fails on purpose (exit 1): the harness must report it as
# FAIL.  Only run by tests/vm/test-vm-harness.sh, which expects the failure.
echo "failing on purpose"
exit 1
