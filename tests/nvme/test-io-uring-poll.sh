#!/usr/bin/env bash
# Guest test: the io_uring driver's poll queues (IORING_SETUP_IOPOLL) on a
# real NVMe namespace, /dev/nvmeXnY with direct=true.  On the host no device
# can poll, so tests/lib/test-io-uring-poll-queues skips there; here it runs
# its whole poll-queue exercise on the block device.
#
# The kernel polls NVMe only when the nvme driver has poll queues
# (nvme.poll_queues, read at probe).  test-nvme-poll, which runs before this
# in the nvme boot, already re-probed the controller with poll_queues=1;
# run alone, this script does the same.  Device names are looked up again
# afterwards rather than assumed.
#
# That the requests were really polled and not completed by interrupt is
# checked on the controller's I/O queue interrupts (/proc/interrupts): the
# exercise puts about 700 requests of up to 64 KiB through the poll queues,
# 256 of them one at a time; about 20 requests complete by interrupt (the
# regular queue's, and one 4 MiB read on a poll queue, which the kernel
# splits and then does not poll).
#
# Program: $BLKIO_IO_URING_POLL_TEST, else tests/lib/test-io-uring-poll-queues
# under the current directory (the build directory under `meson test`).
set -euo pipefail

blockdev=${BLKIO_VM_NVME_BLOCK:-}
prog=${BLKIO_IO_URING_POLL_TEST:-$PWD/tests/lib/test-io-uring-poll-queues}

skip() { echo "$0: SKIP: $*"; exit 77; }
fail() { echo "$0: FAIL: $*"; exit 1; }

[ -n "${BLKIO_VM:-}" ] || skip "run inside the test VM (tests/vm/run-in-vm.sh)"
[ -n "$blockdev" ] || skip "BLKIO_VM_NVME_BLOCK is not set (no --nvme)"
[ -b "$blockdev" ] || fail "$blockdev is not a block device"
[ -x "$prog" ] || fail "test program $prog is not built"

blk=${blockdev##*/}
nsid=${blk##*n}

# The controller behind a namespace's block device: the device itself, or
# with native multipath the first controller of its subsystem.
ctrl_of() {
    local d
    d=$(readlink -f "/sys/block/$1/device")
    if [ -e "$d/device" ]; then
        echo "$d"
    else
        for c in "$d"/nvme[0-9]*; do
            readlink -f "$c"
            return
        done
    fi
}

ctrl=$(ctrl_of "$blk")
[ -n "$ctrl" ] && [ -e "$ctrl/device" ] || fail "no NVMe controller for $blk"
bdf=$(basename "$(readlink -f "$ctrl/device")")

if [ "$(cat "/sys/block/$blk/queue/io_poll")" != 1 ]; then
    echo "giving nvme a poll queue and re-probing $bdf"
    echo 1 > /sys/module/nvme/parameters/poll_queues ||
        skip "cannot set nvme poll_queues"
    echo "$bdf" > /sys/bus/pci/drivers/nvme/unbind
    echo "$bdf" > /sys/bus/pci/drivers/nvme/bind
    blk=
    for _ in $(seq 200); do
        for c in "/sys/bus/pci/devices/$bdf/nvme"/nvme[0-9]*; do
            [ -d "$c" ] || continue
            b=nvme${c##*/nvme}n$nsid
            if [ -b "/dev/$b" ] &&
               [ "$(cat "/sys/block/$b/queue/io_poll" 2>/dev/null)" = 1 ]; then
                blk=$b
                ctrl=$(readlink -f "$c")
            fi
        done
        [ -n "$blk" ] && break
        sleep 0.05
    done
    [ -n "$blk" ] || fail "no namespace $nsid with poll queues on $bdf after re-probing"
    blockdev=/dev/$blk
fi
echo "$blockdev: queue/io_poll $(cat "/sys/block/$blk/queue/io_poll")," \
     "nvme.poll_queues $(cat /sys/module/nvme/parameters/poll_queues)"

# Interrupts of the controller's I/O queues (nvmeNq1...; q0 is the admin
# queue, poll queues have none).
ctrl_name=${ctrl##*/}
io_irqs() {
    awk -v pat="^${ctrl_name}q[1-9][0-9]*\$" '
        $NF ~ pat { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i; else break }
        END { print s + 0 }' /proc/interrupts
}

before=$(io_irqs)
rc=0
BLKIO_IO_URING_POLL_DEV=$blockdev "$prog" || rc=$?
after=$(io_irqs)
irqs=$((after - before))
echo "I/O queue interrupts of $ctrl_name during the test: $irqs"
[ "$rc" = 0 ] || exit "$rc"
# Completed by interrupt, the lone reads alone would raise 256 (one each:
# 300 for 300 O_DIRECT reads by dd), the others ~100 more (completions
# that arrive together share one); polled, about 20 remain.
[ "$irqs" -lt 128 ] ||
    fail "$irqs interrupts: the poll queue requests were not polled"
echo "io_uring poll queues on $blockdev passed"
