#!/bin/busybox sh
# /init of the test-VM initramfs (see run-in-vm.sh, which builds it).
#
# The initramfs holds only busybox, this script and the kernel modules the
# tests need.  Everything else comes from the host: its root file system over
# 9p, read-only, becomes the root of a chroot in which the tests run, so host
# binaries and shared libraries (and a build tree anywhere on the host) work
# as they are.  The job (which tests, where, with which devices) and the
# results go through a second, writable 9p share.
#
# Results protocol (the host trusts nothing else; qemu exits 0 regardless):
#   started     written just before the first test runs
#   N.out       stdout+stderr of test N
#   N.rc        exit status of test N, written after it ends
#   dmesg       the guest kernel log, at the end
#   done        written after the last test
# A test without N.rc did not finish: the host counts it as failed.

/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The initramfs has no /dev/console node, so the kernel could not give us one.
exec </dev/console >/dev/console 2>&1

say() { echo "vm-init: $*"; }

die()
{
    say "FATAL: $*"
    [ -f /results/job ] && echo "$*" > /results/fatal
    poweroff -f
    # poweroff cannot fail as PID 1, but if it did, panic (panic=-1 reboots,
    # and qemu -no-reboot exits).
    exit 1
}

# Modules, in dependency order (modules.list written by the builder).
while read -r ko; do
    insmod "/lib/modules/$ko" || say "insmod $ko failed"
done < /modules.list

mkdir -p /host /results /scratch
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro,cache=loose \
    hostroot /host || die "cannot mount the host root"
# cache=none (the default): every write reaches the host before it returns,
# so results survive an abrupt power-off.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 \
    results /results || die "cannot mount the results share"
[ -f /results/job ] || die "no job file in the results share"
. /results/job

# Guest-private scratch space: memory only, gone at power-off.
mount -t tmpfs -o mode=755 scratch /scratch

# The chroot: host root plus the usual kernel file systems, with writable
# /tmp (overlay on the host's /tmp, so a checkout or build tree there stays
# visible), /run and /dev/shm.
mkdir -p /scratch/tmp-upper /scratch/tmp-work
mount -t overlay overlay \
    -o lowerdir=/host/tmp,upperdir=/scratch/tmp-upper,workdir=/scratch/tmp-work \
    /host/tmp || die "cannot mount the /tmp overlay"
mount -t proc proc /host/proc || die "cannot mount /proc in the chroot"
mount -t sysfs sysfs /host/sys || die "cannot mount /sys in the chroot"
mount -t devtmpfs devtmpfs /host/dev || die "cannot mount /dev in the chroot"
mkdir -p /host/dev/pts /host/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /host/dev/pts
mount -t tmpfs -o mode=1777 shm /host/dev/shm
mount -t tmpfs -o mode=755 run /host/run || die "cannot mount /run in the chroot"
[ -d /host/sys/kernel/config ] && mount -t configfs configfs /host/sys/kernel/config

# Wait (bounded) for the devices asked for; NVMe probing is asynchronous,
# so names are looked up by serial number rather than assumed.
nvme_ctrl_by_serial()
{
    for c in /sys/class/nvme/nvme*; do
        [ -f "$c/serial" ] || continue
        s=$(cat "$c/serial")
        # The serial is space-padded.
        [ "${s%% *}" = "$1" ] && { basename "$c"; return 0; }
    done
    return 1
}

wait_nvme()
{
    # $1 serial, $2 variable name for the char device, $3 for the block device
    i=0
    while [ $i -lt 200 ]; do
        if c=$(nvme_ctrl_by_serial "$1"); then
            n=${c#nvme}
            for ng in /dev/ng${n}n*; do
                [ -c "$ng" ] || continue
                eval "$2=\$ng"
                blk=/dev/nvme${n}${ng#/dev/ng$n}
                [ -b "$blk" ] && eval "$3=\$blk"
                return 0
            done
        fi
        sleep 0.1
        i=$((i + 1))
    done
    say "NVMe controller with serial $1 did not appear"
    return 1
}

set --
if [ -n "${BLKIO_VM_NVME_SERIAL:-}" ]; then
    if wait_nvme "$BLKIO_VM_NVME_SERIAL" nv_char nv_blk; then
        set -- "$@" "BLKIO_VM_NVME=$nv_char"
        [ -n "${nv_blk:-}" ] && set -- "$@" "BLKIO_VM_NVME_BLOCK=$nv_blk"
    fi
fi
if [ -n "${BLKIO_VM_NVME_ZONED_SERIAL:-}" ]; then
    if wait_nvme "$BLKIO_VM_NVME_ZONED_SERIAL" nz_char nz_blk; then
        set -- "$@" "BLKIO_VM_NVME_ZONED=$nz_char"
        [ -n "${nz_blk:-}" ] && set -- "$@" "BLKIO_VM_NVME_ZONED_BLOCK=$nz_blk"
    fi
fi
if [ -n "${BLKIO_VM_VIRTIO_BLK_BDF:-}" ]; then
    if [ -d "/sys/bus/pci/devices/$BLKIO_VM_VIRTIO_BLK_BDF" ]; then
        set -- "$@" "BLKIO_VM_VIRTIO_BLK_BDF=$BLKIO_VM_VIRTIO_BLK_BDF"
    else
        say "virtio-blk-pci $BLKIO_VM_VIRTIO_BLK_BDF did not appear"
    fi
fi

# The environment of every test: a clean one, plus what the job passes on.
set -- "$@" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root TERM=dumb LANG=C.UTF-8 BLKIO_VM=1 \
    "BLKIO_VM_KERNEL_ROOT=$BLKIO_VM_KERNEL_ROOT" \
    "BLKIO_VM_GUEST_DIR=$BLKIO_VM_GUEST_DIR"
i=1
while [ $i -le "${BLKIO_VM_NENV:-0}" ]; do
    eval "set -- \"\$@\" \"\$BLKIO_VM_ENV_$i\""
    i=$((i + 1))
done

echo started > /results/started
i=1
while [ $i -le "$BLKIO_VM_NTESTS" ]; do
    eval "t=\$BLKIO_VM_TEST_$i"
    say "running $t"
    # coreutils timeout (from the host tree) kills the test's whole process
    # group; -k follows up with SIGKILL.
    chroot /host /usr/bin/timeout -k 5 "$BLKIO_VM_TEST_TIMEOUT" \
        /usr/bin/env -i "$@" \
        /bin/sh -c 'cd "$1" && exec "$2"' sh "$BLKIO_VM_CWD" "$t" \
        > "/results/$i.out" 2>&1 < /dev/null
    echo $? > "/results/$i.rc"
    i=$((i + 1))
done

dmesg > /results/dmesg 2>&1
echo done > /results/done
sync
poweroff -f
exit 1
