#!/usr/bin/env bash
# --dump-plugin names the library and its drivers; --help lists the
# parameters.
source "$(dirname "$0")/functions.sh"
requires test -x "$NBDKIT"
set -x

timeout -k 5 20 "$NBDKIT" "$PLUGIN" --dump-plugin > "$tmp/dump"
cat "$tmp/dump"
grep -q '^name=blkio$' "$tmp/dump"
grep -q '^thread_model=parallel$' "$tmp/dump"
grep -q '^magic_config_key=driver$' "$tmp/dump"
grep -Eq '^blkio_library=libblkio(-c)?$' "$tmp/dump"
grep -q '^blkio_drivers=' "$tmp/dump"

timeout -k 5 20 "$NBDKIT" "$PLUGIN" --help > "$tmp/help"
for word in 'driver=' 'path=' 'num-queues=' 'PROPERTY=VALUE' 'get='; do
    grep -q -- "$word" "$tmp/help"
done
