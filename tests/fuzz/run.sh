#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# run.sh FUZZER NAME [LIBFUZZER-ARGS...] - a bounded libFuzzer run of one
# target, starting from its seed corpus and regressions (never written
# to: new inputs go to a scratch corpus that is thrown away).
#
#   FUZZ_SECONDS   how long (default 5)
#   FUZZ_RUNS      at most this many executions (default 200000)
#   FUZZ_TIMEOUT   seconds one input may take (default 60)
#   FUZZ_ARTIFACTS where crashing inputs are saved (default: a directory
#                  next to the fuzzer, kept; add them to
#                  tests/fuzz/regressions/NAME/ once fixed)
#   FUZZ_KEEP_CORPUS=DIR  keep the grown corpus in DIR instead
#
# Exits with the fuzzer's status: 0 when nothing crashed, hung or leaked.
set -eu
fuzzer=$1
name=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
seconds=${FUZZ_SECONDS:-5}
runs=${FUZZ_RUNS:-200000}
artifacts=${FUZZ_ARTIFACTS:-$(dirname "$fuzzer")/fuzz-artifacts/$name}
mkdir -p "$artifacts"

if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
    work=$FUZZ_KEEP_CORPUS
    mkdir -p "$work"
    scratch=
else
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-$name.XXXXXX")
    work=$scratch
fi
trap '[ -z "$scratch" ] || rm -rf "$scratch"' EXIT

seeds=
for d in "$here/corpus/$name" "$here/regressions/$name"; do
    [ -d "$d" ] && seeds="$seeds $d"
done

# libFuzzer's own exit status for a finding is 77, which meson reads as
# "skipped": findings exit 1 here.
# -timeout: one input may take at most FUZZ_TIMEOUT s (default 60): a
# hang is a finding like a crash.  The library waits at most 10 s for a
# vhost-user reply, but an input makes dozens of thread round trips, and
# on a loaded machine (a load of 30 on 2 CPUs, say) a few of them take a
# second each.
# shellcheck disable=SC2086
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
"$fuzzer" -max_total_time="$seconds" -runs="$runs" \
    -timeout="${FUZZ_TIMEOUT:-60}" \
    -rss_limit_mb=2048 -print_final_stats=1 \
    -error_exitcode=1 -timeout_exitcode=1 \
    -artifact_prefix="$artifacts/" "$@" "$work" $seeds
