#!/usr/bin/env bash
# --dump-plugin names the library and its drivers; --help lists the
# parameters.
source "$(dirname "$0")/functions.sh"
requires test -x "$NBDKIT"
set -x

timeout -k 5 20 "$NBDKIT" "$PLUGIN" --dump-plugin > "$tmp/dump"
cat "$tmp/dump"
grep -q '^name=blkio$' "$tmp/dump"
grep -q '^max_thread_model=parallel$' "$tmp/dump"
# The thread model nbdkit runs the plugin in: parallel on an nbdkit that
# survives clients hanging up with requests in flight (1.33.10 and later;
# known by nbdkit_parse_probability, 1.36), else each connection's
# requests serialized; thread-model= overrides.
if nm -D "$(command -v "$NBDKIT")" 2>/dev/null | grep -q ' nbdkit_parse_probability$'; then
    want=parallel
else
    want=serialize_requests
fi
grep -q "^thread_model=$want\$" "$tmp/dump"
timeout -k 5 20 "$NBDKIT" "$PLUGIN" io_uring thread-model=parallel \
    --dump-plugin > "$tmp/dump2"
grep -q '^thread_model=parallel$' "$tmp/dump2"
timeout -k 5 20 "$NBDKIT" "$PLUGIN" io_uring thread-model=serialize_requests \
    --dump-plugin > "$tmp/dump2"
grep -q '^thread_model=serialize_requests$' "$tmp/dump2"
grep -q '^blkio_errno_map=' "$tmp/dump"
grep -q '^blkio_zoned=' "$tmp/dump"
grep -q '^magic_config_key=driver$' "$tmp/dump"
grep -Eq '^blkio_library=libblkio(-c)?$' "$tmp/dump"
grep -q '^blkio_drivers=' "$tmp/dump"

timeout -k 5 20 "$NBDKIT" "$PLUGIN" --help > "$tmp/help"
for word in 'driver=' 'path=' 'num-queues=' 'PROPERTY=VALUE' 'get=' \
        'reconnect=' 'reconnect-wait=' 'zoned-writable=' 'thread-model='; do
    grep -q -- "$word" "$tmp/help"
done
