#!/usr/bin/env bash
# Each error the library can complete a request with reaches an NBD client
# as the error the plugin's table (--dump-plugin: blkio_errno_map) maps it
# to, and the table says what a client can act on: a device that is gone
# is EIO (not EINVAL, nbdkit's guess for errnos it does not know), out of
# space ENOSPC, writing a read-only device EPERM, EINVAL only for a bad
# request, anything else EIO.  An LD_PRELOAD shim makes every completion
# fail with the errno under test.
source "$(dirname "$0")/functions.sh"
requires_driver io_uring
requires /usr/bin/python3 -c 'import nbd'
requires_fail_shim
set -x

"$NBDKIT" "$PLUGIN" --dump-plugin > "$tmp/dump"
map=$(sed -n 's/^blkio_errno_map=//p' "$tmp/dump")
[ -n "$map" ]

truncate -s 16M "$tmp/disk"
export FAIL_COMPLETION_FILE=$tmp/errno
LD_PRELOAD=$FAIL_DO_IO_SHIM start_nbdkit io_uring path="$tmp/disk" \
    reconnect=false 2> "$tmp/nbdkit.log"

timeout -k 5 60 /usr/bin/python3 - "$(uri)" "$FAIL_COMPLETION_FILE" "$map" <<'PY'
import errno as E, nbd, os, sys
uri, errfile, table = sys.argv[1], sys.argv[2], sys.argv[3]
table = dict(tuple(int(x) for x in p.split(":")) for p in table.split(","))

# What the issue asks for, checked against the table itself.
want = {E.ENOTCONN: E.EIO, E.EPIPE: E.EIO, E.ECONNRESET: E.EIO,
        E.ESHUTDOWN: E.EIO, E.EIO: E.EIO, E.ENOSPC: E.ENOSPC,
        E.EROFS: E.EPERM, E.EBADF: E.EPERM, E.EINVAL: E.EINVAL}
for k, v in want.items():
    assert table.get(k) == v, f"table maps {E.errorcode[k]} to {table.get(k)}"
table[E.ENOLINK] = E.EIO          # not in the table: the device's error

h = nbd.NBD()
h.connect_uri(uri)
h.pread(4096, 0)
bad = []
for err, nbd_err in sorted(table.items()):
    with open(errfile + ".new", "w") as f:
        f.write(str(err))
    os.rename(errfile + ".new", errfile)
    for what, call in (("read", lambda: h.pread(4096, 0)),
                       ("write", lambda: h.pwrite(bytes(4096), 4096))):
        try:
            call()
            bad.append(f"{what} with {E.errorcode[err]} succeeded")
        except nbd.Error as e:
            if e.errnum != nbd_err:
                bad.append(f"{what} with {E.errorcode[err]} reached the "
                           f"client as {E.errorcode.get(e.errnum)}, "
                           f"want {E.errorcode[nbd_err]}")
    print(f"{E.errorcode[err]} -> {E.errorcode[nbd_err]}")
os.unlink(errfile)
h.pread(4096, 0)                  # and the connection still works
if bad:
    sys.exit("FAIL: " + "; ".join(bad))
print(f"ok: {len(table)} errnos mapped as the table says")
PY
