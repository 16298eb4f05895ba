#!/usr/bin/python3
# SPDX-License-Identifier: MIT OR Apache-2.0
"""bench/compare.py - the side-by-side comparison behind bench/run.sh.

Every comparison is a group of contenders measured on the same workload in
the same run: each round runs every contender once, the order rotated by
one per round, and ratios are taken within a round (so drift on a shared
machine hits all of them alike); the report (bench/report.py) gives medians
over the rounds.

Parts (PARTS=, default all):
  engine   blkio-bench on our libblkio and on libblkio 1.5, and libblkio's
           own example program blkio-bench (built from libblkio-dev's
           sources against our header) on both; on vhost-user at depth
           1 also what sleeping or spinning per request costs with no
           driver work (the depth-1 floor: wake-floor, ours spinning)
  nbd      fio's nbd engine against every NBD server a user could pick
  scaling  the same at 1, 2, 4 and 8 connections; on io_uring also with
           the client batch-scheduled (`chrt --batch 0 fio`), ours and
           the file plugin: a client that is not woken per reply (see
           CLIENT_BATCH)
  vm       both benchmark programs on both libraries inside the test VM
           (nvme-io_uring, virtio-blk-vfio-pci, virtio-blk-vhost-vdpa)

A sample is rejected (reported as "failed: REASON", never as a number) when
fio or a job reports an error, a job ran short of the runtime, the jobs of
a multi-connection run did not run at the same time, or IOPS x CPU per
request comes to more CPU-seconds per second than the machine has.
"""

import argparse
import glob
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402  (bench/report.py)

HZ = os.sysconf("SC_CLK_TCK")
CPUS = os.cpu_count()


def env_int(name, default):
    return int(os.environ.get(name, default))


QUICK = os.environ.get("QUICK", "0") == "1"
# bench/copy-align's modes: the buffer's offset past a page, lent or bounced.
COPY_MODES = ("lent+0", "lent+16", "lent+64", "bounce+16")
QSD_QUEUES = 4  # the vhost-user export's queues
ROUNDS = env_int("ROUNDS", 1 if QUICK else 3)
RUNTIME = env_int("RUNTIME", 1 if QUICK else 2)
RAMP = env_int("RAMP", 0 if QUICK else 1)
PARTS = os.environ.get("PARTS", "engine vm nbd scaling").split()
# DRIVERS= narrows the host parts to some drivers (io_uring, vhost-user).
DRIVERS = os.environ.get("DRIVERS", "io_uring vhost-user").split()
SIZE = os.environ.get("SIZE", "512M")
# STEPS="a,b": only the steps whose label contains one of these strings
# (e.g. STEPS="nbd vhost-user read-1M" with PARTS=nbd).
STEPS = [p for p in os.environ.get("STEPS", "").split(",") if p]
OURS_ARGS = os.environ.get("OURS_ARGS", "").split()
# "ours-alt": the same build with the parallel thread model unless told
# otherwise (OURS_ALT_ARGS=none: no second configuration).  ALT_PLUGIN=path
# runs that build of the plugin instead (an A/B of two builds in one run).
OURS_ALT_ARGS = os.environ.get("OURS_ALT_ARGS", "thread-model=parallel")
if OURS_ALT_ARGS == "none":
    OURS_ALT_ARGS = None
ALT_PLUGIN = os.environ.get("ALT_PLUGIN")
if ALT_PLUGIN is not None and OURS_ALT_ARGS is None:
    OURS_ALT_ARGS = ""
LOG_MSEC = 100  # fio's per-job IOPS log interval (the measured window)
# The client of the "batch-client" steps.  fio sleeps until a reply comes;
# when the reply wakes it on the CPU of the nbdkit thread that sent it, it
# preempts that thread, and a server with one thread per connection (ours
# in the default model) then trades the CPU with its client twice per
# request.  SCHED_BATCH tasks do not preempt on wake-up, so these steps
# show the servers without that ping-pong.
CLIENT_BATCH = ("chrt", "--batch", "0")


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


