#!/usr/bin/python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""bench/compare.py - the side-by-side comparison behind bench/run.sh.

Every comparison is a group of contenders measured on the same workload in
the same run: each round runs every contender once, the order rotated by
one per round, and ratios are taken within a round (so drift on a shared
machine hits all of them alike); the report gives medians over the rounds.

Parts (PARTS=, default all):
  engine   blkio-bench on our libblkio and on libblkio 1.5
  nbd      fio's nbd engine against every NBD server a user could pick
  scaling  the same at 1, 2, 4 and 8 connections
  vm       blkio-bench on both libraries inside the test VM (nvme-io_uring,
           virtio-blk-vfio-pci, virtio-blk-vhost-vdpa)
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HZ = os.sysconf("SC_CLK_TCK")


def env_int(name, default):
    return int(os.environ.get(name, default))


QUICK = os.environ.get("QUICK", "0") == "1"
ROUNDS = env_int("ROUNDS", 1 if QUICK else 3)
RUNTIME = env_int("RUNTIME", 1 if QUICK else 3)
RAMP = env_int("RAMP", 0 if QUICK else 1)
PARTS = os.environ.get("PARTS", "engine vm nbd scaling").split()
# DRIVERS= narrows the nbd and scaling parts to some drivers.
DRIVERS = os.environ.get("DRIVERS", "io_uring vhost-user").split()
SIZE = os.environ.get("SIZE", "512M")
OURS_ARGS = os.environ.get("OURS_ARGS", "").split()
OURS_ALT_ARGS = os.environ.get("OURS_ALT_ARGS")
# ALT_PLUGIN=path: "ours-alt" runs that build of the plugin (an A/B of two
# builds in one run), with OURS_ALT_ARGS (default none).
ALT_PLUGIN = os.environ.get("ALT_PLUGIN")
if ALT_PLUGIN is not None and OURS_ALT_ARGS is None:
    OURS_ALT_ARGS = ""


