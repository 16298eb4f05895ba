#!/bin/sh
# Configure (once) and build into ./build.
set -eu
cd "$(dirname "$0")/.."
if [ ! -f build/build.ninja ]; then
    meson setup build "$@"
fi
ninja -C build
