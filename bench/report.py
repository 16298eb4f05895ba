# SPDX-License-Identifier: MIT OR Apache-2.0
"""bench/report.py - the generated part of bench/REPORT.md from the samples
of bench/compare.py: the goals of issue 14 (and issue 12's blkio-bench
ratios) as measured ratios, the ceilings computed from the same run, the
tables per driver and the plots.

A sample with an "error" key was rejected (or its contender failed): it
never counts in a median or a ratio, and a contender without a valid
sample shows as "failed: REASON".
"""

import os
import shutil
import statistics
import subprocess


def by_step(results):
    steps = {}
    for r in results:
        steps.setdefault(r["step"], []).append(r)
    return steps


def valid(rs, contender=None):
    return [r for r in rs if "error" not in r and
            (contender is None or r["contender"] == contender)]


def median_of(rs, contender, key):
    v = [r[key] for r in valid(rs, contender) if key in r]
    return statistics.median(v) if v else None


def failure(rs, contender):
    """Why a contender has no valid sample here (None if it has one)."""
    if valid(rs, contender):
        return None
    err = [r["error"] for r in rs if r["contender"] == contender]
    return err[0].strip().splitlines()[-1][:160] if err else None


def ratio_median(rs, a, b, key, invert=False):
    """Median over rounds of a/b (b/a with invert) of one key."""
    rounds = {}
    for r in valid(rs):
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
            why = failure(rs, c)
            if why:
                cells.append(f"failed: {why}")
                continue
            bad = len([r for r in rs if r["contender"] == c and "error" in r])
            cells.append(f"{fmt(median_of(rs, c, 'iops'), '.0f')} "
                         f"({fmt(median_of(rs, c, 'lat_us'), '.1f')}, "
                         f"{fmt(median_of(rs, c, 'cpu_us_per_req'), '.2f')})"
                         + (f" [{bad} rejected]" if bad else ""))
        ratios = []
        for c in others:
            iops, n = ratio_median(rs, first, c, "iops")
            cpu, _ = ratio_median(rs, first, c, "cpu_us_per_req")
            ratios.append(f"{fmt(iops, '.2f')}x IOPS, {fmt(cpu, '.2f')}x CPU ({n})"
                          if n else "-")
        lines.append(f"| {label[len(prefix):].strip()} | " + " | ".join(cells) +
                     " | " + " | ".join(ratios) + " |")
    return lines


# --- goals ---
ENGINE_GROUPS = [("io_uring (page cache)", "engine io_uring "),
                 ("io_uring (O_DIRECT)", "engine io_uring-direct "),
                 ("virtio-blk-vhost-user", "engine vhost-user "),
                 ("nvme-io_uring (VM)", "vm nvme "),
                 ("virtio-blk-vfio-pci (VM)", "vm vfio "),
                 ("virtio-blk-vhost-vdpa (VM)", "vm vdpa ")]
EXAMPLE_GROUPS = [("io_uring", "example io_uring "),
                  ("virtio-blk-vhost-user", "example vhost-user "),
                  ("nvme-io_uring (VM)", "vm-example nvme "),
                  ("virtio-blk-vfio-pci (VM)", "vm-example vfio "),
                  ("virtio-blk-vhost-vdpa (VM)", "vm-example vdpa ")]


def verdict(ok):
    return "**met**" if ok else "not met"


def cell_ratio(rs, a, b, target):
    """'1.23x met' for the median per-round IOPS ratio a/b, or why not."""
    if rs is None:
        return "-"
    for c in (a, b):
        why = failure(rs, c)
        if why:
            return f"{c} failed: {why}"
    r, n = ratio_median(rs, a, b, "iops")
    if r is None:
        return "-"
    return f"{r:.2f}x {verdict(r >= target)}"


def engine_cell(steps, prefix):
    parts, oks = [], []
    floor = depth1_floor(steps) if prefix == "engine vhost-user " else None
    for d in (1, 16):
        rs = steps.get(f"{prefix}qd{d}")
        if rs is None:
            continue
        why = failure(rs, "ours") or failure(rs, "libblkio-1.5")
        if why:
            parts.append(f"qd{d} failed: {why}")
            oks.append(False)
            continue
        iops, _ = ratio_median(rs, "ours", "libblkio-1.5", "iops")
        cpu, _ = ratio_median(rs, "ours", "libblkio-1.5", "cpu_us_per_req")
        if iops is None or cpu is None:
            continue
        parts.append(f"qd{d}: {cpu:.2f}x CPU at {iops:.2f}x IOPS")
        oks.append(cpu <= 0.8 and iops >= 1.0)
    if not parts:
        return None
    return ("; ".join(parts) + f" {verdict(all(oks))}" +
            (f"; qd1 reachable (see \"Depth 1 on vhost-user\")? {floor[-1]}"
             if floor and not all(oks) else ""))


def scaling_cell(steps, prefix, ours, other):
    """The cell "a / b / c / d verdict" of ours/other at 1, 2, 4 and 8
    connections, or None without those steps."""
    labels = [f"{prefix} {n} conn" for n in (1, 2, 4, 8)
              if f"{prefix} {n} conn" in steps]
    if not labels:
        return None
    vals, ok = [], True
    for lab in labels:
        c = cell_ratio(steps[lab], ours, other, 1.0)
        ok = ok and c.endswith("**met**")
        vals.append(c.split("x ")[0] + "x" if "x " in c and "failed" not in c
                    else "failed")
    return f"{' / '.join(vals)} {verdict(ok)}"


