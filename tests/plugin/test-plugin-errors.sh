#!/usr/bin/env bash
# A request libblkio fails reaches the client with libblkio's errno and the
# server logs libblkio's message: with direct=true (request-alignment > 1)
# an unaligned read, sent anyway by a non-strict client, fails with EINVAL.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
set -x

truncate -s 4M "$tmp/disk"
if [ "$(direct_works)" = false ]; then
    echo "$0: SKIP: O_DIRECT not supported in $tmp"
    exit 77
fi
start_nbdkit io_uring path="$tmp/disk" direct=true 2> "$tmp/log"

timeout -k 5 60 /usr/bin/python3 - "$(uri)" <<'PY'
import nbd, sys
h = nbd.NBD()
h.set_strict_mode(0)    # do not let libnbd refuse the unaligned request
h.connect_uri(sys.argv[1])
minimum = h.get_block_size(nbd.SIZE_MINIMUM)
print("minimum block size", minimum)
assert minimum > 1, minimum
try:
    h.pread(minimum - 1, 1)
except nbd.Error as e:
    print("refused:", e)
    assert e.errnum == 22, e      # EINVAL, not a generic EIO
else:
    raise AssertionError("unaligned read succeeded")
# The connection still works afterwards.
assert h.pread(minimum, 0) == bytes(minimum)
h.shutdown()
PY
cat "$tmp/log"
grep -q 'nbdkit: .*error: read: offset 1 count' "$tmp/log"
