#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
#
# bench/run.sh - the whole performance comparison in one command:
#   1. engine: our libblkio against libblkio 1.5 (bench/blkio-bench, the
#      same binary on either library) on io_uring (page cache and O_DIRECT)
#      and vhost-user (qemu-storage-daemon), at depth 1 and 16; and
#      libblkio's own example program blkio-bench (libblkio-dev's sources
#      built against our header) on both libraries, depth 16 (issue 12);
#   2. vm: the same for nvme-io_uring, virtio-blk-vfio-pci and
#      virtio-blk-vhost-vdpa in one boot of the test VM (bench/vm-engine.sh);
#   3. NBD: nbdkit-blkio-plugin (default model, and thread-model=parallel
#      as "ours-alt") against the upstream plugin (nbdkit 1.42's, loaded
#      into this nbdkit), nbdkit's file and null plugins, and
#      qemu-storage-daemon's own NBD export of the same image, with fio's
#      nbd engine at depth 1 and 16, 4 KiB random and 1 MiB sequential;
#   4. scaling: 1, 2, 4 and 8 NBD connections.
# Rounds are interleaved (the order of the contenders rotates every round),
# ratios are taken within a round, medians reported.  Samples that cannot
# be believed are rejected and shown as "failed: REASON" (bench/compare.py).
# Writes bench/results/ (raw JSON), the generated part of bench/REPORT.md
# (goals, ceilings, tables) and bench/plots/*.png.  Never a test: numbers
# move between machines and runs.
#
#   bench/run.sh                  everything: 25 minutes on the 2-CPU
#                                 development VM (2026-12-06, load average
#                                 4-5)
#   QUICK=1 bench/run.sh          one short round of each (a smoke run,
#                                 about 6 minutes)
#   bench/run.sh --from-results bench/results/results.json
#                                 only rewrite the report from saved samples
#
# Environment: ROUNDS=3, RUNTIME=2, RAMP=1, PARTS="engine vm nbd scaling",
# DRIVERS="io_uring vhost-user" (narrows the host parts),
# VM_DRIVERS="nvme vfio vdpa" (narrows the test VM part), SIZE=512M,
# OURS_ARGS= (extra parameters for our plugin),
# OURS_ALT_ARGS=thread-model=parallel (the second configuration, "ours-alt";
# none: no second configuration) and ALT_PLUGIN= (a second build instead),
# REPORT=0 (leave bench/REPORT.md and bench/plots alone; plots go under
# RESULTS), RESULTS=bench/results, FILE= and KEEP_FILE=1 (the image).
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
