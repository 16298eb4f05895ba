#!/bin/bash
# run-in-vm.sh: run test programs inside a throw-away QEMU guest.
#
# For tests of drivers whose kernel devices the host does not have (NVMe,
# VFIO, vDPA).  The guest boots Debian's 6.12 kernel with a busybox
# initramfs, mounts the host's root read-only over 9p and runs each TEST in
# a chroot into it, so host binaries, shared libraries and the build tree
# work unchanged.  One boot runs all the TESTs given.
#
# Usage:
#   tests/vm/run-in-vm.sh [OPTIONS] -- TEST [TEST...]
#
# Each TEST is a host path to an executable (script or binary).  It runs in
# the guest as root, with cwd = --cwd (default: the current directory, i.e.
# the build directory under `meson test`), stdin /dev/null and a clean
# environment:
#   BLKIO_VM=1
#   BLKIO_VM_NVME=/dev/ngXn1, BLKIO_VM_NVME_BLOCK=/dev/nvmeXn1    (--nvme*)
#   BLKIO_VM_NVME_ZONED=/dev/ngYn1, BLKIO_VM_NVME_ZONED_BLOCK=...  (--nvme-zoned*)
#   BLKIO_VM_VIRTIO_BLK_BDF=0000:00:10.0                           (--virtio-blk*)
#   BLKIO_VM_GUEST_DIR=<source>/tests/vm/guest   guest helpers (vfio-bind.sh,
#                                                vdpa-setup.sh)
#   BLKIO_VM_KERNEL_ROOT=DIR   the unpacked guest kernel: for more modules,
#                              `modprobe -d "$BLKIO_VM_KERNEL_ROOT" MOD`
#   PATH, HOME=/root, TERM=dumb, LANG=C.UTF-8, plus --env and the sanitizer
#   and LD_LIBRARY_PATH variables of the caller's environment.
# With only --nvme*, the NVMe devices are /dev/ng0n1 and /dev/nvme0n1.
# Writable in the guest (memory only): /tmp (an overlay on the host's /tmp),
# /run, /dev/shm.  Everything else of the host is read-only.
#
# Options:
#   --nvme IMG | --nvme-size SIZE   NVMe controller, namespace 1 backed by IMG
#                                   (or by a temporary sparse raw image)
#   --nvme-opts OPTS                appended to -device nvme (e.g.
#                                   logical_block_size=4096,physical_block_size=4096)
#   --nvme-zoned IMG | --nvme-zoned-size SIZE
#                                   second NVMe controller with one zoned namespace
#   --nvme-zoned-opts OPTS          replaces the zone options of -device nvme-ns
#                                   (default zoned.zone_size=1M,zoned.zone_capacity=1M,
#                                   zoned.max_open=16,zoned.max_active=16)
#   --virtio-blk IMG | --virtio-blk-size SIZE
#                                   virtio-blk-pci at 0000:00:10.0 behind the vIOMMU,
#                                   left without a driver (for VFIO; see
#                                   guest/vfio-bind.sh)
#   --timeout S                     the whole run (boot + all tests), default 300
#   --test-timeout S                each test, default: the whole-run timeout
#   --cwd DIR                       working directory of the tests
#   --env NAME=VALUE | --env NAME   add to / copy into the tests' environment
#   --qemu-arg ARG                  extra qemu argument (repeatable)
# vDPA needs no option: guest/vdpa-setup.sh starts qemu-storage-daemon's
# vduse-blk export inside the guest.
#
# Output: the guest output of each test, then one line per test:
#   PASS|FAIL|SKIP TEST
# Exit status: 0 all tests ran and passed or skipped (at least one passed),
# 77 all skipped, or the VM cannot be had here (no qemu, no kernel), with
# the reason printed; 1 otherwise.  A test without a recorded result (guest
# crash, timeout) is a failure.
#
# Environment:
#   BLKIO_VM_ACCEL     qemu accelerator list, default "tcg" (e.g. "kvm:tcg")
#   BLKIO_VM_CPU       qemu -cpu model, default "max" (with KVM: "host")
#   BLKIO_VM_BOOT_TIMEOUT  seconds for the guest to start the first test (90)
#   BLKIO_VM_REQUIRE=1     a VM that cannot be had is a failure, not a skip
#   BLKIO_VM_NO_DOWNLOAD=1 never fetch the kernel (skip if not cached)
#   BLKIO_VM_VERBOSE=1     print the guest console even when all went well
#   BLKIO_VM_CACHE, BLKIO_VM_EXTRA_MODULES, BLKIO_VM_BUSYBOX, BLKIO_VM_QEMU
#
# Meson: register one test per boot, in suite 'vm', not parallel:
#   run_in_vm = find_program(meson.project_source_root() / 'tests/vm/run-in-vm.sh')
#   test('nvme', run_in_vm, args : ['--nvme-size', '64M', '--', exe1, exe2],
#        suite : 'vm', is_parallel : false, timeout : 600)