def goals(steps, cpus=2):
    rows = []
    for name, prefix in ENGINE_GROUPS:
        c = engine_cell(steps, prefix)
        if c:
            rows.append((f"engine {name}: CPU/req <= 0.8x libblkio 1.5 at >= 1.0x IOPS "
                         "(qd1 and qd16)", c, "(same library)"))
    vu = "nbd vhost-user "
    for wl, other, target, what in [
            ("randread-4k-qd16", "qsd-nbd", 1.2, "4k random reads qd16 >= 1.2x qsd's NBD export"),
            ("read-1M-qd8", "qsd-nbd", 1.5, "1 MiB reads qd8 >= 1.5x qsd's NBD export"),
            ("randread-4k-qd16", "upstream", 4.0, "4k random reads qd16 >= 4x the upstream plugin")]:
        rs = steps.get(vu + wl)
        if rs is not None:
            rows.append((f"vhost-user NBD: {what}", cell_ratio(rs, "ours", other, target),
                         cell_ratio(rs, "ours-alt", other, target)
                         if any(r["contender"] == "ours-alt" for r in rs) else "-"))
    for wl in ("randread-4k-qd1", "randread-4k-qd16"):
        rs = steps.get("nbd io_uring " + wl)
        if rs is None:
            continue
        for other in ("upstream", "file"):
            rows.append((f"io_uring NBD {wl} >= 1.0x {other}",
                         cell_ratio(rs, "ours", other, 1.0),
                         cell_ratio(rs, "ours-alt", other, 1.0)
                         if any(r["contender"] == "ours-alt" for r in rs) else "-"))
    for group, others in (("io_uring", ("file",)), ("vhost-user", ("qsd-nbd",))):
        for other in others:
            cells = [scaling_cell(steps, f"scaling {group}", ours, other)
                     for ours in ("ours", "ours-alt")]
            floor = waiting_floor(steps, cpus) if group == "vhost-user" else []
            if cells[0] and floor:
                cells[0] += ("; reachable in the default model (see \"The default "
                             "model's floor\")? " +
                             " / ".join(f"{r[0]}: {r[-1]}" for r in floor))
            if cells[0]:
                rows.append((f"scaling {group} 1/2/4/8 connections >= 1.0x {other}",
                             cells[0], cells[1]))
        cell = scaling_cell(steps, f"batch-client {group}", "ours", "file")
        if cell:
            rows.append((f"scaling {group} 1/2/4/8 connections >= 1.0x file, "
                         "client batch-scheduled (explains the row above: see "
                         "\"Client wake-ups\")", cell, "-"))
    for name, prefix in EXAMPLE_GROUPS:
        rs = steps.get(prefix + "qd16")
        if rs is not None:
            rows.append((f"libblkio's blkio-bench on {name}: ours/libblkio-1.5 >= 1.0x (issue 12)",
                         cell_ratio(rs, "ours", "libblkio-1.5", 1.0), "(same library)"))
    if not rows:
        return []
    out = ["### Goals (issue 14; issue 12's blkio-bench ratios)", "",
           "Each cell: the median of per-round IOPS ratios (engine: CPU per "
           "request and IOPS, ours/libblkio 1.5), and whether it reaches the "
           "goal.  \"default\" is the plugin as it runs on Debian 12's nbdkit "
           "1.32 (requests serialized per connection); \"parallel\" is ours-alt "
           "(`thread-model=parallel` unless the run says otherwise).  A "
           "contender whose samples were all rejected shows as failed.", "",
           "| goal | default | parallel |", "|---|---|---|"]
    out += [f"| {g} | {a} | {b} |" for g, a, b in rows]
    return out + [""]


# --- ceilings ---
def engine_ceilings(steps):
    lines = ["Engine CPU per request split into user and kernel time (µs, "
             "medians).  The kernel's part is system calls and the device "
             "path, which the library only reaches by making fewer calls: "
             "where our kernel time alone is above 0.8x of libblkio's "
             "whole CPU per request, 0.8x is out of reach of user-space "
             "changes at this call pattern.", "",
             "| driver, depth | ours user | ours kernel | libblkio user | "
             "libblkio kernel | ours kernel / libblkio total | 0.8x reachable? |",
             "|---|---|---|---|---|---|---|"]
    n = 0
    for name, prefix in ENGINE_GROUPS + [("blkio-bench example " + n_, p) for n_, p in EXAMPLE_GROUPS]:
        for d in (1, 16):
            rs = steps.get(f"{prefix}qd{d}")
            if rs is None:
                continue
            v = {(c, k): median_of(rs, c, k) for c in ("ours", "libblkio-1.5")
                 for k in ("cpu_user_us", "cpu_sys_us")}
            if None in v.values():
                continue
            total = v[("libblkio-1.5", "cpu_user_us")] + v[("libblkio-1.5", "cpu_sys_us")]
            share = v[("ours", "cpu_sys_us")] / total if total else 0
            lines.append(f"| {name} qd{d} | {v[('ours', 'cpu_user_us')]:.2f} | "
                         f"{v[('ours', 'cpu_sys_us')]:.2f} | "
                         f"{v[('libblkio-1.5', 'cpu_user_us')]:.2f} | "
                         f"{v[('libblkio-1.5', 'cpu_sys_us')]:.2f} | {share:.2f}x | "
                         + ("no: the kernel alone is above 0.8x" if share > 0.8 else "yes")
                         + " |")
            n += 1
    return lines + [""] if n else []


