#!/usr/bin/env bash
# -Dplugin_libblkio=system: the plugin built against a libblkio that
# pkg-config finds instead of the in-tree one.  No other libblkio is
# packaged here, so ours plays the system library: installed with
# "meson install" into a scratch root, found through its blkio.pc, and
# loaded from there at run time.  The plugin must say which library it
# uses, link to that one, and serve data.
source "$(dirname "$0")/functions.sh"
requires pkg-config --version
requires meson --version
requires ninja --version
requires /usr/bin/python3 -c 'import nbd'
if [ -z "${MESON_SOURCE_ROOT:-}" ] || [ -z "${MESON_BUILD_ROOT:-}" ]; then
    echo "$0: SKIP: run me from meson test (MESON_SOURCE_ROOT is not set)"
    exit 77
fi
set -x

root=$tmp/root
meson install -C "$MESON_BUILD_ROOT" --destdir "$root" --no-rebuild \
    --quiet >/dev/null
pc=$(find "$root" -name blkio.pc | head -1)
lib=$(find "$root" -name 'libblkio.so.1' | head -1)
[ -n "$pc" ] && [ -n "$lib" ]
libdir=$(dirname "$lib")

PKG_CONFIG_PATH=$(dirname "$pc") PKG_CONFIG_SYSROOT_DIR=$root \
    meson setup "$tmp/build" "$MESON_SOURCE_ROOT" \
    -Dplugin_libblkio=system -Dtests=false >/dev/null
ninja -C "$tmp/build" plugin/nbdkit-blkio-plugin.so >/dev/null
plugin=$tmp/build/plugin/nbdkit-blkio-plugin.so

export LD_LIBRARY_PATH=$libdir
ldd "$plugin" | grep "libblkio.so.1 => $libdir/libblkio.so.1"
"$NBDKIT" "$plugin" --dump-plugin > "$tmp/dump"
cat "$tmp/dump"
grep -qx 'blkio_library=libblkio' "$tmp/dump"
grep -q '^blkio_drivers=.*io_uring' "$tmp/dump"

# It serves: write through NBD, read back, and find it in the file.
truncate -s 4M "$tmp/disk"
PLUGIN=$plugin start_nbdkit io_uring path="$tmp/disk"
nbdsh -u "$(uri)" -c '
buf = b"system libblkio " * 256
h.pwrite(buf, 65536)
h.flush()
assert h.pread(len(buf), 65536) == buf
'
_stop_nbdkit
dd if="$tmp/disk" bs=64k skip=1 count=1 2>/dev/null | head -c 16 |
    grep -q 'system libblkio '