set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/vm-common.sh"

prog=run-in-vm
say() { printf '%s: %s\n' "$prog" "$*"; }
die() { say "error: $*" >&2; exit 1; }
skip()
{
    if [ "${BLKIO_VM_REQUIRE:-0}" = 1 ]; then
        say "error: test VM unavailable (BLKIO_VM_REQUIRE=1): $*" >&2
        exit 1
    fi
    say "SKIP: $*"
    exit 77
}

usage()
{
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

nvme_img= nvme_size= nvme_opts=
zoned_img= zoned_size=
zoned_opts=zoned.zone_size=1M,zoned.zone_capacity=1M,zoned.max_open=16,zoned.max_active=16
vblk_img= vblk_size=
timeout=300 test_timeout=
cwd=$PWD
envs=()
qemu_extra=()

need_arg() { [ $# -ge 2 ] || die "option $1 needs an argument"; }
while [ $# -gt 0 ]; do
    case $1 in
    --nvme)             need_arg "$@"; nvme_img=$2; shift ;;
    --nvme-size)        need_arg "$@"; nvme_size=$2; shift ;;
    --nvme-opts)        need_arg "$@"; nvme_opts=$2; shift ;;
    --nvme-zoned)       need_arg "$@"; zoned_img=$2; shift ;;
    --nvme-zoned-size)  need_arg "$@"; zoned_size=$2; shift ;;
    --nvme-zoned-opts)  need_arg "$@"; zoned_opts=$2; shift ;;
    --virtio-blk)       need_arg "$@"; vblk_img=$2; shift ;;
    --virtio-blk-size)  need_arg "$@"; vblk_size=$2; shift ;;
    --timeout)          need_arg "$@"; timeout=$2; shift ;;
    --test-timeout)     need_arg "$@"; test_timeout=$2; shift ;;
    --cwd)              need_arg "$@"; cwd=$2; shift ;;
    --env)              need_arg "$@"; envs+=("$2"); shift ;;
    --qemu-arg)         need_arg "$@"; qemu_extra+=("$2"); shift ;;
    -h|--help)          usage; exit 0 ;;
    --)                 shift; break ;;
    -*)                 die "unknown option $1 (see --help)" ;;
    *)                  break ;;
    esac
    shift
done
[ $# -gt 0 ] || die "no TEST given (see --help)"

case $timeout in ''|*[!0-9]*) die "--timeout $timeout is not a number of seconds" ;; esac
test_timeout=${test_timeout:-$timeout}
case $test_timeout in ''|*[!0-9]*) die "--test-timeout $test_timeout is not a number of seconds" ;; esac
cwd=$(realpath -e "$cwd") || die "--cwd $cwd does not exist"