class CpuSampler(threading.Thread):
    """Samples the CPU ticks of some processes every 50 ms, so that their
    CPU time can be read over any window afterwards (fio's measured one,
    without its connection setup and ramp)."""

    def __init__(self, groups):
        super().__init__(daemon=True)
        self.groups = groups          # name -> [pid]
        self.samples = []             # (epoch seconds, {name: ticks})
        self.done = threading.Event()
        self.take()

    def take(self):
        self.samples.append((time.time(), {n: cpu_ticks(p) for n, p in
                                           self.groups.items()}))

    def run(self):
        while not self.done.wait(0.05):
            self.take()

    def stop(self):
        self.done.set()
        self.join()
        self.take()

    def at(self, name, t):
        s = self.samples
        if t <= s[0][0]:
            return s[0][1][name]
        for (t0, a), (t1, b) in zip(s, s[1:]):
            if t0 <= t <= t1:
                f = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
                return a[name] + f * (b[name] - a[name])
        return s[-1][1][name]

    def seconds(self, name, t0, t1):
        return (self.at(name, t1) - self.at(name, t0)) / HZ


# A contender whose backend is the server's own children.
CHILDREN = "children"


def child_pids(pid, timeout=5.0):
    """The children of pid, waiting for the first: nbdkit binds its socket
    before .after_fork, where the wait-floor plugin forks its device."""
    end = time.time() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                kids = [int(c) for c in f.read().split()]
        except OSError:
            kids = []
        if kids or time.time() > end:
            return kids
        time.sleep(0.01)


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


class Rejected(Exception):
    """A sample that cannot be believed: the reason, and what was read."""

    def __init__(self, reason, raw=None, serial=False):
        super().__init__(reason)
        self.raw = raw or {}
        self.serial = serial


def fio_window(logs, jobs):
    """Each job's measured window from its IOPS log (epoch seconds): the
    first entry closes the first LOG_MSEC interval after the ramp."""
    win = []
    for path, j in zip(logs, jobs):
        try:
            first = float(open(path).readline().split(",")[0]) / 1000
        except (OSError, ValueError, IndexError):
            return None
        start = first - LOG_MSEC / 1000
        win.append((start, start + j["job_runtime"] / 1000))
    return win


