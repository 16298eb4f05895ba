#!/bin/sh
# The main job: install dependencies, build, and serve a disk image over NBD
# with nbdkit-blkio-plugin (io_uring driver, no special hardware needed).
#
#   scripts/serve.sh [DISK_IMAGE [SIZE]]
#
# Creates DISK_IMAGE (default ./disk.img, 1G, sparse) if it does not exist
# and serves it on nbd://localhost (port 10809) until interrupted.
# Try it from another terminal:  nbdinfo nbd://localhost
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
disk=${1:-$top/disk.img}
size=${2:-1G}

"$top/scripts/setup-deps.sh"
"$top/scripts/build.sh"

if [ ! -e "$disk" ]; then
    truncate -s "$size" "$disk"
    echo "serve: created $size sparse disk image $disk"
fi

echo "serve: nbd://localhost -> $disk (Ctrl-C to stop)"
exec nbdkit -f "$top/build/plugin/nbdkit-blkio-plugin.so" \
    io_uring path="$disk"