FLOOR_STEP = "engine-floor vhost-user qd1"
FLOOR_ROWS = [("libblkio-1.5", "libblkio 1.5, sleeping per request (the goal's reference)"),
              ("wake-floor", "wake-floor: a kick and a sleep, no driver, no daemon"),
              ("ours-spin", "ours spinning (`blkio-bench --mode poll`)")]


def depth1_floor(steps):
    """(sleep ratio, spin ratio, verdict) of the depth-1 floor step: the
    CPU per request of sleeping (wake-floor) and of spinning (ours in poll
    mode) over libblkio's in the same rounds, or None without the step."""
    rs = steps.get(FLOOR_STEP)
    if rs is None:
        return None
    sleep, _ = ratio_median(rs, "wake-floor", "libblkio-1.5", "cpu_us_per_req")
    spin, _ = ratio_median(rs, "ours-spin", "libblkio-1.5", "cpu_us_per_req")
    if sleep is None or spin is None:
        return None
    if min(sleep, spin) > 0.8:
        why = (f"no: sleeping alone costs {sleep:.2f}x and spinning "
               f"{spin:.2f}x of libblkio's CPU per request")
    else:
        why = (f"yes: the cheaper of sleeping ({sleep:.2f}x) and spinning "
               f"({spin:.2f}x) leaves room under 0.8x")
    return sleep, spin, why


def depth1_floor_table(steps):
    rs = steps.get(FLOOR_STEP)
    if rs is None:
        return []
    floor = depth1_floor(steps)
    lines = ["Depth 1 on vhost-user, sleeping or spinning: at depth 1 a "
             "driver either sleeps until the call eventfd wakes "
             "it or spins on the used ring until the completion lands; one "
             "that spins a while and then sleeps pays at least the cheaper "
             "of the two.  `bench/wake-floor` sleeps with no driver and no "
             "daemon: two threads trade a kick and a call eventfd, the "
             "driver thread in an edge-triggered epoll wait as ours does.  "
             "Ours spinning is a busy `do_io` that never sleeps, so its "
             "CPU is its whole wait.  Where both cost more than 0.8x of "
             "libblkio's CPU per request, no driver reaches the goal at "
             "depth 1 on this machine.  CPU: µs per request or round trip "
             "(user + kernel), medians; ratios: medians of per-round "
             "ratios to libblkio 1.5 in this step.", "",
             "| contender | IOPS or round trips/s | CPU (user + kernel) | / libblkio 1.5 CPU |",
             "|---|---|---|---|"]
    for c, what in FLOOR_ROWS:
        why = failure(rs, c)
        if why:
            lines.append(f"| {what} | failed: {why} | - | - |")
            continue
        r, n = ratio_median(rs, c, "libblkio-1.5", "cpu_us_per_req")
        lines.append(f"| {what} | {fmt(median_of(rs, c, 'iops'), '.0f')} | "
                     f"{fmt(median_of(rs, c, 'cpu_us_per_req'), '.2f')} "
                     f"({fmt(median_of(rs, c, 'cpu_user_us'), '.2f')} + "
                     f"{fmt(median_of(rs, c, 'cpu_sys_us'), '.2f')}) | "
                     + (f"{r:.2f}x ({n})" if c != "libblkio-1.5" and r is not None
                        else "-") + " |")
    if floor:
        lines += ["", f"0.8x at depth 1 reachable by any driver? {floor[-1]}."]
    return lines + [""]


