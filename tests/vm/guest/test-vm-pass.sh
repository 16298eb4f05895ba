#!/bin/sh
# Guest test that passes: proves a test runs in the VM chroot with the
# environment the harness promises.
set -e
[ "$BLKIO_VM" = 1 ] || { echo "BLKIO_VM is not 1"; exit 1; }
[ "$(id -u)" = 0 ] || { echo "not root"; exit 1; }
case $(uname -r) in
6.12.*) ;;
*) echo "unexpected guest kernel $(uname -r)"; exit 1 ;;
esac
# /tmp, /run and /dev/shm are writable; the host root is not.
for d in /tmp /run /dev/shm; do
    echo x > "$d/blkio-vm-probe" && rm "$d/blkio-vm-probe"
done
if touch /usr/blkio-vm-probe 2>/dev/null; then
    echo "host root is writable in the guest"
    exit 1
fi
echo "guest $(uname -r), cwd $(pwd)"
