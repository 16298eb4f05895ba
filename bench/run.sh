#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# bench/run.sh - the whole performance comparison in one command:
#   1. engine: our libblkio against libblkio 1.5 (blkio-bench, the same
#      binary on either library) on io_uring (page cache and O_DIRECT) and
#      vhost-user (qemu-storage-daemon), at depth 1 and 16;
#   2. NBD: nbdkit-blkio-plugin against the upstream plugin (nbdkit 1.42's,
#      loaded into this nbdkit), nbdkit's file and null plugins, and
#      qemu-storage-daemon's own NBD export of the same image, with fio's
#      nbd engine at depth 1 and 16, 4 KiB random and 1 MiB sequential;
#   3. scaling: 1, 2, 4 and 8 NBD connections.
# Rounds are interleaved (the order of the contenders rotates every round),
# ratios are taken within a round, medians reported.  Writes
# bench/results/ (raw JSON), the generated part of bench/REPORT.md and
# bench/plots/*.png.  Never a test: numbers move between machines and runs.
#
#   bench/run.sh                  everything (about 25 minutes on 2 CPUs)
#   QUICK=1 bench/run.sh          one short round of each (a smoke run)
#
# Environment: ROUNDS=3, RUNTIME=3, RAMP=1, PARTS="engine vm nbd scaling",
# OURS_ARGS= (extra parameters for our plugin), OURS_ALT_ARGS= and/or
# ALT_PLUGIN= (a second configuration or build of our plugin, "ours-alt"),
# DRIVERS="io_uring vhost-user", SIZE=512M, REPORT=0 (do not
# touch bench/REPORT.md, only bench/results/).
# The libblkio 1.5 reference and the upstream plugin come from
# scripts/fetch-reference.sh (Debian trixie packages, unpacked under build/).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

scripts/setup-deps.sh >/dev/null
if ! command -v gnuplot >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        gnuplot-nox >/dev/null || echo "bench: no gnuplot: no plots"
fi
scripts/build.sh >/dev/null
ref=$(scripts/fetch-reference.sh) || { echo "bench: no libblkio 1.5 reference"; exit 1; }

exec /usr/bin/python3 "$top/bench/compare.py" --top "$top" --build "$top/build" \
    --ref "$ref" "$@"
