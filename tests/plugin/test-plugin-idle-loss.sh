#!/usr/bin/env bash
# The vhost-user backend dies while nbdkit has no client.  The next
# connection must be refused in the handshake (the manual: "new connections
# are refused in the handshake while the device is down"), not accepted
# with every request then failing; and once the daemon is back, a new
# connection is served.  Before, the connection-time probe found the
# device gone, waited for the reconnect, and accepted the connection when
# that wait failed with EIO.  Run under tests/vhost-user/qsd-run.sh.
source "$(dirname "$0")/functions.sh"
requires_qsd_daemon
set -x

start_nbdkit virtio-blk-vhost-user path="$VU_SOCK"

# try_read: one connection, one 4 KiB read; prints what happened.
try_read ()
{
    timeout 30 /usr/bin/python3 - "$(uri)" <<'PY'
import nbd, sys
h = nbd.NBD()
try:
    h.connect_uri(sys.argv[1])
except nbd.Error as e:
    print(f"refused: {e}")
    sys.exit(0)
try:
    h.pread(4096, 0)
    print("read ok")
except nbd.Error as e:
    print(f"accepted, read failed: {e}")
PY
}

[ "$(try_read)" = "read ok" ]

kill -9 "$VU_QSD_PID"
sleep 0.5
for i in 1 2; do
    out=$(try_read)
    echo "connection $i with the daemon gone: $out"
    case "$out" in
    refused:*) ;;
    *) echo "FAIL: connection $i was not refused in the handshake"; exit 1 ;;
    esac
done

start_qsd "$VU_IMG"
ok=
for _ in $(seq 50); do
    if [ "$(try_read)" = "read ok" ]; then ok=1; break; fi
    sleep 0.2
done
[ -n "$ok" ] || { echo "FAIL: no connection served after the daemon came back"; exit 1; }
echo "ok: refused while gone, served once back"