def nbd_ceilings(steps, cpus):
    lines = ["NBD CPU per request of each process (µs, medians over the "
             "measured window of fio's jobs: nbdkit, qemu-storage-daemon "
             "behind vhost-user or serving its own NBD export, fio itself), "
             f"and the most IOPS {cpus} CPUs allow at that cost "
             "(CPUs / total CPU per request).  nbdkit's null plugin is "
             "nbdkit's own floor; \"CPUs busy\": IOPS x total CPU per request, "
             "the share of the machine the run kept busy.", "",
             "| workload | contender | IOPS | nbdkit | qemu-storage-daemon | fio | "
             f"total | {cpus}-CPU bound | CPUs busy |", "|---|---|---|---|---|---|---|---|---|"]
    n = 0
    for label in ("nbd io_uring randread-4k-qd16", "nbd vhost-user randread-4k-qd16",
                  "nbd vhost-user read-1M-qd8", "scaling vhost-user 8 conn"):
        rs = steps.get(label)
        if rs is None:
            continue
        for c in dict.fromkeys(r["contender"] for r in rs):
            why = failure(rs, c)
            if why:
                lines.append(f"| {label} | {c} | failed: {why} | | | | | | |")
                continue
            s, b, f = (median_of(rs, c, k) for k in
                       ("cpu_server_us", "cpu_backend_us", "cpu_fio_us"))
            tot = sum(x or 0.0 for x in (s, b, f))
            iops = median_of(rs, c, 'iops')
            busy = f"{iops * tot / (cpus * 1e6):.0%}" if iops and tot else "-"
            lines.append(f"| {label} | {c} | {fmt(iops, '.0f')} | "
                         f"{fmt(s, '.1f')} | {fmt(b, '.1f')} | {fmt(f, '.1f')} | {tot:.1f} | "
                         + (f"{cpus * 1e6 / tot:.0f}" if tot else "-") + f" | {busy} |")
            n += 1
    if not n:
        return []
    need = []
    for label, other, target in (("nbd vhost-user randread-4k-qd16", "qsd-nbd", 1.2),
                                 ("nbd vhost-user read-1M-qd8", "qsd-nbd", 1.5),
                                 ("nbd vhost-user randread-4k-qd16", "upstream", 4.0),
                                 ("nbd io_uring randread-4k-qd16", "file", 1.0)):
        rs = steps.get(label)
        if rs is None:
            continue
        keys = ("cpu_server_us", "cpu_backend_us", "cpu_fio_us")
        their_cost = sum(median_of(rs, other, k) or 0.0 for k in keys)
        for ours in ("ours", "ours-alt"):
            theirs = median_of(rs, other, "iops")
            cost = sum(median_of(rs, ours, k) or 0.0 for k in keys)
            if not theirs or not cost:
                continue
            bound = cpus * 1e6 / cost
            same = f"{their_cost / cost:.2f}x" if their_cost else "-"
            # Within the bound, but busier than any contender kept the
            # CPUs in this step: say so rather than a bare yes.
            share = target * theirs / bound
            cpu = "yes" if bound >= target * theirs else "no"
            most = step_most_busy(rs, cpus)
            if cpu == "yes" and most and share > most:
                cpu = f"only at {share:.0%} busy (this step's most: {most:.0%})"
            serial, verdicts = "-", ["CPU: " + cpu]
            rs1 = steps.get(label.rsplit(" ", 1)[0] + " randread-4k-qd1")
            lat1 = median_of(rs1, "ours", "lat_us") if rs1 else None
            if ours == "ours" and "-4k-" in label and lat1:
                serial = 1e6 / lat1
                verdicts.append("serialized: " + ("yes" if serial >= target * theirs else "no"))
                serial = f"{serial:.0f}"
            need.append(f"| {label} | {ours} | {target}x {other} = {target * theirs:.0f} | "
                        f"{cpus * 1e6 / cost:.0f} ({target * theirs / bound:.0%} of it) | "
                        f"{same} | {serial} | " + ", ".join(verdicts) + " |")
    if need:
        lines += ["Is the goal within reach?  CPU bound: the IOPS the machine's "
                  f"{cpus} CPUs allow at the measured CPU per request of all "
                  "processes (fio included); serialized bound: one request in "
                  "flight on one connection, 1 / ours' qd1 latency (default "
                  "model only; an estimate: at depth 16 the client's next "
                  "request already waits in the socket, so the measured IOPS "
                  "can pass it by the client's share of the round trip).  In "
                  "brackets: how busy the goal would keep the CPUs at ours' "
                  "cost (compare \"CPUs busy\" above).  At equal CPU use: "
                  "the other's CPU per request over ours', the IOPS ratio if "
                  "both kept the CPUs equally busy; below the goal's ratio, "
                  "the goal needs ours to keep them busier than the other "
                  "does.  \"Only at N% busy\": within the bound, but at a "
                  "share of the CPUs that no contender reached in that step.", "",
                  "| workload | ours | goal needs (IOPS) | CPU bound | at equal CPU use | serialized bound | reachable? |",
                  "|---|---|---|---|---|---|---|"] + need
    return lines + [""]


def serial_bound(steps):
    """The default model keeps one request in flight per connection: at
    most connections / qd1 latency IOPS, whatever the client's depth."""
    lines = []
    for group, other in (("io_uring", "file"), ("vhost-user", "qsd-nbd")):
        rs1 = steps.get(f"nbd {group} randread-4k-qd1")
        lat = median_of(rs1, "ours", "lat_us") if rs1 else None
        if not lat:
            continue
        for n in (1, 2, 4, 8):
            rs = steps.get(f"scaling {group} {n} conn") or (
                steps.get(f"nbd {group} randread-4k-qd16") if n == 1 else None)
            if rs is None:
                continue
            got = median_of(rs, "ours", "iops")
            theirs = median_of(rs, other, "iops")
            lines.append(f"| {group} | {n} | {n * 1e6 / lat:.0f} | {fmt(got, '.0f')} | "
                         f"{fmt(theirs, '.0f')} |")
    if not lines:
        return []
    return (["The default (serialized) model has one request in flight per "
             "connection: its bound is connections / qd1 latency (ours, "
             "4k random reads at qd1 on one connection), whatever the client's "
             "depth.", "",
             "| driver | connections | bound (IOPS) | ours measured (qd16 each) | "
             "file plugin or qsd NBD export |", "|---|---|---|---|---|"] + lines + [""])


