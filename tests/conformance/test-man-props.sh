#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# blkio(3) documents every property of every driver: each name in a
# BLKIO_PROP() table of lib/ appears in lib/blkio.pod (zone properties by
# libblkio's hyphenated names), and the generated page exists.
#   test-man-props.sh SOURCE-ROOT MAN-PAGE
set -eu
src=$1 man=$2
[ -s "$man" ] || { echo "FAIL: $man was not generated"; exit 1; }
missing=0
for name in $(grep -rhoE 'BLKIO_PROP\("[a-z_-]+"' "$src/lib" | sed 's/.*("//; s/"$//' | tr _ - | sort -u); do
    if ! grep -q "C<$name>" "$src/lib/blkio.pod"; then
        echo "FAIL: property '$name' is not described in lib/blkio.pod"
        missing=1
    fi
done
# And the differences the manual lists are the ones docs/DIFFERENCES.md has.
for id in $(grep -oE '^### D[0-9]+' "$src/docs/DIFFERENCES.md" | cut -c5-); do
    grep -q "^=item $id\$" "$src/lib/blkio.pod" ||
        { echo "FAIL: $id of docs/DIFFERENCES.md is not in blkio(3)"; missing=1; }
done
[ $missing -eq 0 ] && echo "blkio(3) describes every property and difference"
exit $missing
