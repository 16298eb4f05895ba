# tests/plugin/functions.sh - shared by the nbdkit-blkio-plugin tests.
#
# Source it first; it sets -e, makes a private temporary directory ($tmp,
# removed on exit), and offers:
#   requires CMD ARGS...      skip (exit 77) unless CMD ARGS succeeds
#   requires_driver NAME      skip unless the plugin's library offers NAME
#   requires_fail_shim        skip unless $FAIL_DO_IO_SHIM (fail-do-io.so)
#                             can be preloaded
#   cleanup_fn CMD ARGS...    run CMD ARGS at exit (last added runs first)
#   start_nbdkit ARGS...      nbdkit -U $sock -P $pidfile -f $PLUGIN ARGS in
#                             the background, waiting until it serves
#   nbdsh ARGS...             libnbd's nbdsh with Debian's python3
#   make_random FILE SIZE     FILE filled with SIZE random bytes
#   direct_works              whether O_DIRECT writes work in $tmp (true or
#                             false on stdout, for the direct= parameter)
#   wait_client PID SECS OUT  the background client PID must end within
#                             SECS, exit 0 and print an "ok:" line to OUT
#   assert_idle PID           PID uses less than 0.3 s of CPU over 2 s
#   assert_exits_on_term PID  SIGTERM ends PID within 10 s
#   start_qsd IMAGE           a qemu-storage-daemon exporting IMAGE on
#                             $VU_SOCK as qsd-run.sh does (after the test
#                             killed that one); its pid in $qsd_pid
# Environment: PLUGIN (the built .so, set by meson), NBDKIT (default: the
# nbdkit in PATH), BLKIO_TEST_VALGRIND=1 (run every nbdkit under valgrind;
# any error valgrind reports fails the test at exit).

set -e
set -u

if [ -z "${PLUGIN:-}" ] || [ ! -f "$PLUGIN" ]; then
    echo "$0: PLUGIN must name the built nbdkit-blkio-plugin.so" >&2
    exit 1
fi
NBDKIT=${NBDKIT:-$(command -v nbdkit || echo /usr/sbin/nbdkit)}

_cleanup_cmds=()
cleanup_fn ()
{
    _cleanup_cmds=("$*" "${_cleanup_cmds[@]}")
}
_run_cleanup ()
{
    local status=$? c
    set +e
    for c in "${_cleanup_cmds[@]}"; do
        eval "$c"
    done
    exit $status
}
trap _run_cleanup EXIT
trap 'exit 1' INT TERM

tmp=$(mktemp -d "${TMPDIR:-/tmp}/blkio-plugin-test.XXXXXX")
cleanup_fn rm -rf "$tmp"
sock=$tmp/nbd.sock
pidfile=$tmp/nbdkit.pid

# A sanitizer build of the plugin needs its runtime loaded into nbdkit
# (which is not built with it) before anything else: wrap nbdkit.
. "$(dirname "${BASH_SOURCE[0]}")/../common/sanitizer.sh"
_preload=$(sanitizer_preload "$PLUGIN")
if [ -n "$_preload" ]; then
    cat > "$tmp/nbdkit" <<WRAP
#!/bin/sh
LD_PRELOAD=$_preload ASAN_OPTIONS=\${ASAN_OPTIONS:-detect_leaks=0} \\
    UBSAN_OPTIONS=\${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} exec "$NBDKIT" "\$@"
WRAP
    chmod +x "$tmp/nbdkit"
    NBDKIT=$tmp/nbdkit
fi

# Under valgrind nbdkit is stopped by a signal, so its exit status cannot
# carry valgrind's verdict: each nbdkit writes a log, and a log that is
# not empty at exit (after nbdkit stopped) fails the test.
_valgrind_verdict ()
{
    local log
    for log in "$tmp"/valgrind.*.log; do
        if [ -s "$log" ]; then
            echo "$0: FAIL: valgrind reported errors in nbdkit:"
            cat "$log"
            status=1            # _run_cleanup's exit status
        fi
    done
}
if [ "${BLKIO_TEST_VALGRIND:-0}" = 1 ]; then
    _here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    if [ -n "$_preload" ]; then
        echo "$0: BLKIO_TEST_VALGRIND=1 needs a build without sanitizers" >&2
        exit 1
    fi
    cat > "$tmp/nbdkit" <<WRAP
#!/bin/sh
# NBDKIT_VALGRIND keeps plugins loaded at exit, so that valgrind can
# still name their functions.
NBDKIT_VALGRIND=1 exec valgrind -q --leak-check=full \
    --errors-for-leak-kinds=definite --log-file="$tmp/valgrind.%p.log" \
    --suppressions="$_here/nbdkit.supp" "$NBDKIT" "\$@"
WRAP
    chmod +x "$tmp/nbdkit"
    NBDKIT=$tmp/nbdkit
    cleanup_fn _valgrind_verdict
fi

requires ()
{
    if ! "$@" >/dev/null 2>&1; then
        echo "$0: SKIP: '$*' failed or is missing"
        exit 77
    fi
}