def any_plugin_bound(steps, cpus):
    """The most IOPS any nbdkit plugin could give on the vhost-user
    backend, each part at its cheapest: fio's CPU per request (the least
    of any server's run), plus nbdkit's own floor (its null plugin, which
    has no backend and never waits), plus the daemon's CPU per request
    behind vhost-user when the engine alone drives it at the same depth."""
    rs_vu = steps.get("nbd vhost-user randread-4k-qd16")
    rs_null = steps.get("nbd io_uring randread-4k-qd16")
    rs_eng = steps.get("engine vhost-user qd16")
    if not (rs_vu and rs_null and rs_eng):
        return []
    fio = [median_of(rs_vu, c, "cpu_fio_us") for c in
           dict.fromkeys(r["contender"] for r in rs_vu)]
    fio = min((f for f in fio if f), default=None)
    null = median_of(rs_null, "null", "cpu_server_us")
    qsd = [median_of(rs_eng, c, "cpu_backend_us") for c in ("ours", "libblkio-1.5")]
    qsd = min((q for q in qsd if q), default=None)
    if not (fio and null and qsd):
        return []
    floor = fio + null + qsd
    bound = cpus * 1e6 / floor
    # One request in flight (the default model, one connection): no
    # plugin gets more than the engine itself with one request in flight
    # on the same daemon, the faster library's run.
    one = [median_of(steps.get("engine vhost-user qd1") or [], c, "iops")
           for c in ("ours", "libblkio-1.5")]
    one = max((x for x in one if x), default=None)
    rows = []
    for other, target in (("qsd-nbd", 1.2), ("upstream", 4.0)):
        theirs = median_of(rs_vu, other, "iops")
        if theirs:
            need = target * theirs
            cpu_v = "yes" if bound >= need else "no, for any nbdkit plugin"
            one_v = ("-" if one is None else "yes" if one >= need
                     else "no, for any nbdkit plugin")
            rows.append(f"| {target}x {other} = {need:.0f} | {bound:.0f} | {cpu_v} | "
                        f"{fmt(one, '.0f')} | {one_v} |")
    if not rows:
        return []
    return ["Any nbdkit plugin on the vhost-user export, 4 KiB random reads at "
            f"depth 16, each part at its cheapest in this run: fio {fio:.1f} µs + nbdkit's null plugin {null:.1f} µs "
            "(nbdkit with no backend) + qemu-storage-daemon behind vhost-user "
            f"driven by the engine alone at depth 16 {qsd:.1f} µs (the "
            "cheaper library's run) = "
            f"{floor:.1f} µs of CPU per request at the least, so {cpus} CPUs "
            f"allow at most {bound:.0f} IOPS.  In the default model one "
            "connection has one request in flight, and no plugin then gets "
            "more than the engine itself at depth 1 on the same daemon (the "
            "faster library's run).", "",
            "| goal needs (IOPS) | any-plugin CPU bound | reachable? | "
            "one request in flight (default model) | reachable by default? |",
            "|---|---|---|---|---|"] + rows + [""]


def step_most_busy(rs, cpus):
    """The largest share of the CPUs any contender of a step kept busy."""
    most = 0.0
    for c in dict.fromkeys(r["contender"] for r in rs):
        tot = sum(median_of(rs, c, k) or 0.0 for k in
                  ("cpu_server_us", "cpu_backend_us", "cpu_fio_us"))
        iops = median_of(rs, c, "iops")
        if iops and tot:
            most = max(most, iops * tot / (cpus * 1e6))
    return most


def waiting_floor(steps, cpus):
    """Per connection count on vhost-user: the most IOPS any plugin gets in
    the default model, where each connection has one request in flight
    and every request waits on the daemon.  Each part at its cheapest in
    this run: fio (the least of any server's run), nbdkit with
    bench/wait-floor-plugin.c (nbdkit's floor plus one kick and one
    sleep until the call per request, with a device that does nothing),
    and the daemon behind vhost-user with N requests in flight on one
    queue (the engine).  Where the run paced the engine as N serialized
    connections load the daemon, at the export's IOPS, the daemon's cost
    there gives a second bound.  Returns [(n, parts..., verdict)] or []."""
    lat1 = None
    rs1 = steps.get("nbd vhost-user randread-4k-qd1")
    if rs1:
        lat1 = median_of(rs1, "ours", "lat_us")
    out = []
    for n in (1, 2, 4, 8):
        rs = steps.get(f"scaling vhost-user {n} conn")
        dq = steps.get("engine vhost-user qd1" if n == 1 else f"daemon vhost-user qd{n}")
        if not rs or not dq or failure(rs, "wait-floor"):
            continue
        fio = [median_of(rs, c, "cpu_fio_us") for c in dict.fromkeys(r["contender"] for r in rs)]
        fio = min((f for f in fio if f), default=None)
        nbdkit = median_of(rs, "wait-floor", "cpu_server_us")
        qsd = [median_of(dq, c, "cpu_backend_us") for c in ("ours", "libblkio-1.5")]
        qsd = min((q for q in qsd if q), default=None)
        goal = median_of(rs, "qsd-nbd", "iops")
        if not (fio and nbdkit and qsd and goal):
            continue
        total = fio + nbdkit + qsd
        cpu = cpus * 1e6 / total
        serial = n * 1e6 / lat1 if lat1 else None
        paced = steps.get(f"daemon vhost-user {n} conn at the export's rate")
        qsd_paced = median_of(paced, "ours", "cpu_backend_us") if paced else None
        cpu_paced = cpus * 1e6 / (fio + nbdkit + qsd_paced) if qsd_paced else None
        most = step_most_busy(rs, cpus)
        need = goal / min(cpu, cpu_paced or cpu)   # share of the CPUs
        if cpu < goal:
            v = "no: CPU"
        elif serial is not None and serial < goal:
            v = "no: serialized"
        elif cpu_paced is not None and cpu_paced < goal:
            v = "no: the daemon's cost at the export's rate"
        elif need > most:
            v = f"only at {need:.0%} busy (this step's most: {most:.0%})"
        else:
            v = "yes"
        out.append((n, fio, nbdkit, qsd, total, cpu, qsd_paced, cpu_paced,
                    serial, goal, v))
    return out


