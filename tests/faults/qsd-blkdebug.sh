#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# qsd-blkdebug.sh - qemu-storage-daemon with a blkdebug node between the
# export and its image: used as QSD= for tests/vhost-user/qsd-run.sh,
# which passes "--blockdev driver=file,node-name=disk,filename=IMG".
# That blockdev becomes node "disk-file" under a blkdebug node named
# "disk" (the one the export serves), with the inject-error rules in
# $BLKDEBUG_RULES (a JSON list, e.g.
#   [{"event":"none","iotype":"read","errno":5,"sector":2048}]).
# Both nodes pass discards down (discard=unmap; the default ignores them
# before any rule could see them).
set -eu
real=${QSD_REAL:-/usr/bin/qemu-storage-daemon}
rules=${BLKDEBUG_RULES:-[]}

n=$#
i=0
while [ $i -lt $n ]; do
    a=$1
    shift
    i=$((i + 1))
    case "$a" in
    driver=file,node-name=disk,filename=*)
        img=${a#driver=file,node-name=disk,filename=}
        set -- "$@" "driver=file,node-name=disk-file,filename=$img,discard=unmap" \
            --blockdev "{\"driver\":\"blkdebug\",\"node-name\":\"disk\",\"image\":\"disk-file\",\"discard\":\"unmap\",\"inject-error\":$rules}"
        ;;
    *)
        set -- "$@" "$a"
        ;;
    esac
done
exec "$real" "$@"