# requires_qsd_daemon: as requires_vhost_user_export, for a test that
# kills and restarts the daemon (VU_QSD_PID, VU_IMG) and drives it with
# Python clients (python3-libnbd; markers.py next to this file).
requires_qsd_daemon ()
{
    requires_driver virtio-blk-vhost-user
    requires /usr/bin/python3 -c 'import nbd'
    if [ -z "${VU_SOCK:-}" ] || [ -z "${VU_QSD_PID:-}" ] || [ -z "${VU_IMG:-}" ]; then
        echo "$0: SKIP: run me under tests/vhost-user/qsd-run.sh (no VU_SOCK)"
        exit 77
    fi
    export PYTHONPATH="$(dirname "${BASH_SOURCE[0]}")${PYTHONPATH:+:$PYTHONPATH}"
    export MARKER_DIR=$tmp
}

# wait_marker NAME: wait up to 30 s for the marker file $tmp/NAME, which a
# test's Python client creates (markers.py).
wait_marker ()
{
    for _ in $(seq 600); do
        [ -e "$tmp/$1" ] && return 0
        sleep 0.05
    done
    return 1
}

# requires_vhost_user_export: the plugin offers virtio-blk-vhost-user and
# the test runs under tests/vhost-user/qsd-run.sh (VU_SOCK is its socket).
requires_vhost_user_export ()
{
    requires_driver virtio-blk-vhost-user
    if [ -z "${VU_SOCK:-}" ] || [ ! -S "$VU_SOCK" ]; then
        echo "$0: SKIP: run me under tests/vhost-user/qsd-run.sh (no VU_SOCK)"
        exit 77
    fi
}

requires_driver ()
{
    requires test -x "$NBDKIT"
    if ! "$NBDKIT" "$PLUGIN" --dump-plugin 2>/dev/null |
            grep -q "^blkio_drivers=\(.*,\)\?$1\(,.*\)\?\$"; then
        echo "$0: SKIP: the plugin's libblkio does not offer driver $1"
        exit 77
    fi
}

direct_works ()
{
    if dd if=/dev/zero of="$tmp/direct-probe" bs=4096 count=1 oflag=direct \
        2>/dev/null; then
        echo true
    else
        echo false
    fi
    rm -f "$tmp/direct-probe"
}

requires_fail_shim ()
{
    if [ -z "${FAIL_DO_IO_SHIM:-}" ] || [ ! -f "$FAIL_DO_IO_SHIM" ]; then
        echo "$0: SKIP: FAIL_DO_IO_SHIM (the built fail-do-io.so) is not set"
        exit 77
    fi
    if [ -n "$_preload" ]; then
        echo "$0: SKIP: sanitizer build (its runtime must come first in LD_PRELOAD)"
        exit 77
    fi
}

nbdsh ()
{
    /usr/bin/python3 -m nbd "$@"
}

make_random ()
{
    head -c "$2" /dev/urandom > "$1"
}

_stop_nbdkit ()
{
    local pid
    if [ -s "$pidfile" ]; then
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        # Give it 10 seconds, then force it.
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# start_nbdkit ARGS...: serve $PLUGIN ARGS on $sock; fail after 20 s.
start_nbdkit ()
{
    rm -f "$pidfile" "$sock"
    "$NBDKIT" -U "$sock" -P "$pidfile" -f "$PLUGIN" "$@" &
    local bgpid=$!
    cleanup_fn _stop_nbdkit
    for _ in $(seq 200); do
        if [ -s "$pidfile" ] && [ -S "$sock" ]; then
            return 0
        fi
        if ! kill -0 "$bgpid" 2>/dev/null; then
            echo "$0: nbdkit exited before serving" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "$0: nbdkit did not start within 20 s" >&2
    return 1
}

wait_client ()
{
    local rc=0
    if ! timeout "$2" tail --pid="$1" -f /dev/null; then
        echo "FAIL: the client did not finish within $2 s"
        kill -9 "$1" 2>/dev/null
    fi
    wait "$1" || rc=$?
    cat "$3"
    [ "$rc" -eq 0 ] && grep -q "^ok:" "$3"
}

# After a failure nbdkit must not spin: a thread retrying a dead queue in
# a loop shows up here.
assert_idle ()
{
    local t0 t1 ms
    t0=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
    sleep 2
    t1=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
    ms=$(( (t1 - t0) * 1000 / $(getconf CLK_TCK) ))
    echo "CPU of $1 while idle: $ms ms in 2 s"
    if [ "$ms" -ge 300 ]; then
        echo "FAIL: $1 is busy while idle"
        return 1
    fi
}

assert_exits_on_term ()
{
    kill "$1"
    for _ in $(seq 100); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    echo "FAIL: $1 did not exit 10 s after SIGTERM"
    return 1
}

uri ()
{
    echo "nbd+unix:///?socket=$sock"
}

# start_qsd IMAGE: a daemon exporting IMAGE on $VU_SOCK, as qsd-run.sh does.
qsd_pid=
start_qsd ()
{
    rm -f "$VU_SOCK"
    "${QSD:-/usr/bin/qemu-storage-daemon}" --blockdev "driver=file,node-name=disk,filename=$1" \
        --export "type=vhost-user-blk,id=e,addr.type=unix,addr.path=$VU_SOCK,node-name=disk,writable=on,num-queues=4" \
        > "$tmp/qsd.log" 2>&1 &
    qsd_pid=$!
    for _ in $(seq 100); do
        [ -S "$VU_SOCK" ] && return 0
        sleep 0.05
    done
    cat "$tmp/qsd.log"
    return 1
}
cleanup_fn 'test -n "$qsd_pid" && kill -9 $qsd_pid 2>/dev/null'
