#!/usr/bin/python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""plugin-params.py NBDKIT PLUGIN [SECONDS] - black-box fuzzing of the
plugin's parameters through the real nbdkit.

Each case is a parameter list: a seed from corpus/plugin-params/ (one
"key=value" per line; @FILE stands for a scratch image, @SOCK for a
socket path nobody listens on) bent by random mutations (values out of
range, not numbers, empty, huge, unknown keys, properties that are not
writable, duplicates, dropped parameters).  nbdkit runs the plugin with it
(-U -, --run: true, or nbdinfo for a quarter of the cases).  The oracle:
nbdkit exits 0 or 1 within 20 s, never by a signal, assertion or
sanitizer report, and a failure prints an error line that names one of
the parameters (key or value).  Every file in regressions/plugin-params/
runs first, unmutated.

  FUZZ_SEED=N       first random seed (default 1: CI runs the same cases)
  FUZZ_SECONDS=S    how long (default 5; the SECONDS argument wins)
  FUZZ_ARTIFACTS=D  where failing cases are written (default: the build
                    directory's fuzz-artifacts/plugin-params)
Prints "ok: N cases (M failed cleanly)" or the failing cases.
"""
import os
import random
import re
import subprocess
import sys
import tempfile
import time

nbdkit, plugin = sys.argv[1], sys.argv[2]
seconds = float(sys.argv[3] if len(sys.argv) > 3
                else os.environ.get("FUZZ_SECONDS", "5"))
seed = int(os.environ.get("FUZZ_SEED", "1"))
here = os.path.dirname(os.path.abspath(__file__))
artifacts = os.environ.get("FUZZ_ARTIFACTS", os.path.join(
    os.path.dirname(os.path.abspath(plugin)), "..", "tests", "fuzz",
    "fuzz-artifacts", "plugin-params"))

KEYS = ["driver", "path", "num-queues", "get", "direct", "fd",
        "num-entries", "queue-size", "read-only", "capacity",
        "max-queues", "num-poll-queues", "request-alignment",
        "buf-alignment", "mem-region-alignment", "needs-mem-regions",
        "max-transfer", "optimal-io-size", "zoned", "max-queue-size",
        "can-add-queues", "no-such-property", "", "=", "path\n"]
VALUES = ["", "0", "1", "-1", "2", "16", "4096", "65536", "2147483647",
          "2147483648", "-2147483649", "4294967296", "18446744073709551615",
          "18446744073709551616", "0x10", "010", "1e3", " 1", "1 ", "+1",
          "true", "false", "on", "off", "yes", "no", "maybe", "TRUE",
          "io_uring", "nvme-io_uring", "virtio-blk-vhost-user",
          "virtio-blk-vhost-vdpa", "virtio-blk-vfio-pci", "no-such-driver",
          "capacity", "driver", "num-queues", "/", "/dev/null",
          "/nonexistent/x", "@FILE", "@SOCK", "\x01", "%s%n%s", "a" * 5000]


def load_seeds(d):
    seeds = []
    if os.path.isdir(d):
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), errors="replace") as f:
                lines = [line.rstrip("\n") for line in f if line.strip()]
            seeds.append((name, [tuple(line.split("=", 1)) if "=" in line
                                 else ("", line) for line in lines]))
    return seeds


def mutate(rng, params):
    params = list(params)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and params:          # a value
            i = rng.randrange(len(params))
            params[i] = (params[i][0], rng.choice(VALUES))
        elif op == 1:                   # a new parameter
            params.append((rng.choice(KEYS), rng.choice(VALUES)))
        elif op == 2 and params:        # dropped
            params.pop(rng.randrange(len(params)))
        elif op == 3 and params:        # duplicated
            params.append(rng.choice(params))
        elif op == 4 and params:        # a key
            i = rng.randrange(len(params))
            params[i] = (rng.choice(KEYS), params[i][1])
        elif op == 5 and params:        # a value bent byte by byte
            i = rng.randrange(len(params))
            v = bytearray(params[i][1].encode())
            for _ in range(rng.randint(1, 3)):
                if v and rng.random() < 0.5:
                    v[rng.randrange(len(v))] = rng.randrange(1, 128)
                else:
                    v.insert(rng.randrange(len(v) + 1), rng.randrange(1, 128))
            params[i] = (params[i][0], v.decode(errors="replace"))
    return params


def run_case(params, scratch, use_client):
    args = []
    for k, v in params:
        v = v.replace("@FILE", scratch + "/disk").replace(
            "@SOCK", scratch + "/none.sock")
        # A bare word starting with '-' would be an option of nbdkit's.
        args.append(f"{k}={v}" if k else v.lstrip("-") or "x")
    run = "nbdinfo \"$uri\" >/dev/null" if use_client else "true"
    cmd = [nbdkit, "-U", "-", plugin] + args + ["--run", run]
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=20, env=env,
                           errors="replace")
    except subprocess.TimeoutExpired:
        return "hung for 20 s"
    err = p.stderr
    if p.returncode not in (0, 1):
        return f"exit status {p.returncode}: {err[-2000:]}"
    if re.search(r"Assertion|AddressSanitizer|runtime error|"
                 r"Segmentation|double free|corrupted", err):
        return f"crash report: {err[-2000:]}"
    if p.returncode == 1 and not use_client:
        if "error" not in err:
            return f"failed without an error message: {err[-500:]}"
        named = [k for k, _ in params if k] + ["driver"] + \
                [v for _, v in params if v and len(v) < 200]
        if not any(x in err for x in named):
            return f"error names no parameter: {err[-500:]}"
    return None


def save(params, why):
    os.makedirs(artifacts, exist_ok=True)
    path = os.path.join(artifacts, f"case-{abs(hash(str(params))):x}")
    with open(path, "w") as f:
        for k, v in params:
            f.write(f"{k}={v}\n" if k else f"{v}\n")
    print(f"FAIL: {why.strip()}\n  case saved as {path}:")
    for k, v in params:
        print(f"    {k}={v[:100]!r}")


seeds = load_seeds(os.path.join(here, "corpus", "plugin-params"))
regressions = load_seeds(os.path.join(here, "regressions", "plugin-params"))
if not seeds:
    sys.exit("no seeds in corpus/plugin-params")
rng = random.Random(seed)
n = failed_cleanly = bad = 0
with tempfile.TemporaryDirectory() as scratch:
    with open(scratch + "/disk", "wb") as f:
        f.truncate(1 << 20)
    cases = [(p, False) for _, p in regressions + seeds]
    end = time.time() + seconds
    while cases or time.time() < end:
        if cases:
            params, client = cases.pop(0)
        else:
            params = mutate(rng, rng.choice(seeds)[1])
            client = rng.random() < 0.25
        why = run_case(params, scratch, client)
        n += 1
        if why:
            bad += 1
            save(params, why)
print(f"{'FAIL' if bad else 'ok'}: {n} cases, {bad} bad (seed {seed})")
sys.exit(1 if bad else 0)