# The guest mounts its own file systems over these host directories, so
# host files there are out of its sight.
guest_private()
{
    case $1 in
    /dev|/dev/*|/proc|/proc/*|/sys|/sys/*|/run|/run/*) return 0 ;;
    esac
    return 1
}
guest_private "$cwd" && die "--cwd $cwd is hidden in the guest (guest-private /dev, /proc, /sys, /run)"

tests=()
for t in "$@"; do
    p=$(realpath -e "$t") || die "test $t does not exist"
    guest_private "$p" && die "test $t is hidden in the guest (guest-private /dev, /proc, /sys, /run)"
    [ -f "$p" ] && [ -x "$p" ] || die "test $t is not an executable file"
    tests+=("$p")
done
names=("$@")

# Variables passed on from the caller by default (meson sets some of them).
for v in LD_LIBRARY_PATH ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS MALLOC_PERTURB_; do
    [ -n "${!v:-}" ] && envs+=("$v")
done
for i in "${!envs[@]}"; do
    e=${envs[$i]}
    case $e in
    *=*) ;;
    *) envs[$i]="$e=${!e:-}" ;;
    esac
    case ${envs[$i]} in
    [A-Za-z_]*=*) ;;
    *) die "--env $e is not NAME=VALUE or NAME" ;;
    esac
    case ${envs[$i]} in *$'\n'*) die "--env $e: newlines are not supported" ;; esac
done

# ---- What the VM needs from the host ---------------------------------------

qemu=${BLKIO_VM_QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || skip "$qemu not found (Debian package qemu-system-x86)"
busybox=${BLKIO_VM_BUSYBOX:-/bin/busybox}
[ -x "$busybox" ] || skip "$busybox not found (Debian package busybox-static)"
if LC_ALL=C ldd "$busybox" 2>&1 | grep -q '=>'; then
    skip "$busybox is dynamically linked (install busybox-static)"
fi
for c in modprobe depmod; do
    command -v "$c" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
    command -v "$c" >/dev/null || skip "$c not found (Debian package kmod)"
done
# Debian's modules are .ko.xz; busybox can unpack them where xz-utils is absent.
unxz_cmd=(xz -dc)
command -v xz >/dev/null || unxz_cmd=("$busybox" xz -dc)

cache=$(vm_cache_dir)
kver=$(cat "$cache/kernel/current" 2>/dev/null || true)
if [ -z "$kver" ] || [ ! -f "$cache/kernel/$kver/boot/vmlinuz-$kver" ]; then
    [ "${BLKIO_VM_NO_DOWNLOAD:-0}" = 1 ] &&
        skip "no guest kernel in $cache (run tests/vm/setup-kernel.sh)"
    say "no guest kernel in $cache: fetching it"
    "$here/setup-kernel.sh" >&2
    case $? in
    0) ;;
    77) skip "guest kernel cannot be fetched (see above)" ;;
    *) die "tests/vm/setup-kernel.sh failed" ;;
    esac
    kver=$(cat "$cache/kernel/current")
fi
kroot=$cache/kernel/$kver
kernel=$kroot/boot/vmlinuz-$kver

# ---- The initramfs (cached; rebuilt when an input changes) -----------------

# Modules in load order: each one after its dependencies, each once.
module_list()
{
    local m
    for m in $VM_MODULES ${BLKIO_VM_EXTRA_MODULES:-}; do
        modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null |
            awk '$1 == "insmod" { print $2 }'
    done | awk '!seen[$0]++'
}

build_initramfs()
{
    local mods key out stage ko name
    mods=$(module_list)
    [ -n "$mods" ] || die "no modules found in $kroot"
    key=$({ cat "$here/init.sh"; sha256sum < "$busybox"; echo "$kver";
            echo "$mods"; } | sha256sum | cut -c1-16)
    out=$cache/initramfs-$kver-$key.cpio.gz
    if [ ! -f "$out" ]; then
        stage=$(mktemp -d "$cache/initramfs.XXXXXX") || die "mktemp in $cache failed"
        mkdir -p "$stage"/{bin,proc,sys,dev,host,results,scratch,lib/modules}
        cp "$busybox" "$stage/bin/busybox"
        cp "$here/init.sh" "$stage/init"
        chmod 755 "$stage/init" "$stage/bin/busybox"
        : > "$stage/modules.list"
        for ko in $mods; do
            name=$(basename "$ko")
            # busybox insmod loads plain .ko files only.
            case $name in
            *.ko.xz)  name=${name%.xz};  "${unxz_cmd[@]}" "$ko" > "$stage/lib/modules/$name" ;;
            *.ko.zst) name=${name%.zst}; zstd -qdc "$ko" > "$stage/lib/modules/$name" ;;
            *.ko.gz)  name=${name%.gz};  gzip -dc "$ko" > "$stage/lib/modules/$name" ;;
            *)        cp "$ko" "$stage/lib/modules/$name" ;;
            esac || { rm -rf "$stage"; die "cannot unpack $ko"; }
            echo "$name" >> "$stage/modules.list"
        done
        if ! (cd "$stage" && find . | "$busybox" cpio -o -H newc 2>/dev/null) |
                gzip -1 > "$out.tmp"; then
            rm -rf "$stage" "$out.tmp"
            die "cannot build the initramfs"
        fi
        mv "$out.tmp" "$out"
        rm -rf "$stage"
        # Drop initramfs images built from older inputs.
        for f in "$cache"/initramfs-*.cpio.gz; do
            [ "$f" = "$out" ] || rm -f "$f"
        done
    fi
    echo "$out"
}

vm_cache_lock "$cache"
initrd=$(build_initramfs) || exit 1
exec 9>&-

# ---- Per-run temporary state -----------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/blkio-vm.XXXXXX") || die "mktemp failed"
qemu_pid=
qemu_status=0

kill_qemu()
{
    [ -n "$qemu_pid" ] || return 0
    local pid=$qemu_pid
    # Prefer the pid qemu wrote itself; $! is the same process here.
    [ -s "$tmp/qemu.pid" ] && pid=$(cat "$tmp/qemu.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null
    fi
    wait "$qemu_pid" 2>/dev/null
    qemu_status=$?
    qemu_pid=
}

cleanup()
{
    kill_qemu
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

make_image()
{
    # $1 given image, $2 size for a temporary one, $3 temporary name
    if [ -n "$1" ]; then
        realpath -e "$1" || die "image $1 does not exist"
    elif [ -n "$2" ]; then
        truncate -s "$2" "$tmp/$3" || die "cannot create a $2 image"
        echo "$tmp/$3"
    fi
}
nvme_img=$(make_image "$nvme_img" "$nvme_size" nvme.img) || exit 1
zoned_img=$(make_image "$zoned_img" "$zoned_size" nvme-zoned.img) || exit 1
vblk_img=$(make_image "$vblk_img" "$vblk_size" virtio-blk.img) || exit 1

# aio=io_uring is faster under TCG, but only where the host lets qemu use
# io_uring (it may be disabled by sysctl or a seccomp policy).
aio=
if [ -n "$nvme_img$zoned_img$vblk_img" ]; then
    probe_img=${nvme_img:-${zoned_img:-$vblk_img}}
    if command -v qemu-io >/dev/null &&
       qemu-io -r -f raw --aio io_uring -c 'read 0 512' "$probe_img" >/dev/null 2>&1; then
        aio=,aio=io_uring
    fi
fi

# ---- The job for the guest -------------------------------------------------

# Single-quote $1 for the guest's sh.
shq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }

write_job()
{
    local i
    {
        echo "BLKIO_VM_CWD=$(shq "$cwd")"
        echo "BLKIO_VM_TEST_TIMEOUT=$test_timeout"
        echo "BLKIO_VM_KERNEL_ROOT=$(shq "$kroot")"
        echo "BLKIO_VM_GUEST_DIR=$(shq "$here/guest")"
        [ -n "$nvme_img" ] && echo "BLKIO_VM_NVME_SERIAL=blkionvme0"
        [ -n "$zoned_img" ] && echo "BLKIO_VM_NVME_ZONED_SERIAL=blkionvmez"
        [ -n "$vblk_img" ] && echo "BLKIO_VM_VIRTIO_BLK_BDF=0000:00:10.0"
        echo "BLKIO_VM_NTESTS=${#tests[@]}"
        for i in "${!tests[@]}"; do
            echo "BLKIO_VM_TEST_$((i + 1))=$(shq "${tests[$i]}")"
        done
        echo "BLKIO_VM_NENV=${#envs[@]}"
        for i in "${!envs[@]}"; do
            echo "BLKIO_VM_ENV_$((i + 1))=$(shq "${envs[$i]}")"
        done
    } > "$1/job"
}

# qemu option values escape a comma by doubling it.
qesc() { printf '%s' "${1//,/,,}"; }

qemu_args=(
    -machine "q35,accel=${BLKIO_VM_ACCEL:-tcg},kernel-irqchip=split"
    -cpu "${BLKIO_VM_CPU:-max}" -smp 2 -m 2G
    -nographic -no-reboot -nic none -vga none
    # The vIOMMU must come before the PCI devices it translates for.
    -device intel-iommu,intremap=on,caching-mode=on
    -kernel "$kernel" -initrd "$initrd"
    -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
)
if [ -n "$vblk_img" ]; then
    # Fixed address first, before automatically placed devices could take it.
    # Without iommu_platform=on, writes through VFIO hang.
    qemu_args+=(-drive "file=$(qesc "$vblk_img"),if=none,id=vb0,format=raw$aio"
                -device virtio-blk-pci,drive=vb0,disable-legacy=on,iommu_platform=on,addr=0x10)
fi
if [ -n "$nvme_img" ]; then
    qemu_args+=(-drive "file=$(qesc "$nvme_img"),if=none,id=nv0,format=raw$aio"
                -device "nvme,serial=blkionvme0,drive=nv0${nvme_opts:+,$nvme_opts}")
fi
if [ -n "$zoned_img" ]; then
    qemu_args+=(-drive "file=$(qesc "$zoned_img"),if=none,id=nvz0,format=raw$aio"
                -device nvme,id=nvmez,serial=blkionvmez
                -device "nvme-ns,drive=nvz0,bus=nvmez,nsid=1,zoned=on${zoned_opts:+,$zoned_opts}")
fi

# The console without the firmware's terminal control sequences.
show_console()
{
    sed -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1bc//g' "$1"
}

# ---- Boot (and again, twice at most, if the guest never got to the tests) --

boot_timeout=${BLKIO_VM_BOOT_TIMEOUT:-90}
start=$SECONDS
outcome=
# From here on a signal (e.g. meson's own timeout) still reports what the
# guest got done before qemu is stopped.
interrupted=0
trap 'interrupted=1' INT TERM HUP
# About one TCG boot in 40 oopses before init runs (seen under
# multi-threaded TCG with -smp 2, measured when the harness was built): two
# more boots make a lost run rare even when the first failure was a real
# one (or the harness's own test of this retry).
max_boots=3
for attempt in $(seq $max_boots); do
    res=$tmp/results.$attempt
    mkdir "$res"
    write_job "$res"
    console=$tmp/console.$attempt.log
    rm -f "$tmp/qemu.pid"
    # no_timer_check: a slow TCG boot on a loaded host can fail the
    # IO-APIC timer check and panic ("timer doesn't work through
    # Interrupt-remapped IO-APIC"); the guest's clock works without it.
    cmdline="console=ttyS0 intel_iommu=on iommu=pt panic=-1 quiet no_timer_check"
    # For the harness's own test of this retry: a first boot that panics
    # (no init to run, no root to mount) before it starts anything.
    if [ $attempt = 1 ] && [ "${BLKIO_VM_DEBUG_BREAK_FIRST_BOOT:-0}" = 1 ]; then
        cmdline="$cmdline rdinit=/nonexistent"
    fi
    "$qemu" "${qemu_args[@]}" "${qemu_extra[@]}" -append "$cmdline" \
        -virtfs "local,path=$(qesc "$res"),mount_tag=results,security_model=none,multidevs=remap" \
        -pidfile "$tmp/qemu.pid" \
        < /dev/null > "$console" 2>&1 &
    qemu_pid=$!
    boot_start=$SECONDS
    outcome=exited
    while kill -0 "$qemu_pid" 2>/dev/null; do
        if [ $interrupted = 1 ]; then
            outcome=interrupted
            break
        fi
        if [ ! -f "$res/started" ] && [ $((SECONDS - boot_start)) -ge "$boot_timeout" ]; then
            outcome=boot-timeout
            break
        fi
        if [ $((SECONDS - start)) -ge "$timeout" ]; then
            outcome=timeout
            break
        fi
        sleep 0.2
    done
    kill_qemu
    [ -f "$res/started" ] && break
    [ $outcome = timeout ] || [ $outcome = interrupted ] && break
    # qemu itself failed (bad option, missing image...): booting again
    # would fail the same way.  A guest that panics makes qemu exit 0.
    if [ $outcome = exited ] && [ $qemu_status != 0 ]; then
        outcome=qemu-error
        break
    fi
    if [ "$attempt" -lt $max_boots ]; then
        say "guest did not start the tests ($outcome); console:" >&2
        show_console "$console" | sed 's/^/  | /' >&2
        say "booting once more" >&2
    fi
done

# ---- Report ----------------------------------------------------------------

npass=0 nfail=0 nskip=0
for i in "${!tests[@]}"; do
    n=$((i + 1))
    name=${names[$i]}
    if [ -f "$res/$n.out" ]; then
        echo "=== $name (guest output)"
        cat "$res/$n.out"
    fi
    if [ -f "$res/$n.rc" ]; then
        rc=$(cat "$res/$n.rc")
        case $rc in
        0)  echo "PASS $name"; npass=$((npass + 1)) ;;
        77) echo "SKIP $name"; nskip=$((nskip + 1)) ;;
        124|137) echo "FAIL $name (timed out after ${test_timeout}s)"; nfail=$((nfail + 1)) ;;
        *)  echo "FAIL $name (exit status $rc)"; nfail=$((nfail + 1)) ;;
        esac
    else
        case $outcome in
        timeout) why="run timed out after ${timeout}s" ;;
        boot-timeout) why="guest did not boot within ${boot_timeout}s" ;;
        interrupted) why="interrupted by a signal" ;;
        qemu-error) why="qemu failed with exit status $qemu_status, see the console" ;;
        *) why="no result: the guest stopped before the test ended" ;;
        esac
        echo "FAIL $name ($why)"
        nfail=$((nfail + 1))
    fi
done

if [ -f "$res/fatal" ]; then
    say "guest setup failed: $(cat "$res/fatal")"
fi
if [ $nfail -gt 0 ] || [ "${BLKIO_VM_VERBOSE:-0}" = 1 ] || [ -f "$res/fatal" ]; then
    echo "=== guest console"
    show_console "$console"
    if [ $nfail -gt 0 ] && [ -f "$res/dmesg" ]; then
        echo "=== guest dmesg (last 40 lines)"
        tail -n 40 "$res/dmesg"
    fi
fi
# Kernel trouble does not fail the run (the tests decide), but is shown.
if [ -f "$res/dmesg" ] &&
   grep -qE 'Oops|BUG:|WARNING: CPU|general protection|Call Trace' "$res/dmesg"; then
    say "warning: the guest kernel logged a problem:"
    grep -E -A12 'Oops|BUG:|WARNING: CPU|general protection' "$res/dmesg" | head -n 60
fi
say "${#tests[@]} tests: $npass passed, $nfail failed, $nskip skipped ($((SECONDS - start))s)"
[ $outcome = interrupted ] && exit 143
[ $nfail -gt 0 ] && exit 1
[ $npass -eq 0 ] && exit 77
exit 0
