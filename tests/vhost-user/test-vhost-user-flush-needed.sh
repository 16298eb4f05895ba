#!/bin/bash
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# test-vhost-user-flush-needed.sh PROGRAM - run PROGRAM (two writes, then
# a flush) against a qemu-storage-daemon export traced by strace, and check
# from the daemon's system calls that flush-needed=true is the right
# answer: the writes reach the image file with no fdatasync/fsync after
# them (not durable yet), and the flush makes one.  Skips without strace
# or where ptrace is not allowed.
set -eu
prog=$1
here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)

if ! command -v strace >/dev/null; then
    echo "$0: SKIP: strace not found (apt-get install strace)"
    exit 77
fi
if ! strace -f -o /dev/null true 2>/dev/null; then
    echo "$0: SKIP: strace cannot trace here (ptrace not allowed)"
    exit 77
fi

dir=$(mktemp -d "${TMPDIR:-/var/tmp}/vu-flush.XXXXXX")
trap 'rm -rf "$dir"' EXIT
# The daemon under strace; qsd-run.sh stops "the daemon" with SIGTERM to
# this wrapper, which passes it on to the daemon (its --pidfile).
cat > "$dir/qsd" <<EOS
#!/bin/bash
pidfile=
prev=
for a in "\$@"; do
    [ "\$prev" = --pidfile ] && pidfile=\$a
    prev=\$a
done
strace -f -o "$dir/trace" \
    -e trace=pwrite64,pwritev,pwritev2,fdatasync,fsync,io_submit,io_uring_enter \
    /usr/bin/qemu-storage-daemon "\$@" &
s=\$!
trap 'kill \$(cat "\$pidfile") 2>/dev/null; wait \$s; exit 0' TERM INT
wait \$s
EOS
chmod +x "$dir/qsd"

QSD=$dir/qsd "$here/qsd-run.sh" --size 64M -- "$prog"

# The daemon's data writes and syncs, in order (pids and "resumed" halves
# dropped): expect "w w s" (possibly more syncs), never a sync between or
# right after the writes before the flush.
calls=$(sed -n 's/^[0-9]* *\(pwrite64\|pwritev2\?\|fdatasync\|fsync\|io_submit\|io_uring_enter\)(.*/\1/p' \
        "$dir/trace" | sed 's/^pwrite.*/w/; s/^f.*sync/s/; s/^io_.*/a/')
seq=$(echo $calls | tr -d ' ')
seq=${seq#"${seq%%w*}"}     # syncs at start-up are not about our writes
echo "daemon calls (w=pwrite, s=sync, a=async submit): $seq"
case "$seq" in
    *a*)
        echo "$0: SKIP: the daemon submits asynchronous I/O; pwrite/fdatasync order not visible"
        exit 77 ;;
    ww*s*) ;;
    *)
        echo "$0: FAIL: expected two writes without a sync, then the flush's sync"
        exit 1 ;;
esac
if [ "${seq%%s*}" != ww ]; then
    echo "$0: FAIL: more than two writes before the first sync: $seq"
    exit 1
fi
echo "ok: writes were not durable until the flush"
