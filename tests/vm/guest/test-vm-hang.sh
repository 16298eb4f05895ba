#!/bin/sh
# Guest test that never ends: the harness's per-test timeout must stop it and
# report FAIL.  Only run by tests/vm/test-vm-harness.sh.
echo "hanging"
sleep 3600
exit 0
