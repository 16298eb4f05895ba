#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# qsd-blkdebug.sh - qemu-storage-daemon with a blkdebug node between the
# export and its image: used as QSD= for tests/vhost-user/qsd-run.sh, or
# as "qemu-storage-daemon" early in PATH for the test VM's vdpa-setup.sh.
# Each "--blockdev driver=file,node-name=NODE,filename=IMG" becomes node
# "NODE-file" under a blkdebug node named NODE (the one the export
# serves), with the inject-error rules in $BLKDEBUG_RULES (a JSON list),
# by default those of blkdebug-rules.json next to this script (the ones
# blkdebug-client.py expects).  Both nodes pass discards down
# (discard=unmap; the default ignores them before any rule could see
# them).  QSD_REAL: the real daemon (default /usr/bin/qemu-storage-daemon).
set -eu
real=${QSD_REAL:-/usr/bin/qemu-storage-daemon}
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
rules=${BLKDEBUG_RULES:-$(cat "$here/blkdebug-rules.json")}

n=$#
i=0
while [ $i -lt $n ]; do
    a=$1
    shift
    i=$((i + 1))
    case "$a" in
    driver=file,node-name=*,filename=*)
        node=${a#driver=file,node-name=}
        node=${node%%,*}
        img=${a#driver=file,node-name=$node,filename=}
        set -- "$@" "driver=file,node-name=$node-file,filename=$img,discard=unmap" \
            --blockdev "{\"driver\":\"blkdebug\",\"node-name\":\"$node\",\"image\":\"$node-file\",\"discard\":\"unmap\",\"inject-error\":$rules}"
        ;;
    *)
        set -- "$@" "$a"
        ;;
    esac
done
exec "$real" "$@"