def waiting_floor_table(steps, cpus):
    rows = waiting_floor(steps, cpus)
    if not rows:
        return []
    lines = ["The default model's floor on vhost-user (4 KiB random reads, "
             "depth 16 per connection): each connection has one request in "
             "flight, and each request waits on the daemon.  Each part at its "
             "cheapest in this run, µs of CPU per request: fio (the least of "
             "any server's run); nbdkit with `bench/wait-floor-plugin.c`, a "
             "plugin that only kicks a device process and sleeps until its "
             "call, whose device does nothing (its CPU not counted); the "
             "daemon behind vhost-user with at most N requests in flight, "
             "all on one queue, driven by the engine (1: the cheaper "
             "library's depth-1 run).  Serialized bound: as above.  "
             "Daemon at the export's rate: the daemon's CPU per request when "
             "the engine loads it as N serialized connections do (N threads "
             "of one request each, each its own kick, on the export's 4 "
             "queues; 8 as 4 threads of 2), paced to the export's IOPS at N "
             "connections (`blkio-bench --rate`); the bound beside it "
             "replaces the daemon's cheapest cost with that one.", "",
             "| connections | fio | nbdkit, waiting plugin | daemon, depth N | "
             f"total | {cpus}-CPU bound | daemon at the export's rate | "
             f"{cpus}-CPU bound at that cost | serialized bound | export (goal) | "
             "reachable? |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, fio, nbdkit, qsd, total, cpu, qsd_p, cpu_p, serial, goal, v in rows:
        lines.append(f"| {n} | {fio:.1f} | {nbdkit:.1f} | {qsd:.1f} | {total:.1f} | "
                     f"{cpu:.0f} | {fmt(qsd_p, '.1f')} | {fmt(cpu_p, '.0f')} | "
                     f"{fmt(serial, '.0f')} | {goal:.0f} | {v} |")
    return lines + [""]


def copy_alignment(steps, cpus):
    """bench/copy-align: a backend's copy of 1 MiB from the page cache
    into a buffer 16 bytes past a page (where glibc puts nbdkit 1.32's
    request buffer, which a lent read lands in) against an aligned one, and
    the 1 MiB goal's CPU bound if the daemon paid the aligned price."""
    rs = steps.get("copy-align read-1M")
    if not rs:
        return []
    rows = []
    for c in dict.fromkeys(r["contender"] for r in rs):
        why = failure(rs, c)
        if why:
            rows.append(f"| {c} | failed: {why} | | | |")
            continue
        ratio, n = ratio_median(rs, c, "lent+0", "device_us")
        rows.append(f"| {c} | {fmt(median_of(rs, c, 'device_us'), '.1f')} | "
                    f"{fmt(median_of(rs, c, 'server_us'), '.1f')} | "
                    f"{fmt(median_of(rs, c, 'iops'), '.0f')} | "
                    f"{fmt(ratio, '.2f')}x ({n}) |")
    lines = ["A 1 MiB read lent to the device lands in nbdkit's request "
             "buffer, which glibc places 16 bytes past a page: the "
             "daemon's kernel copy from the page cache then writes no cache "
             "line whole.  `bench/copy-align` plays the path with three "
             "processes, one request at a time: a device `pread`s 1 MiB "
             "from the benchmark's cached file into shared memory at the "
             "given offset, a server writes it to a Unix socket (bounce: "
             "after a `memcpy` from a page-aligned chunk into its own "
             "buffer), a client reads it.  µs of thread CPU per request, "
             "medians; device / lent+0: the median of per-round ratios.", "",
             "| mode | device | server | requests/s | device / lent+0 |",
             "|---|---|---|---|---|"] + rows + [""]
    lent16, lent0 = (median_of(rs, m, "device_us") for m in ("lent+16", "lent+0"))
    rv = steps.get("nbd vhost-user read-1M-qd8")
    if lent16 is None or lent0 is None or not rv or not median_of(rv, "qsd-nbd", "iops"):
        return lines
    excess = lent16 - lent0
    goal = 1.5 * median_of(rv, "qsd-nbd", "iops")
    need = []
    for ours in ("ours", "ours-alt"):
        parts = [median_of(rv, ours, k) for k in
                 ("cpu_server_us", "cpu_backend_us", "cpu_fio_us")]
        if None in parts:
            continue
        cost = sum(parts)
        aligned = cost - min(excess, parts[1])
        need.append(f"| {ours} | {goal:.0f} | {cpus * 1e6 / cost:.0f} | "
                    f"{parts[1]:.1f} - {excess:.1f} | {cpus * 1e6 / aligned:.0f} "
                    f"({goal * aligned / (cpus * 1e6):.0%} of it) | "
                    + ("yes" if cpus * 1e6 / aligned >= goal else "no") + " |")
    if need:
        lines += [f"The 1 MiB goal's CPU bound with the daemon's misaligned "
                  f"copy at the aligned price (its CPU per request less "
                  f"lent+16's excess over lent+0 above):", "",
                  "| ours | goal needs (IOPS) | CPU bound | daemon µs, aligned | "
                  "CPU bound, aligned | goal within the aligned bound? |",
                  "|---|---|---|---|---|---|"] + need + [""]
    return lines


def client_wakeups(steps):
    """The io_uring scaling with a normal and a batch-scheduled client."""
    lines = []
    for n in (1, 2, 4, 8):
        rs = steps.get(f"scaling io_uring {n} conn")
        rb = steps.get(f"batch-client io_uring {n} conn")
        if rs is None or rb is None:
            continue
        cells = []
        for c in ("ours", "file"):
            a, b = median_of(rb, c, "iops"), median_of(rs, c, "iops")
            cells.append(f"{a / b:.2f}x" if a and b else "-")
        lines.append(f"| {n} | {cell_ratio(rs, 'ours', 'file', 1.0)} | "
                     f"{cell_ratio(rb, 'ours', 'file', 1.0)} | {cells[0]} | {cells[1]} |")
    if not lines:
        return []
    return ["Client wake-ups (io_uring, 4 KiB random reads at depth 16 per "
            "connection): fio sleeps until a reply comes, and the reply wakes "
            "it on the CPU of the nbdkit thread that sent it, which it then "
            "preempts.  In the default model each connection is one nbdkit "
            "thread, so with as many busy threads as CPUs that thread and "
            "its client trade the CPU twice per request.  The same runs "
            "with the client batch-scheduled (`chrt --batch 0 fio`: no "
            "preemption on wake-up) show how much of a ratio is that "
            "trade.  Batch / normal: the contender's median IOPS with the "
            "batch-scheduled client over the normal one.", "",
            "| connections | ours/file, normal client | ours/file, batch client | "
            "ours batch / normal | file batch / normal |",
            "|---|---|---|---|---|"] + lines + [""]


def ceilings(steps, cpus):
    body = (engine_ceilings(steps) + depth1_floor_table(steps) +
            nbd_ceilings(steps, cpus) +
            any_plugin_bound(steps, cpus) + copy_alignment(steps, cpus) +
            serial_bound(steps) + waiting_floor_table(steps, cpus) +
            client_wakeups(steps))
    return ["### Ceilings (from the same run)", ""] + body if body else []


SECTIONS = [
    ("engine io_uring-direct", "Engine, io_uring with O_DIRECT", "blkio-bench 4 KiB random reads, one queue."),
    ("engine io_uring ", "Engine, io_uring on the page cache", "blkio-bench 4 KiB random reads, one queue."),
    ("engine vhost-user", "Engine, vhost-user (qemu-storage-daemon)", "CPU is blkio-bench's own."),
    ("vm nvme", "Engine, nvme-io_uring (test VM, TCG)", "blkio-bench in the guest, A B B A; TCG: 5-25% noise per sample."),
    ("vm vfio", "Engine, virtio-blk-vfio-pci (test VM, TCG)", ""),
    ("vm vdpa", "Engine, virtio-blk-vhost-vdpa (test VM, VDUSE)", ""),
    ("example ", "libblkio's blkio-bench (host)",
     "libblkio-dev 1.5's example program, built from its sources against our "
     "header, run on each library (LD_LIBRARY_PATH); 4 KiB random reads at "
     "depth 16, completion fd in epoll; CPU is the process's rusage."),
    ("vm-example ", "libblkio's blkio-bench (test VM)", ""),
    ("nbd io_uring", "NBD, io_uring driver (cached file)", "fio nbd engine, one connection; CPU is nbdkit's."),
    ("nbd vhost-user", "NBD, vhost-user driver", "one connection; CPU is nbdkit's plus qemu-storage-daemon's."),
    ("scaling io_uring", "Scaling, io_uring: 4 KiB random reads, depth 16 per connection", ""),
    ("scaling vhost-user", "Scaling, vhost-user", ""),
    ("batch-client io_uring", "Scaling, io_uring, client batch-scheduled",
     "The same as \"Scaling, io_uring\" with each fio started as `chrt "
     "--batch 0 fio`, ours (default model) and the file plugin only.  A "
     "SCHED_BATCH task does not preempt the task running on its CPU when "
     "it wakes up (see \"Client wake-ups\" under Ceilings).")]


def report(results, meta):
    steps = by_step(results)
    alt = meta.get("ours_alt_args")
    out = ["<!-- bench/run.sh: generated, do not edit by hand -->",
           "## Current comparison (bench/run.sh)", "",
           f"{meta['date']}, {meta['cpus']} CPUs, kernel {meta['kernel']}, "
           f"{meta['nbdkit']}; load average {meta['load'][0]:.1f} (1 min) at the "
           f"start, {meta['load'][3]:.1f} at the end; {meta.get('minutes', '?')} minutes; "
           f"{meta['rounds']} rounds of {meta['runtime']} s after {meta['ramp']} s "
           "ramp, contenders interleaved, medians.  Cells: median IOPS "
           "(mean latency in us, CPU us per request); ratios are medians of "
           "per-round ratios (IOPS: higher is better for the first; CPU: ours/"
           "theirs, lower is better), with the number of rounds.  CPU counts "
           "the measured window of fio's jobs only (no setup, no ramp).  "
           "Rejected samples (fio error, a job short of the runtime, "
           "connections not served at the same time, more CPU than the "
           "machine has) never count."
           + (f"  Our plugin: `{' '.join(meta['ours_args'])}`." if meta.get("ours_args") else "")
           + (f"  ours-alt: `{alt}`" + (f" on {meta['alt_plugin']}" if meta.get("alt_plugin") else "")
              + "." if alt is not None else ""),
           ""]
    out += goals(steps, meta["cpus"])
    out += ceilings(steps, meta["cpus"])
    for prefix, title, note in SECTIONS:
        t = table(steps, prefix)
        if t:
            out += [f"### {title}", ""] + ([note, ""] if note else []) + t + [""]
    vm_err = [r["error"] for r in results if r.get("step") == "vm" and "error" in r]
    if vm_err:
        out += ["### Test VM", "", "failed: " + vm_err[0].strip().splitlines()[-1][:300], ""]
    if meta.get("plots"):
        out += ["### Plots", ""] + [f"![{p}](plots/{p})" for p in meta["plots"]] + [""]
    out.append("<!-- bench/run.sh: end -->")
    return "\n".join(out) + "\n"


def update(path, text):
    """Replace the generated section of REPORT.md, keep the rest."""
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    begin, end = "<!-- bench/run.sh: generated", "<!-- bench/run.sh: end -->"
    if begin in old and end in old:
        new = old[:old.index(begin)] + text + old[old.index(end) + len(end) + 1:]
    else:
        head, _, rest = old.partition("\n")
        new = head + "\n\n" + text + "\n" + rest
    with open(path, "w") as f:
        f.write(new)


# --- plots ---
def gnuplot(script):
    subprocess.run(["gnuplot", "-e", script], check=False)


def histogram(steps, prefixes, outdir, name, key, ylabel):
    labels = [lab for lab in steps if lab.startswith(prefixes)]
    if not labels:
        return None
    cont = list(dict.fromkeys(r["contender"] for lab in labels for r in steps[lab]))
    dat = os.path.join(outdir, name + ".dat")
    with open(dat, "w") as f:
        for lab in labels:
            vals = [median_of(steps[lab], c, key) for c in cont]
            short = lab
            for p in prefixes:
                if lab.startswith(p) and len(prefixes) == 1:
                    short = lab[len(p):]
            f.write(short.strip().replace(" ", "_") + " " +
                    " ".join("0" if v is None else f"{v:.2f}" for v in vals) + "\n")
    cols = ", ".join(f"'{dat}' using {i + 2}:xtic(1) title '{c}'" for i, c in enumerate(cont))
    gnuplot(f"set terminal png noenhanced size 1000,480; set output '{os.path.join(outdir, name)}';"
            "set style data histograms; set style histogram clustered gap 1;"
            "set style fill solid 0.8 border -1; set key outside;"
            f"set ylabel '{ylabel}'; set xtics rotate by -20;"
            + ("set logscale y;" if key == "iops" else "set yrange [0:*];")
            + f"plot {cols}")
    os.unlink(dat)
    return name


def plots(results, outdir):
    """IOPS and latency per driver and depth, and scaling, as gnuplot PNGs;
    rejected samples are left out (a failed contender plots as 0)."""
    if not shutil.which("gnuplot"):
        return []
    os.makedirs(outdir, exist_ok=True)
    steps = by_step(results)
    made = []
    for prefixes, name, key, ylabel in [
            (("nbd io_uring",), "nbd-io_uring-iops.png", "iops", "IOPS"),
            (("nbd vhost-user",), "nbd-vhost-user-iops.png", "iops", "IOPS"),
            (("nbd io_uring",), "nbd-io_uring-latency.png", "lat_us", "mean latency (us)"),
            (("nbd vhost-user",), "nbd-vhost-user-latency.png", "lat_us", "mean latency (us)"),
            (("engine", "vm ", "example", "vm-example"), "engine-iops.png", "iops", "IOPS"),
            (("engine", "vm ", "example", "vm-example"), "engine-latency.png", "lat_us",
             "mean latency (us)"),
            (("engine", "vm "), "engine-cpu.png", "cpu_us_per_req", "CPU us per request")]:
        got = histogram(steps, prefixes, outdir, name, key, ylabel)
        if got:
            made.append(got)
    for group in ("io_uring", "vhost-user"):
        labels = [lab for lab in steps if lab.startswith(f"scaling {group} ")]
        if not labels:
            continue
        cont = list(dict.fromkeys(r["contender"] for lab in labels for r in steps[lab]))
        name = f"scaling-{group}.png"
        dat = os.path.join(outdir, name + ".dat")
        with open(dat, "w") as f:
            for lab in labels:
                jobs = int(lab.split()[2])
                vals = [median_of(steps[lab], c, "iops") for c in cont]
                f.write(f"{jobs} " + " ".join("NaN" if v is None else f"{v:.0f}"
                                              for v in vals) + "\n")
        cols = ", ".join(f"'{dat}' using 1:{i + 2} with linespoints title '{c}'"
                         for i, c in enumerate(cont))
        gnuplot(f"set terminal png noenhanced size 1000,480; set output '{os.path.join(outdir, name)}';"
                "set xlabel 'NBD connections'; set ylabel 'IOPS (4k randread, qd16 each)';"
                f"set logscale x 2; set yrange [0:*]; set key outside; plot {cols}")
        os.unlink(dat)
        made.append(name)
    return made
