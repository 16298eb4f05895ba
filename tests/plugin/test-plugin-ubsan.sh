#!/usr/bin/env bash
# The plugin's sources built once more with UBSan (every check fatal) and
# run through the pool's paths: pool queues, private queues of io_uring
# threads, bounce buffers (O_DIRECT), parallel clients.  Catches undefined
# behaviour the normal build hides, such as a queue struct declared 64-byte
# aligned but allocated with less.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
requires /usr/bin/python3 -c 'import nbd'
requires cc --version
if [ -z "${MESON_SOURCE_ROOT:-}" ] || [ -z "${MESON_BUILD_ROOT:-}" ]; then
    echo "$0: SKIP: run me from meson test (MESON_SOURCE_ROOT is not set)"
    exit 77
fi
if [ -n "$_preload" ]; then
    echo "$0: SKIP: already a sanitizer build"
    exit 77
fi
ubsan=$(cc -print-file-name=libubsan.so)
if [ ! -e "$ubsan" ]; then
    echo "$0: SKIP: no libubsan for cc"
    exit 77
fi
set -x

so=$tmp/nbdkit-blkio-plugin.so
cc -shared -fPIC -O1 -g -std=gnu11 -D_GNU_SOURCE -pthread \
    -fsanitize=undefined -fno-sanitize-recover=all -fvisibility=hidden \
    -DPACKAGE_VERSION='"ubsan"' -DBIO_LIBRARY='"libblkio-c"' \
    -I"$MESON_SOURCE_ROOT/include" -I"$MESON_SOURCE_ROOT/plugin" \
    -o "$so" "$MESON_SOURCE_ROOT"/plugin/*.c \
    -L"$MESON_BUILD_ROOT/lib" -lblkio
PLUGIN=$so
NBDKIT_UBSAN=$tmp/nbdkit-ubsan
cat > "$NBDKIT_UBSAN" <<WRAP
#!/bin/sh
LD_PRELOAD=$ubsan UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    exec "$NBDKIT" "\$@"
WRAP
chmod +x "$NBDKIT_UBSAN"
NBDKIT=$NBDKIT_UBSAN

make_random "$tmp/disk" $((16 << 20))
direct=$(direct_works)
for args in "num-queues=2" "" "direct=$direct num-queues=2"; do
    if ! start_nbdkit io_uring path="$tmp/disk" $args 2> "$tmp/nbdkit.log"; then
        cat "$tmp/nbdkit.log"
        exit 1
    fi
    timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$tmp/disk" <<'PY'
import nbd, os, sys
uri, path = sys.argv[1], sys.argv[2]
hs = [nbd.NBD() for _ in range(3)]
for h in hs:
    h.connect_uri(uri)
size = hs[0].get_size()
cmds = []
for i in range(192):
    h = hs[i % 3]
    off = (i * 7919 * 4096) % (size - 65536)
    cmds.append((h, h.aio_pwrite(bytes([i]) * 65536, off) if i % 2
                 else h.aio_pread(nbd.Buffer(65536), off)))
for h, c in cmds:
    while not h.aio_command_completed(c):
        h.poll(-1)
for h in hs:
    h.flush()
    h.shutdown()
print("ok")
PY
    _stop_nbdkit
    cat "$tmp/nbdkit.log"
    if grep -q "runtime error" "$tmp/nbdkit.log"; then
        echo "FAIL: UBSan reported undefined behaviour ($args)"
        exit 1
    fi
done