def fio_check(procs, jobs, win, wall):
    """The reason to reject a fio run (procs: (exit status, stderr) of
    its processes), or None."""
    for rc, err in procs:
        if rc != 0:
            last = (err.strip().splitlines() or ["?"])[-1]
            return f"fio exit {rc}: {last[:80]}"
    for i, j in enumerate(jobs):
        if j["error"]:
            return f"fio job {i + 1}: error {j['error']} ({os.strerror(j['error'])})"
        if j["job_runtime"] < 0.9 * RUNTIME * 1000:
            return f"fio job {i + 1} ran {j['job_runtime'] / 1000:.1f} s of {RUNTIME} s"
        if not sum(j[d]["total_ios"] for d in ("read", "write")):
            return f"fio job {i + 1} did no I/O"
    if len(jobs) > 1 and win:
        overlap = min(e for _, e in win) - max(s for s, _ in win)
        if overlap < 0.8 * RUNTIME:
            return (f"the {len(jobs)} connections did not run together "
                    f"(jobs of {RUNTIME} s overlapped {max(overlap, 0):.1f} s; "
                    f"fio took {wall:.0f} s)")
    return None


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
        self.copy_align = os.path.join(args.build, "bench", "copy-align")
        self.wake_floor = os.path.join(args.build, "bench", "wake-floor")
        self.wait_floor = os.path.join(args.build, "bench",
                                       "nbdkit-wait-floor-plugin.so")
        self.example = os.path.join(args.build, "bench", "libblkio-examples",
                                    "blkio-bench")
        self.tmp = tempfile.mkdtemp(prefix="bench-run.")
        # Its own image per run unless told (two runs must not share one).
        self.file = os.environ.get("FILE", f"/var/tmp/blkio-bench-run.{os.getpid()}.img")
        self.results = []
        self.skip = {}
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
             f"writable=on,num-queues={QSD_QUEUES},addr.type=unix,addr.path={self.vu_sock}"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.tmp, "qsd.log"), "w"))
        wait_for(self.vu_sock, self.qsd, "qemu-storage-daemon")
        wait_for(self.qsd_nbd_sock, self.qsd, "qemu-storage-daemon")
        if "engine" in PARTS or "vm" in PARTS:
            self.build_example()

    def build_example(self):
        """libblkio's own blkio-bench, from libblkio-dev's example sources,
        compiled against our <blkio.h> and linked without an rpath, so that
        LD_LIBRARY_PATH picks the library (as tests/conformance does)."""
        src = os.path.join(self.ref, "usr/share/doc/libblkio-dev/examples/blkio-bench.c")
        os.makedirs(os.path.dirname(self.example), exist_ok=True)
        subprocess.run(["cc", "-std=gnu11", "-O2", "-Wall",
                        "-I", os.path.join(self.top, "include"), "-o",
                        self.example, src, "-L", os.path.join(self.build, "lib"),
                        "-lblkio", "-pthread"], check=True)

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
        """name -> (argv, env, uri, backend pids whose CPU counts)"""
        reflib_env = {"LD_LIBRARY_PATH": self.reflib}
        nbdkit = ["nbdkit", "-U", self.nbd_sock, "-f"]
        uri = f"nbd+unix:///?socket={self.nbd_sock}"
        alt = ALT_PLUGIN or self.plugin
        alt_args = (OURS_ALT_ARGS or "").split()
        if group == "io_uring":
            dev = ["io_uring", f"path={self.file}"]
            s = {
                "ours": (nbdkit + [self.plugin] + dev + OURS_ARGS, {}, uri, []),
                "upstream": (nbdkit + [self.refplugin] + dev, reflib_env, uri, []),
                "file": (nbdkit + ["file", f"file={self.file}"], {}, uri, []),
                "null": (nbdkit + ["null", f"size={self.bytes}"], {}, uri, []),
            }
            if OURS_ALT_ARGS is not None:
                s["ours-alt"] = (nbdkit + [alt] + dev + alt_args, {}, uri, [])
            return s
        dev = ["virtio-blk-vhost-user", f"path={self.vu_sock}"]
        qsd = [self.qsd.pid]
        s = {
            "ours": (nbdkit + [self.plugin] + dev + OURS_ARGS, {}, uri, qsd),
            "upstream": (nbdkit + [self.refplugin] + dev, reflib_env, uri, qsd),
            "qsd-nbd": (None, {}, f"nbd+unix:///?socket={self.qsd_nbd_sock}", qsd),
            # nbdkit's own nbd plugin in front of that export: the other
            # way through nbdkit to the same daemon, and a plugin whose
            # every request waits on another process, as ours does.
            "nbd-plugin": (nbdkit + ["nbd", f"socket={self.qsd_nbd_sock}"], {}, uri, qsd),
        }
        if OURS_ALT_ARGS is not None:
            s["ours-alt"] = (nbdkit + [alt] + dev + alt_args, {}, uri, qsd)
        return s

    def floor_servers(self, group):
        """The scaling steps' extra contender on vhost-user: the cheapest
        plugin that waits on another process for each request, in the
        default model (bench/wait-floor-plugin.c).  Its device process
        is nbdkit's child; its CPU counts as the backend's."""
        if group != "vhost-user" or not os.path.exists(self.wait_floor):
            return {}
        argv = ["nbdkit", "-U", self.nbd_sock, "-f", self.wait_floor,
                f"size={self.bytes}"]
        return {"wait-floor": (argv, {}, f"nbd+unix:///?socket={self.nbd_sock}",
                               CHILDREN)}

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

    def fio_barrier(self, jobs):
        """fio's --exec_prerun for each of N processes: it runs after the
        job connected (fio's engine init) and before its clock starts, so
        it holds every job at the start line: it marks the job ready and
        waits for the go file (at most 30 s).  Returns (argv per job,
        ready files, go file)."""
        bar = os.path.join(self.tmp, "barrier")
        shutil.rmtree(bar, ignore_errors=True)
        os.mkdir(bar)
        go = os.path.join(bar, "go")
        ready = [os.path.join(bar, f"ready.{i}") for i in range(jobs)]
        script = os.path.join(self.tmp, "fio-barrier.sh")
        with open(script, "w") as f:
            f.write(': > "$1"; i=0\n'
                    'while [ ! -e "$2" ] && [ $i -lt 3000 ]; do\n'
                    '    sleep 0.01; i=$((i + 1))\n'
                    'done\n')
        return ([f"--exec_prerun=sh {script} {r} {go}" for r in ready],
                ready, go)

    def fio_start(self, procs, ready, go, stall=5.0):
        """Let the jobs go once all are connected and waiting, or one
        exited, or no job came to the line for stall seconds (a server
        that takes one client at a time never lets the others in: its
        jobs then run one after another and are rejected as before)."""
        seen, last = 0, time.time()
        while all(pr.poll() is None for pr in procs):
            n = sum(os.path.exists(r) for r in ready)
            if n == len(ready):
                break
            if n > seen:
                seen, last = n, time.time()
            elif time.time() - last > stall:
                break
            time.sleep(0.005)
        open(go, "w").close()

    def fio(self, uri, rw, bs, depth, jobs, sampler, client=()):
        """One fio process per NBD connection (one fio with --numjobs forks
        its jobs one by one, and on 2 busy CPUs the later ones started only
        after the first had finished), held at a start line until all are
        connected (fio_barrier: a parallel nbdkit starts 16 threads per
        connection, and on 2 busy CPUs the last connections came up after
        the first had finished).  Returns the sample or raises Rejected."""
        outs = [os.path.join(self.tmp, f"fio.{i}.json") for i in range(jobs)]
        prefixes = [os.path.join(self.tmp, f"fio.{i}") for i in range(jobs)]
        logs = [f"{p}_iops.1.log" for p in prefixes]
        for f in outs + logs:
            try:
                os.unlink(f)
            except OSError:
                pass
        prerun, ready, go = self.fio_barrier(jobs)
        argv = ["fio", "--name=b", "--ioengine=nbd", f"--uri={uri}",
                f"--rw={rw}", f"--bs={bs}", f"--iodepth={depth}",
                f"--size={self.bytes}", "--time_based",
                f"--runtime={RUNTIME}", f"--ramp_time={RAMP}",
                f"--log_avg_msec={LOG_MSEC}", "--log_unix_epoch=1",
                "--output-format=json"]
        procs = [subprocess.Popen(list(client) + argv +
                                  [f"--write_iops_log={prefixes[i]}",
                                   f"--output={outs[i]}", prerun[i]],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, cwd=self.tmp) for i in range(jobs)]
        self.fio_start(procs, ready, go)
        t0 = time.time()
        status = []
        for pr in procs:
            try:
                err = pr.communicate(timeout=jobs * (RUNTIME + RAMP + 10) + 60)[1]
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                raise
            status.append((pr.returncode, err))
        wall = time.time() - t0
        sampler.stop()
        try:
            js = [json.load(open(o))["jobs"][0] for o in outs]
        except (OSError, ValueError, KeyError, IndexError):
            rc = next((pr.returncode for pr in procs if pr.returncode), 0)
            raise Rejected(f"fio exit {rc}, no JSON report")
        win = fio_window(logs, js)
        why = fio_check(status, js, win, wall)
        dirs = [d for d in ("read", "write") if sum(j[d]["total_ios"] for j in js)]
        ios = sum(j[d]["total_ios"] for j in js for d in dirs)
        iops = sum(j[d]["iops"] for j in js for d in dirs)
        lat = sum(j[d]["lat_ns"]["mean"] * j[d]["total_ios"] for j in js
                  for d in dirs) / ios / 1000 if ios else 0.0
        # fio's own CPU (each job is a process), over its measured runtime.
        fio_s = sum((j["usr_cpu"] + j["sys_cpu"]) / 100 * j["job_runtime"] / 1000
                    for j in js)
        if win:
            w0, w1 = min(s for s, _ in win), max(e for _, e in win)
        else:  # no log: the last RUNTIME seconds before fio exited
            w0, w1 = t0 + wall - RUNTIME, t0 + wall
        res = {"iops": iops, "lat_us": lat, "ios": ios, "wall_s": round(wall, 2),
               "window_s": round(w1 - w0, 3)}
        for name in sampler.groups:
            res[f"cpu_{name}_us"] = (sampler.seconds(name, w0, w1) * 1e6 / ios
                                     if ios else 0.0)
        res["cpu_fio_us"] = fio_s * 1e6 / ios if ios else 0.0
        res["cpu_us_per_req"] = res.get("cpu_server_us", 0) + res.get("cpu_backend_us", 0)
        if why is None:
            used = iops * (res["cpu_us_per_req"] + res["cpu_fio_us"]) / 1e6
            if used > CPUS * 1.1:
                why = (f"impossible: {iops:.0f} IOPS x {res['cpu_us_per_req'] + res['cpu_fio_us']:.1f}"
                       f" us CPU/req = {used:.1f} CPU-s/s on {CPUS} CPUs")
        if why:
            # Served strictly one connection after another (a server that
            # takes one client at a time): the same in every round.
            raise Rejected(why, res, serial=jobs > 1 and
                           wall > (jobs - 0.5) * (RUNTIME + RAMP))
        return res

    def run_nbd(self, part, group, workload, jobs, server, spec, client=()):
        argv, env, uri, backend = spec
        rw, bs, depth = workload
        p = self.start_nbd(argv, env)
        if backend is CHILDREN:
            backend = child_pids(p.pid)
        groups = {"backend": backend} if backend else {}
        if p:
            groups["server"] = [p.pid]
        sampler = CpuSampler(groups)
        sampler.start()
        try:
            res = self.fio(uri, rw, bs, depth, jobs, sampler, client)
        finally:
            if sampler.is_alive():
                sampler.stop()
            stop(p)
        return {"part": part, "group": group,
                "workload": f"{rw}-{bs}-qd{depth}", "jobs": jobs,
                "contender": server, **res}

    def run_copy_align(self, mode):
        """bench/copy-align, one mode: the cost of a backend's 1 MiB copy
        from the page cache into a buffer at nbdkit's offset (16 bytes
        past a page) against an aligned one, for the 1 MiB ceiling."""
        out = subprocess.run([self.copy_align, self.file, "1", str(RUNTIME), mode],
                             capture_output=True, text=True,
                             timeout=RUNTIME * 4 + 30)
        if out.returncode:
            raise RuntimeError(f"copy-align exit {out.returncode}: {out.stderr[-200:]}")
        r = json.loads(out.stdout)
        return {"part": "nbd", "group": "vhost-user", "workload": "copy-1M",
                "jobs": 1, "contender": mode, "iops": r["req_per_s"],
                "device_us": r["device_us"], "server_us": r["server_us"]}

    # --- engine: blkio-bench on either library ---
    def run_engine(self, group, depth, lib, threads=1, rate=0, mode="blocking"):
        libdir = os.path.join(self.build, "lib") if lib == "ours" else self.reflib
        if group == "vhost-user":
            args = ["--driver", "virtio-blk-vhost-user", "--path", self.vu_sock]
        else:
            args = ["--driver", "io_uring", "--path", self.file]
            if group == "io_uring-direct":
                args += ["--prop", "direct=true"]
        argv = [self.blkio_bench] + args + [
            "--rw", "randread", "--bs", "4k", "--iodepth", str(depth),
            "--threads", str(threads), "--rate", str(int(rate)),
            "--mode", mode,
            "--runtime", str(RUNTIME), "--ramp", str(RAMP), "--json"]
        # The daemon's CPU per request behind the engine: the least it
        # costs per request at this depth, for the ceilings.
        sampler = CpuSampler({"backend": [self.qsd.pid]}) if group == "vhost-user" else None
        if sampler:
            sampler.start()
        try:
            out = subprocess.run(argv, env={**os.environ, "LD_LIBRARY_PATH": libdir},
                                 check=True, capture_output=True, text=True,
                                 timeout=RUNTIME + RAMP + 60).stdout
        finally:
            if sampler:
                sampler.stop()
        t1 = time.time()
        j = json.loads(out.strip().splitlines()[-1])
        ios = j["ios"] or 1
        res = {"part": "engine", "group": group,
               "workload": f"randread-4k-qd{depth}", "jobs": 1,
               "iops": j["kiops"] * 1000, "lat_us": j["lat_mean_us"],
               "cpu_us_per_req": j["cpu_us_per_req"],
               "cpu_user_us": j["cpu_user_s"] * 1e6 / ios,
               "cpu_sys_us": j["cpu_sys_s"] * 1e6 / ios}
        if sampler:
            # blkio-bench measures the last RUNTIME seconds before it exits
            res["cpu_backend_us"] = sampler.seconds("backend", t1 - RUNTIME, t1) * 1e6 / ios
        return res

    def run_depth1_floor(self, c):
        """What a depth-1 request costs any driver before its own work:
        libblkio 1.5 sleeping per request (the goal's reference, again in
        this step so that each round has its ratios), wake-floor (a kick
        and an epoll sleep on a call eventfd, no driver and no daemon), and
        ours spinning on the used ring (blkio-bench --mode poll: a busy
        do_io that never sleeps, so its CPU is its whole wait)."""
        if c == "libblkio-1.5":
            return dict(self.run_engine("vhost-user", 1, "ref"), part="engine-floor")
        if c == "ours-spin":
            return dict(self.run_engine("vhost-user", 1, "ours", mode="poll"),
                        part="engine-floor")
        p = subprocess.run([self.wake_floor, "1000000000", str(RUNTIME)],
                           check=True, capture_output=True, text=True,
                           timeout=2 * RUNTIME + 60)
        j = json.loads(p.stdout.strip().splitlines()[-1])
        return {"part": "engine-floor", "group": "vhost-user",
                "workload": "randread-4k-qd1", "jobs": 1, "iops": j["per_s"],
                "lat_us": 1e6 / j["per_s"] if j["per_s"] else None,
                "cpu_us_per_req": j["cpu_us"], "cpu_user_us": j["user_us"],
                "cpu_sys_us": j["sys_us"]}

    def run_daemon_paced(self, n):
        """The engine on the vhost-user export as n serialized connections
        load it, paced to the export's median IOPS at n connections."""
        goal = [r["iops"] for r in self.results
                if r.get("step") == f"scaling vhost-user {n} conn"
                and r.get("contender") == "qsd-nbd" and r.get("iops")
                and not r.get("error")]
        if not goal:
            raise RuntimeError(f"no IOPS of the export at {n} connections to pace to")
        threads = min(n, QSD_QUEUES)
        res = self.run_engine("vhost-user", n // threads, "ours", threads,
                              statistics.median(goal))
        return dict(res, part="daemon", rate=statistics.median(goal),
                    threads=threads, workload=f"randread-4k-{n}conn")

    def run_example(self, group, depth, lib):
        """libblkio's blkio-bench: its JSON has IOPS and latency; its CPU is
        the process's rusage (setup included, the same for both)."""
        libdir = os.path.join(self.build, "lib") if lib == "ours" else self.reflib
        dev = (["virtio-blk-vhost-user", f"path={self.vu_sock}"]
               if group == "vhost-user" else ["io_uring", f"path={self.file}"])
        argv = [self.example, f"--runtime={max(1, RUNTIME)}",
                "--readwrite=randread", f"--iodepth={depth}"] + dev
        for _ in range(3):
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            p = subprocess.run(argv, env={**os.environ, "LD_LIBRARY_PATH": libdir},
                               capture_output=True, text=True,
                               timeout=RUNTIME + 60)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            # It aborts when no completion comes within 500 ms (a loaded
            # machine can do that to either library): try again then.
            if not (p.returncode == -signal.SIGABRT and "Timeout" in p.stderr):
                break
        if p.returncode != 0:
            raise RuntimeError(f"exit {p.returncode}: {p.stderr.strip()[-120:]}")
        a = json.loads(p.stdout)["aggregate"]
        ios = a["kiops"] * 1000 * max(1, RUNTIME) or 1
        user = (r1.ru_utime - r0.ru_utime) * 1e6 / ios
        sys_ = (r1.ru_stime - r0.ru_stime) * 1e6 / ios
        return {"part": "example", "group": group,
                "workload": f"randread-4k-qd{depth}", "jobs": 1,
                "iops": a["kiops"] * 1000, "lat_us": a["mean_lat_us"],
                "cpu_us_per_req": user + sys_, "cpu_user_us": user,
                "cpu_sys_us": sys_}

    # --- the plan ---
    def plan(self):
        """A list of (label, contenders, run(contender) -> result)."""
        steps = []
        libs = ["ours", "libblkio-1.5"]

        def lib(c):
            return "ours" if c == "ours" else "ref"
        if "engine" in PARTS:
            groups = [g for g in ("io_uring", "io_uring-direct", "vhost-user")
                      if g.split("-direct")[0] in DRIVERS]
            for group in groups:
                for depth in (1, 16):
                    steps.append((f"engine {group} qd{depth}", libs,
                                  lambda c, g=group, d=depth: self.run_engine(g, d, lib(c))))
            if "vhost-user" in groups and os.path.exists(self.wake_floor):
                steps.append(("engine-floor vhost-user qd1",
                              ["libblkio-1.5", "wake-floor", "ours-spin"],
                              self.run_depth1_floor))
            for group in [g for g in ("io_uring", "vhost-user") if g in DRIVERS]:
                steps.append((f"example {group} qd16", libs,
                              lambda c, g=group: self.run_example(g, 16, lib(c))))
        workloads = [("randread", "4k", 1), ("randread", "4k", 16),
                     ("read", "1M", 8), ("randwrite", "4k", 16)]
        if "nbd" in PARTS:
            for group in DRIVERS:
                servers = self.nbd_servers(group)
                for w in workloads:
                    steps.append((f"nbd {group} {w[0]}-{w[1]}-qd{w[2]}", list(servers),
                                  lambda c, g=group, w=w, s=servers: self.run_nbd(
                                      "nbd", g, w, 1, c, s[c])))
            if "vhost-user" in DRIVERS:
                steps.append(("copy-align read-1M", list(COPY_MODES), self.run_copy_align))
        if "scaling" in PARTS:
            for group in DRIVERS:
                servers = {**self.nbd_servers(group), **self.floor_servers(group)}
                for jobs in (1, 2, 4, 8):
                    steps.append((f"scaling {group} {jobs} conn", list(servers),
                                  lambda c, g=group, j=jobs, s=servers: self.run_nbd(
                                      "scaling", g, ("randread", "4k", 16), j, c, s[c])))
            if "vhost-user" in DRIVERS and "wait-floor" in self.floor_servers("vhost-user"):
                # The daemon's CPU per request with at most N requests in
                # flight (the most N serialized connections can give it),
                # at its cheapest: all N on one queue, driven by the engine.
                for depth in (2, 4, 8):
                    steps.append((f"daemon vhost-user qd{depth}", ["ours"],
                                  lambda c, d=depth: dict(
                                      self.run_engine("vhost-user", d, "ours"),
                                      part="daemon")))
                # The daemon's CPU per request as the default model feeds
                # it: N connections, each one request at a time and its
                # own kick, on the export's queues (N threads of depth 1;
                # 8 as 4 threads of depth 2, two connections per queue as
                # the plugin shares them), paced to the IOPS the goal
                # needs (the export's, from the scaling step).
                for n in (4, 8):
                    steps.append((f"daemon vhost-user {n} conn at the export's rate",
                                  ["ours"], lambda c, n=n: self.run_daemon_paced(n)))
            if "io_uring" in DRIVERS and shutil.which("chrt"):
                servers = self.nbd_servers("io_uring")
                for jobs in (1, 2, 4, 8):
                    steps.append((f"batch-client io_uring {jobs} conn", ["ours", "file"],
                                  lambda c, j=jobs, s=servers: self.run_nbd(
                                      "batch-client", "io_uring", ("randread", "4k", 16),
                                      j, c, s[c], CLIENT_BATCH)))
        return steps

    VM_ROUNDS = max(1, ROUNDS // 2 + ROUNDS % 2)  # each an A B B A block
    VM_DRIVERS = os.environ.get("VM_DRIVERS", "nvme vfio vdpa").split()
    # per driver: 2 depths x 4 runs per round, and the example's 4 runs per
    # round in twice the rounds (vm-engine.sh's EXAMPLE_ROUNDS default)
    VM_STEPS = 1 + len(VM_DRIVERS) * 16 * VM_ROUNDS

    def run_vm(self, prog):
        """The VM drivers: one boot runs bench/vm-engine.sh's whole plan.
        The guest writes its output to a results share under run-in-vm.sh's
        scratch directory (TMPDIR here) as it goes: read it for the
        progress line; the samples are taken from the final output."""
        prog.step("test VM: booting")
        vmtmp = os.path.join(self.tmp, "vm")
        os.makedirs(vmtmp, exist_ok=True)
        p = subprocess.Popen([os.path.join(self.top, "bench", "vm-engine.sh"),
                              self.build, self.ref], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "ROUNDS": str(self.VM_ROUNDS),
                                  "RUNTIME": str(RUNTIME), "RAMP": str(RAMP),
                                  "DRIVERS": " ".join(self.VM_DRIVERS),
                                  "EXAMPLE": self.example, "TMPDIR": vmtmp})
        out = []
        reader = threading.Thread(target=lambda: out.extend(p.stdout), daemon=True)
        reader.start()
        seen = 0
        while reader.is_alive():
            reader.join(1.0)
            lines = []
            for f in glob.glob(os.path.join(vmtmp, "blkio-vm.*", "results.*", "1.out")):
                try:
                    lines += [ln for ln in open(f, errors="replace")
                              if ln.startswith("BENCHJSON ") and ln.endswith("\n")]
                except OSError:
                    pass
            for ln in lines[seen:]:
                r = json.loads(ln.split(" ", 1)[1])
                prog.step(f"test VM: {r.get('step')}: {r.get('contender')}")
            seen = max(seen, len(lines))
        p.wait()
        got = [json.loads(ln.split(" ", 1)[1]) for ln in out if ln.startswith("BENCHJSON ")]
        if not got:
            self.results.append({"step": "vm", "round": 0, "contender": "ours",
                                 "error": "".join(out[-20:])[-500:]})
        self.results += got

    def run_one(self, label, c, r, fn):
        key = (label, c)
        if key in self.skip:
            return {"contender": c, "error": self.skip[key], "skipped": True}
        try:
            res = fn(c)
        except Rejected as e:  # measured, but not to be believed
            res = {"contender": c, "error": str(e), "raw": e.raw}
            if e.serial:
                self.skip[key] = str(e) + "; not run again"  # saves N x the time
        except Exception as e:  # a contender that fails is reported, not fatal
            res = {"contender": c, "error": str(e)[-300:]}
        res["contender"] = c
        return res

    @staticmethod
    def step_rounds(label):
        """The engine steps and libblkio's example get twice the rounds:
        each round is only 2 runs of 2 s, the example's host ratio moved
        0.94-1.03x between runs of 3 rounds on a quiet machine, and the
        engine's CPU ratio at depth 1 0.77-0.97x on vhost-user."""
        return 2 * ROUNDS if label.startswith(("example ", "engine ", "engine-floor ")) else ROUNDS

    def run(self):
        steps = self.plan()
        if STEPS:
            steps = [st for st in steps if any(p in st[0] for p in STEPS)]
        total = (sum(len(c) * self.step_rounds(lb) for lb, c, _ in steps) +
                 (self.VM_STEPS if "vm" in PARTS else 0))
        prog = Progress(total)
        if "vm" in PARTS:
            self.run_vm(prog)
        for label, contenders, fn in steps:
            rounds = self.step_rounds(label)
            for r in range(rounds):
                k = r % len(contenders)
                for c in contenders[k:] + contenders[:k]:
                    prog.step(f"{label}: {c}, round {r + 1}/{rounds}")
                    res = self.run_one(label, c, r, fn)
                    res.update({"step": label, "round": r})
                    self.results.append(res)
        prog.finish()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--from-results", metavar="JSON",
                    help="only write the report from a results.json")
    args = ap.parse_args()
    if args.from_results:
        d = json.load(open(args.from_results))
        finish(args, d["meta"], d["results"])
        return
    b = Bench(args)
    # Stopped by a signal: still take qemu-storage-daemon down (finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_start = os.getloadavg()
    t0 = time.time()
    try:
        b.setup()
        b.run()
    finally:
        b.cleanup()
    nbdkit_version = subprocess.run(["nbdkit", "--version"], capture_output=True,
                                    text=True).stdout.split("\n")[0]
    meta = {"date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
            "cpus": CPUS, "kernel": os.uname().release,
            "nbdkit": nbdkit_version, "rounds": ROUNDS, "runtime": RUNTIME,
            "ramp": RAMP, "ours_args": OURS_ARGS, "ours_alt_args": OURS_ALT_ARGS,
            "alt_plugin": ALT_PLUGIN, "minutes": round((time.time() - t0) / 60, 1),
            "load": [round(x, 1) for x in load_start + os.getloadavg()]}
    finish(args, meta, b.results)


def finish(args, meta, results):
    """results.json, plots, report.md, and REPORT.md's generated section."""
    write_report = os.environ.get("REPORT", "1") != "0"
    resdir = os.environ.get("RESULTS", os.path.join(args.top, "bench", "results"))
    os.makedirs(resdir, exist_ok=True)
    with open(os.path.join(resdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    plotdir = (os.path.join(args.top, "bench", "plots") if write_report
               else os.path.join(resdir, "plots"))
    meta["plots"] = report.plots(results, plotdir)
    text = report.report(results, meta)
    with open(os.path.join(resdir, "report.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    if write_report:
        report.update(os.path.join(args.top, "bench", "REPORT.md"), text)


if __name__ == "__main__":
    main()
