# tests/faults/procstat.sh - what a process holds, for leak checks.
# Source it; each function prints one number for PID.
#   proc_fds PID       open file descriptors
#   proc_fds_rings PID of which io_uring instances and eventfds (the
#                      io_uring drivers keep a queue per nbdkit thread
#                      that ever ran at once, for later threads)
#   proc_threads PID   threads, without io_uring's kernel workers
#                      (iou-wrk-*, which come and go on their own)
#   proc_rss_kb PID    resident set size in KiB
#   proc_anon_kb PID   of which anonymous memory (not the shared memory
#                      regions the device maps, not files)

proc_fds ()
{
    ls "/proc/$1/fd" | wc -l
}

proc_fds_rings ()
{
    find "/proc/$1/fd" -mindepth 1 -printf '%l\n' 2>/dev/null |
        grep -c -e '^anon_inode:\[io_uring\]' -e '^anon_inode:\[eventfd\]'
}

proc_threads ()
{
    cat "/proc/$1"/task/*/comm 2>/dev/null | grep -vc '^iou-'
}

proc_rss_kb ()
{
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

proc_anon_kb ()
{
    awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"
}

# proc_settle PID FDS THREADS: wait up to 10 s for PID to be back at (or
# below) FDS fds and THREADS threads; print the counts; fail if not.
proc_settle ()
{
    local f t
    for _ in $(seq 100); do
        f=$(proc_fds "$1")
        t=$(proc_threads "$1")
        if [ "$f" -le "$2" ] && [ "$t" -le "$3" ]; then
            echo "pid $1: $f fds (baseline $2), $t threads (baseline $3)"
            return 0
        fi
        sleep 0.1
    done
    echo "FAIL: pid $1 holds $f fds (baseline $2), $t threads (baseline $3)"
    return 1
}

# stall_start WARMUP: the common start of the stall tests, run under
# qsd-run.sh: nbdkit on its vhost-user export with two queues, one
# warm-up request (nbdsh code WARMUP), then the baseline of fds and
# threads in fds0 and threads0 and nbdkit's pid in nbd_pid.
stall_start ()
{
    requires_driver virtio-blk-vhost-user
    requires /usr/bin/python3 -c 'import nbd'
    start_nbdkit virtio-blk-vhost-user path="$VU_SOCK" num-queues=2
    nbd_pid=$(cat "$pidfile")
    nbdsh -u "$(uri)" -c "$1"
    fds0=$(proc_fds "$nbd_pid")
    threads0=$(proc_threads "$nbd_pid")
}
