# tests/faults/procstat.sh - what a process holds, for leak checks.
# Source it; each function prints one number for PID.
#   proc_fds PID       open file descriptors
#   proc_threads PID   threads
#   proc_rss_kb PID    resident set size in KiB

proc_fds ()
{
    ls "/proc/$1/fd" | wc -l
}

proc_threads ()
{
    awk '/^Threads:/ { print $2 }' "/proc/$1/status"
}

proc_rss_kb ()
{
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
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