class Progress:
    """One status line on stderr: step N of M, what runs now."""

    def __init__(self, total):
        self.total = total
        self.done = 0
        self.t0 = time.time()

    def step(self, what):
        self.done += 1
        el = time.time() - self.t0
        left = el / self.done * (self.total - self.done) if self.done else 0
        sys.stderr.write(f"\r\033[K[{self.done}/{self.total}] {what} "
                         f"({el:.0f}s, ~{left:.0f}s left)")
        sys.stderr.flush()

    def finish(self):
        sys.stderr.write("\n")


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def wait_for(path, proc, what, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not create {path} in {timeout}s")


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Bench:
    def __init__(self, args):
        self.top = args.top
        self.build = args.build
        self.ref = args.ref
        self.reflib = os.path.join(args.ref, "usr/lib/x86_64-linux-gnu")
        self.refplugin = os.path.join(self.reflib, "nbdkit/plugins",
                                      "nbdkit-blkio-plugin.so")
        self.plugin = os.path.join(args.build, "plugin",
                                   "nbdkit-blkio-plugin.so")
        self.blkio_bench = os.path.join(args.build, "bench", "blkio-bench")
        self.tmp = tempfile.mkdtemp(prefix="bench-run.")
        self.file = os.environ.get("FILE", "/var/tmp/blkio-bench-run.img")
        self.results = []
        self.qsd = None
        self.vu_sock = os.path.join(self.tmp, "vhost-user.sock")
        self.qsd_nbd_sock = os.path.join(self.tmp, "qsd-nbd.sock")
        self.nbd_sock = os.path.join(self.tmp, "nbd.sock")

    # --- the shared backing: one cached file, one qemu-storage-daemon ---
    def setup(self):
        if not os.path.exists(self.file):
            subprocess.run(["fio", "--name=fill", f"--filename={self.file}",
                            f"--size={SIZE}", "--rw=write", "--bs=1M",
                            "--ioengine=psync", "--refill_buffers",
                            "--end_fsync=1"], check=True,
                           stdout=subprocess.DEVNULL)
        self.bytes = os.stat(self.file).st_size
        with open(self.file, "rb") as f:
            while f.read(1 << 24):
                pass
        # One daemon exports the same node over vhost-user and NBD, so
        # both paths reach the same image through the same block layer.
        self.qsd = subprocess.Popen(
            ["qemu-storage-daemon",
             "--blockdev", f"driver=file,node-name=disk,filename={self.file}",
             "--nbd-server", f"addr.type=unix,addr.path={self.qsd_nbd_sock}",
             "--export", "type=nbd,id=n0,node-name=disk,writable=on,name=",
             "--export", "type=vhost-user-blk,id=v0,node-name=disk,"
             f"writable=on,num-queues=4,addr.type=unix,addr.path={self.vu_sock}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.tmp, "qsd.log"), "w"))
        wait_for(self.vu_sock, self.qsd, "qemu-storage-daemon")
        wait_for(self.qsd_nbd_sock, self.qsd, "qemu-storage-daemon")

    def cleanup(self):
        stop(self.qsd)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if os.environ.get("KEEP_FILE", "0") != "1":
            try:
                os.unlink(self.file)
            except OSError:
                pass

    # --- NBD servers ---
    def nbd_servers(self, group):
        """name -> (argv, env, uri, extra pids whose CPU counts)"""
        reflib_env = {"LD_LIBRARY_PATH": self.reflib}
        nbdkit = ["nbdkit", "-U", self.nbd_sock, "-f"]
        uri = f"nbd+unix:///?socket={self.nbd_sock}"
        qsd_pid = [self.qsd.pid]
        if group == "io_uring":
            s = {
                "ours": (nbdkit + [self.plugin, "io_uring", f"path={self.file}"] + OURS_ARGS, {}, uri, []),
                "upstream": (nbdkit + [self.refplugin, "io_uring", f"path={self.file}"], reflib_env, uri, []),
                "file": (nbdkit + ["file", f"file={self.file}"], {}, uri, []),
                "null": (nbdkit + ["null", f"size={self.bytes}"], {}, uri, []),
            }
            if OURS_ALT_ARGS is not None:
                s["ours-alt"] = (nbdkit + [ALT_PLUGIN or self.plugin, "io_uring", f"path={self.file}"] + OURS_ALT_ARGS.split(), {}, uri, [])
            return s
        s = {
            "ours": (nbdkit + [self.plugin, "virtio-blk-vhost-user", f"path={self.vu_sock}"] + OURS_ARGS, {}, uri, qsd_pid),
            "upstream": (nbdkit + [self.refplugin, "virtio-blk-vhost-user", f"path={self.vu_sock}"], reflib_env, uri, qsd_pid),
            "qsd-nbd": (None, {}, f"nbd+unix:///?socket={self.qsd_nbd_sock}", qsd_pid),
        }
        if OURS_ALT_ARGS is not None:
            s["ours-alt"] = (nbdkit + [ALT_PLUGIN or self.plugin, "virtio-blk-vhost-user", f"path={self.vu_sock}"] + OURS_ALT_ARGS.split(), {}, uri, qsd_pid)
        return s

    def start_nbd(self, argv, env):
        if argv is None:
            return None
        try:
            os.unlink(self.nbd_sock)
        except OSError:
            pass
        p = subprocess.Popen(argv, env={**os.environ, **env},
                             stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(self.tmp, "nbdkit.log"), "w"))
        wait_for(self.nbd_sock, p, argv[4] if len(argv) > 4 else "nbdkit")
        return p

    def fio(self, uri, rw, bs, depth, jobs):
        out = os.path.join(self.tmp, "fio.json")
        argv = ["fio", "--name=b", "--ioengine=nbd", f"--uri={uri}",
                f"--rw={rw}", f"--bs={bs}", f"--iodepth={depth}",
                f"--size={self.bytes}", "--time_based",
                f"--runtime={RUNTIME}", f"--ramp_time={RAMP}",
                f"--numjobs={jobs}", "--group_reporting",
                "--output-format=json", f"--output={out}"]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=RUNTIME + RAMP + 60)
        j = json.load(open(out))["jobs"][0]
        iops = sum(j[d]["iops"] for d in ("read", "write"))
        lat = [j[d]["lat_ns"]["mean"] for d in ("read", "write") if j[d]["iops"]]
        return iops, (lat[0] / 1000 if lat else 0.0)

    def run_nbd(self, part, group, workload, jobs, server, spec):
        argv, env, uri, extra = spec
        rw, bs, depth = workload
        p = self.start_nbd(argv, env)
        pids = ([p.pid] if p else []) + extra
        try:
            t0 = cpu_ticks(pids)
            iops, lat = self.fio(uri, rw, bs, depth, jobs)
            t1 = cpu_ticks(pids)
        finally:
            stop(p)
        reqs = iops * (RUNTIME + RAMP)
        return {"part": part, "group": group,
                "workload": f"{rw}-{bs}-qd{depth}", "jobs": jobs,
                "contender": server, "iops": iops, "lat_us": lat,
                "cpu_us_per_req": (t1 - t0) / HZ * 1e6 / reqs if reqs else 0}

    # --- engine: blkio-bench on either library ---
    def run_engine(self, group, depth, lib):
        libdir = os.path.join(self.build, "lib") if lib == "ours" else self.reflib
        if group == "vhost-user":
            args = ["--driver", "virtio-blk-vhost-user", "--path", self.vu_sock]
        else:
            args = ["--driver", "io_uring", "--path", self.file]
            if group == "io_uring-direct":
                args += ["--prop", "direct=true"]
        argv = [self.blkio_bench] + args + [
            "--rw", "randread", "--bs", "4k", "--iodepth", str(depth),
            "--runtime", str(RUNTIME), "--ramp", str(RAMP), "--json"]
        out = subprocess.run(argv, env={**os.environ, "LD_LIBRARY_PATH": libdir},
                             check=True, capture_output=True, text=True,
                             timeout=RUNTIME + RAMP + 60).stdout
        j = json.loads(out.strip().splitlines()[-1])
        return {"part": "engine", "group": group,
                "workload": f"randread-4k-qd{depth}", "jobs": 1,
                "contender": lib, "iops": j["kiops"] * 1000,
                "lat_us": j["lat_mean_us"],
                "cpu_us_per_req": j["cpu_us_per_req"]}

    # --- the plan ---
    def plan(self):
        """A list of (label, contenders, run(contender) -> result)."""
        steps = []
        if "engine" in PARTS:
            for group in ("io_uring", "io_uring-direct", "vhost-user"):
                for depth in (1, 16):
                    steps.append((f"engine {group} qd{depth}", ["ours", "libblkio-1.5"],
                                  lambda c, g=group, d=depth: self.run_engine(
                                      g, d, "ours" if c == "ours" else "ref")
                                  | {"contender": c}))
        workloads = [("randread", "4k", 1), ("randread", "4k", 16),
                     ("read", "1M", 8), ("randwrite", "4k", 16)]
        if "nbd" in PARTS:
            for group in DRIVERS:
                servers = self.nbd_servers(group)
                for w in workloads:
                    steps.append((f"nbd {group} {w[0]}-{w[1]}-qd{w[2]}", list(servers),
                                  lambda c, g=group, w=w, s=servers: self.run_nbd(
                                      "nbd", g, w, 1, c, s[c])))
        if "scaling" in PARTS:
            for group in DRIVERS:
                servers = self.nbd_servers(group)
                for jobs in (1, 2, 4, 8):
                    steps.append((f"scaling {group} {jobs} conn", list(servers),
                                  lambda c, g=group, j=jobs, s=servers: self.run_nbd(
                                      "scaling", g, ("randread", "4k", 16), j, c, s[c])))
        return steps

    def run_vm(self, prog):
        """The VM drivers: one boot runs bench/vm-engine.sh's whole plan."""
        prog.step("test VM: nvme-io_uring, vfio-pci, vhost-vdpa (one boot)")
        p = subprocess.run([os.path.join(self.top, "bench", "vm-engine.sh"),
                            self.build, self.ref], capture_output=True,
                           text=True, env={**os.environ, "ROUNDS": str(max(1, ROUNDS // 2 + ROUNDS % 2))})
        got = [json.loads(l.split(" ", 1)[1]) for l in p.stdout.splitlines()
               if l.startswith("BENCHJSON ")]
        if not got:
            self.results.append({"step": "vm", "round": 0, "contender": "ours",
                                 "error": (p.stdout + p.stderr)[-500:]})
        self.results += got

    def run(self):
        steps = self.plan()
        total = sum(len(c) for _, c, _ in steps) * ROUNDS + ("vm" in PARTS)
        prog = Progress(total)
        if "vm" in PARTS:
            self.run_vm(prog)
        for label, contenders, fn in steps:
            for r in range(ROUNDS):
                k = r % len(contenders)
                for c in contenders[k:] + contenders[:k]:
                    prog.step(f"{label}: {c}, round {r + 1}/{ROUNDS}")
                    try:
                        res = fn(c)
                    except Exception as e:  # a contender that fails is reported, not fatal
                        res = {"contender": c, "error": str(e)}
                    res.update({"step": label, "round": r})
                    self.results.append(res)
        prog.finish()


# --- summaries ---
def by_step(results):
    steps = {}
    for r in results:
        steps.setdefault(r["step"], []).append(r)
    return steps


def median_of(rs, contender, key):
    v = [r[key] for r in rs if r["contender"] == contender and key in r]
    return statistics.median(v) if v else None


def ratio_median(rs, a, b, key, invert=False):
    """Median over rounds of a/b (b/a with invert) of one key."""
    rounds = {}
    for r in rs:
        if key in r:
            rounds.setdefault(r["round"], {})[r["contender"]] = r[key]
    v = []
    for d in rounds.values():
        if a in d and b in d and d[a] and d[b]:
            v.append(d[b] / d[a] if invert else d[a] / d[b])
    return (statistics.median(v), len(v)) if v else (None, 0)


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def table(steps, prefix, first="ours"):
    lines = []
    for label, rs in steps.items():
        if not label.startswith(prefix):
            continue
        contenders = list(dict.fromkeys(r["contender"] for r in rs))
        others = [c for c in contenders if c != first]
        if not lines:
            lines.append("| workload | " + " | ".join(
                f"{c} IOPS (lat us, CPU us/req)" for c in contenders) + " | " +
                " | ".join(f"{first}/{c}" for c in others) + " |")
            lines.append("|" + "---|" * (1 + len(contenders) + len(others)))
        cells = []
        for c in contenders:
            err = [r["error"] for r in rs if r["contender"] == c and "error" in r]
            if err and median_of(rs, c, "iops") is None:
                cells.append("failed")
                continue
            cells.append(f"{fmt(median_of(rs, c, 'iops'), '.0f')} "
                         f"({fmt(median_of(rs, c, 'lat_us'), '.1f')}, "
                         f"{fmt(median_of(rs, c, 'cpu_us_per_req'), '.2f')})")
        ratios = []
        for c in others:
            iops, n = ratio_median(rs, first, c, "iops")
            cpu, _ = ratio_median(rs, first, c, "cpu_us_per_req")
            ratios.append(f"{fmt(iops, '.2f')}x IOPS, {fmt(cpu, '.2f')}x CPU ({n})")
        lines.append(f"| {label[len(prefix):].strip()} | " + " | ".join(cells) +
                     " | " + " | ".join(ratios) + " |")
    return lines


def report(results, meta):
    steps = by_step(results)
    out = ["<!-- bench/run.sh: generated, do not edit by hand -->",
           "## Current comparison (bench/run.sh)", "",
           f"{meta['date']}, {meta['cpus']} CPUs, kernel {meta['kernel']}, "
           f"{meta['nbdkit']}; load average {meta['load'][0]:.0f} (1 min) at the "
           f"start, {meta['load'][3]:.0f} at the end; {ROUNDS} rounds of {RUNTIME} s after {RAMP} s "
           "ramp, contenders interleaved, medians.  Cells: median IOPS "
           "(mean latency in us, CPU us per request); ratios are medians of "
           "per-round ratios (IOPS: higher is better for the first; CPU: ours/"
           "theirs, lower is better), with the number of rounds."
           + (f"  Our plugin: `{' '.join(OURS_ARGS)}`." if OURS_ARGS else "")
           + (f"  ours-alt: `{OURS_ALT_ARGS}`" + (f" on {ALT_PLUGIN}" if ALT_PLUGIN else "")
              + "." if OURS_ALT_ARGS is not None else ""),
           ""]
    for prefix, title, note in [
        ("engine io_uring-direct", "Engine, io_uring with O_DIRECT", "blkio-bench 4 KiB random reads, one queue."),
        ("engine io_uring ", "Engine, io_uring on the page cache", "blkio-bench 4 KiB random reads, one queue."),
        ("engine vhost-user", "Engine, vhost-user (qemu-storage-daemon)", "CPU is blkio-bench's own."),
        ("vm nvme", "Engine, nvme-io_uring (test VM, TCG)", "blkio-bench in the guest, A B B A; TCG: 5-25% noise per sample."),
        ("vm vfio", "Engine, virtio-blk-vfio-pci (test VM, TCG)", ""),
        ("vm vdpa", "Engine, virtio-blk-vhost-vdpa (test VM, VDUSE)", ""),
        ("nbd io_uring", "NBD, io_uring driver (cached file)", "fio nbd engine, one connection; CPU is nbdkit's."),
        ("nbd vhost-user", "NBD, vhost-user driver", "one connection; CPU is nbdkit's plus qemu-storage-daemon's."),
        ("scaling io_uring", "Scaling, io_uring: 4 KiB random reads, depth 16 per connection", ""),
        ("scaling vhost-user", "Scaling, vhost-user", "")]:
        t = table(steps, prefix)
        if t:
            out += [f"### {title}", "", note, ""] + t + [""]
    if meta.get("plots"):
        out += ["### Plots", ""] + [f"![{p}](plots/{p})" for p in meta["plots"]] + [""]
    out.append("<!-- bench/run.sh: end -->")
    return "\n".join(out) + "\n"


def plots(results, outdir):
    """IOPS per contender and workload, and scaling, as gnuplot PNGs."""
    if not shutil.which("gnuplot"):
        return []
    os.makedirs(outdir, exist_ok=True)
    made = []
    steps = by_step(results)
    for prefix, name, key, ylabel in [
            ("nbd io_uring", "nbd-io_uring-iops.png", "iops", "IOPS"),
            ("nbd vhost-user", "nbd-vhost-user-iops.png", "iops", "IOPS"),
            ("nbd io_uring", "nbd-io_uring-latency.png", "lat_us", "mean latency (us)"),
            ("nbd vhost-user", "nbd-vhost-user-latency.png", "lat_us", "mean latency (us)"),
            ("engine", "engine-iops.png", "iops", "IOPS")]:
        labels = [l for l in steps if l.startswith(prefix)]
        if not labels:
            continue
        cont = list(dict.fromkeys(r["contender"] for l in labels for r in steps[l]))
        dat = os.path.join(outdir, name + ".dat")
        with open(dat, "w") as f:
            for l in labels:
                vals = [median_of(steps[l], c, key) for c in cont]
                f.write(l[len(prefix):].strip().replace(" ", "_") + " " +
                        " ".join("0" if v is None else f"{v:.2f}" for v in vals) + "\n")
        cols = " ".join(f"'{dat}' using {i + 2}:xtic(1) title '{c}'{',' if i + 1 < len(cont) else ''}"
                        for i, c in enumerate(cont))
        script = (f"set terminal png size 900,480; set output '{os.path.join(outdir, name)}';"
                  "set style data histograms; set style histogram clustered gap 1;"
                  "set style fill solid 0.8 border -1; set key outside;"
                  f"set ylabel '{ylabel}'; set xtics rotate by -20;"
                  + ("set logscale y;" if key == "iops" else "set yrange [0:*];")
                  + f"plot {cols}")
        subprocess.run(["gnuplot", "-e", script], check=False)
        os.unlink(dat)
        made.append(name)
    for group in ("io_uring", "vhost-user"):
        labels = [l for l in steps if l.startswith(f"scaling {group} ")]
        if not labels:
            continue
        cont = list(dict.fromkeys(r["contender"] for l in labels for r in steps[l]))
        name = f"scaling-{group}.png"
        dat = os.path.join(outdir, name + ".dat")
        with open(dat, "w") as f:
            for l in labels:
                jobs = steps[l][0]["jobs"]
                vals = [median_of(steps[l], c, "iops") for c in cont]
                f.write(f"{jobs} " + " ".join("0" if v is None else f"{v:.0f}" for v in vals) + "\n")
        cols = ", ".join(f"'{dat}' using 1:{i + 2} with linespoints title '{c}'"
                         for i, c in enumerate(cont))
        script = (f"set terminal png size 900,480; set output '{os.path.join(outdir, name)}';"
                  f"set xlabel 'NBD connections'; set ylabel 'IOPS (4k randread, qd16 each)';"
                  f"set logscale x 2; set yrange [0:*]; set key outside; plot {cols}")
        subprocess.run(["gnuplot", "-e", script], check=False)
        os.unlink(dat)
        made.append(name)
    return made


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--ref", required=True)
    args = ap.parse_args()
    b = Bench(args)
    # Stopped by a signal: still take qemu-storage-daemon down (finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_start = os.getloadavg()
    try:
        b.setup()
        b.run()
    finally:
        b.cleanup()
    resdir = os.path.join(args.top, "bench", "results")
    os.makedirs(resdir, exist_ok=True)
    nbdkit_version = subprocess.run(["nbdkit", "--version"], capture_output=True,
                                    text=True).stdout.split("\n")[0]
    meta = {"date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
            "cpus": os.cpu_count(), "kernel": os.uname().release,
            "nbdkit": nbdkit_version, "rounds": ROUNDS, "runtime": RUNTIME,
            "ramp": RAMP, "ours_args": OURS_ARGS,
            "load": [round(x, 1) for x in load_start + os.getloadavg()]}
    with open(os.path.join(resdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": b.results}, f, indent=1)
    meta["plots"] = plots(b.results, os.path.join(args.top, "bench", "plots"))
    text = report(b.results, meta)
    with open(os.path.join(resdir, "report.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    if os.environ.get("REPORT", "1") != "0":
        path = os.path.join(args.top, "bench", "REPORT.md")
        old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
        begin, end = "<!-- bench/run.sh: generated", "<!-- bench/run.sh: end -->"
        if begin in old and end in old:
            new = old[:old.index(begin)] + text + old[old.index(end) + len(end) + 1:]
        else:
            head, _, rest = old.partition("\n")
            new = head + "\n\n" + text + "\n" + rest
        with open(path, "w") as f:
            f.write(new)


if __name__ == "__main__":
    main()
