#!/bin/sh
# Guest test that powers the VM off under the harness's feet: it and every
# later test are left without a result, which the harness must report as
# FAIL.  Only run by tests/vm/test-vm-harness.sh.
echo "powering off the guest"
sync
echo o > /proc/sysrq-trigger
sleep 30
echo "still running after the power-off request"
exit 0
