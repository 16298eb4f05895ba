#!/bin/sh
# Install what building, serving and testing need, from Debian bookworm.
# Idempotent: packages already present are left alone.  Run as root (or
# with sudo available).
set -eu

PACKAGES="
  build-essential meson ninja-build pkg-config
  liburing-dev
  nbdkit nbdkit-plugin-dev libnbd-bin python3-libnbd perl
  qemu-utils qemu-system-common qemu-system-x86
  busybox-static kmod iproute2 nvme-cli
  fio valgrind strace gdb
  clang libclang-rt-14-dev
"

SUDO=
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
fi

missing=
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    echo "setup-deps: installing:$missing"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
else
    echo "setup-deps: all Debian packages present"
fi
