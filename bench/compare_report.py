#!/usr/bin/python3
"""Turns the runs of bench/compare.sh into <out>.json, <out>.md and the gnuplot PNGs.

Input (written by compare.sh):
  --facts     system <TAB> key <TAB> value lines (machine, versions, memory, disk, anomalies)
  --manifest  one line per synod-bench run: system, workload, run, exit status, load before,
              load after, seconds, path of its --json output, and the number of snapshot
              files (member/snap/*.snap) the members finished writing during the run
  --work      the temp dir (endpoint status files, where the plot data goes)
Output: <out>.json, <out>.md, <out>-latency.png, <out>-put-clients.png.

Medians are taken per quantity over the runs that succeeded (exit status 0); the ratio is
synod's median over etcd's. Standard library only.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys

SYSTEMS = ("etcd", "synod")
HIGHER, LOWER = "higher is better", "lower is better"

# Workloads in table order: name -> (description, [(label, path in the run JSON, unit, direction)]).
THR = ("throughput", "throughput_ops_s", "ops/s", HIGHER)
P50 = ("p50", "latency_ms.p50", "ms", LOWER)
P99 = ("p99", "latency_ms.p99", "ms", LOWER)
P999 = ("p99.9", "latency_ms.p99.9", "ms", LOWER)
WORKLOADS = {
    "put": ("put, 100 clients, 256-byte values, closed loop", [THR, P50, P99]),
    "put-rate": ("put at a fixed 1000/s, open loop, 100 clients (latency from the due time)",
                 [("achieved rate", "throughput_ops_s", "ops/s", HIGHER), P50, P99, P999]),
    "range-l": ("range, linearizable, 1 key of 10k, 100 clients", [THR, P50, P99]),
    "range-s": ("range, serializable, 1 key of 10k, 100 clients", [THR, P50, P99]),
    "mixed": ("mixed: 90% linearizable range / 10% put, 100 clients", [THR, P50, P99]),
    "txn-put": ("txn-put: compare mod_revision then put, 100 clients", [THR, P50, P99]),
    "watch": ("watch fan-out: 100 watchers of a prefix, puts at 100/s (events = 100x)",
              [("events delivered", "throughput_ops_s", "events/s", HIGHER),
               ("event p50", "latency_ms.p50", "ms", LOWER),
               ("event p99", "latency_ms.p99", "ms", LOWER),
               ("put p99", "phases.put.latency_ms.p99", "ms", LOWER)]),
    "lock": ("lock then unlock, 50 clients on 10 lock names", [
        ("cycles", "throughput_ops_s", "ops/s", HIGHER), P50, P99,
        ("acquire p99", "phases.acquire.latency_ms.p99", "ms", LOWER)]),
    "lease": ("lease grant, 1 keep-alive, revoke; 100 clients", [THR, P50, P99]),
}
CLIENT_COUNTS = [(1, "put-c1"), (10, "put-c10"), (50, "put-c50"), (100, "put"), (200, "put-c200")]
PLOT_TITLES = {
    "put": "put, 100 clients", "put-rate": "put at 1000/s (open loop)",
    "range-l": "range, linearizable, 100 clients", "range-s": "range, serializable, 100 clients",
    "mixed": "mixed 90% range / 10% put", "txn-put": "txn-put (CAS), 100 clients",
    "watch": "watch: event latency, 100 watchers", "lock": "lock+unlock cycle, 50 clients",
    "lease": "lease grant/keep-alive/revoke",
}
PLOT_WORKLOADS = list(PLOT_TITLES)
PERCENTILES = ["p50", "p90", "p99", "p99.9"]
STALL_MS = 1000  # a run whose slowest operation took this long had a stall (etcd's max: < 0.5 s)


def read_facts(path):
    facts = {"all": {}, "etcd": {}, "synod": {}}
    anomalies = []
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t", 2)
            if len(parts) != 3:
                continue
            system, key, value = parts
            if key == "anomaly":
                anomalies.append({"system": system, "what": value})
            else:
                facts.setdefault(system, {})[key] = value
    return facts, anomalies


def read_runs(path):
    runs = []
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            system, name, run, rc, load_before, load_after, secs, out = fields[:8]
            snapshots = int(fields[8]) if len(fields) > 8 else None  # older manifests: none
            result = None
            try:
                with open(out) as j:
                    result = json.load(j)
            except (OSError, ValueError):
                pass
            stderr = ""
            try:
                with open(out[:-len(".json")] + ".err") as e:
                    stderr = e.read()[-2000:]
            except OSError:
                pass
            runs.append({"system": system, "workload": name, "run": int(run), "exit": int(rc),
                         "stderr": stderr,
                         "load_before": load_before, "load_after": load_after,
                         "wall_s": float(secs), "snapshots": snapshots, "result": result})
    return runs


def derived_anomalies(runs):
    """Stalls and missed schedules, read from the runs themselves."""
    found = []
    for r in runs:
        res = r["result"]
        if not res or not res.get("ops"):
            continue
        where = f"{r['workload']} run {r['run']}"
        lat = res["latency_ms"]
        if lat["max"] >= STALL_MS:
            found.append({"system": r["system"], "what":
                          f"{where}: stall — slowest operation {lat['max']:.0f} ms (p99.9 "
                          f"{lat['p99.9']:.0f} ms, p99 {lat['p99']:.0f} ms, throughput "
                          f"{res['throughput_ops_s']:.0f} {res['unit']}/s)"})
        rate = res.get("flags", {}).get("rate") or 0
        if rate > 0:
            put = res.get("phases", {}).get("put") if res["workload"] == "watch" else None
            done = (put["ops"] if put else res["ops"]) + res["errors_total"]
            achieved = done / res["elapsed_s"] if res["elapsed_s"] else 0
            if achieved < 0.95 * rate:
                found.append({"system": r["system"], "what":
                              f"{where}: open loop fell behind --rate {rate:g}: {achieved:.0f}/s "
                              f"over {res['elapsed_s']:.1f} s (latency includes the backlog)"})
    return found


def get(result, path):
    """'latency_ms.p99.9' and 'phases.put.latency_ms.p99' (p99.9 has a dot of its own)."""
    node = result
    parts = path.split(".")
    i = 0
    while i < len(parts):
        key = parts[i]
        if key.startswith("p99") and i + 1 < len(parts):  # re-join "p99" "9"
            key, i = key + "." + parts[i + 1], i + 1
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
        i += 1
    return node if isinstance(node, (int, float)) else None


def good_runs(runs, system, workload):
    return [r for r in runs if r["system"] == system and r["workload"] == workload
            and r["exit"] == 0 and r["result"] is not None]


def failure(runs, system, workload):
    """Why a system has no result for a workload: from the failed runs' errors or stderr."""
    reasons = []
    for r in runs:
        if r["system"] != system or r["workload"] != workload or r["exit"] == 0:
            continue
        res = r["result"]
        if res and res.get("errors"):
            why = ", ".join(sorted(res["errors"]))
        else:
            why = (r.get("stderr") or "").strip().splitlines()[-1:] or [f"exit {r['exit']}"]
            why = why[0].replace("synod-bench: ", "")
        if why not in reasons:
            reasons.append(why)
    return "; ".join(reasons)


def median_of(runs, system, workload, path):
    values = [v for v in (get(r["result"], path) for r in good_runs(runs, system, workload))
              if v is not None]
    if not values:
        return None, []
    return statistics.median(values), values


def verdict(ratio, direction):
    if ratio is None or ratio == 0:
        return ""
    better = ratio if direction == HIGHER else 1 / ratio
    if abs(better - 1) < 0.05:
        return "about the same"
    return f"synod {better:.2f}x better" if better > 1 else f"synod {1 / better:.2f}x worse"


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if unit in ("ops/s", "events/s") or abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def spread(values, median):
    if len(values) < 2 or not median:
        return None
    return (max(values) - min(values)) / median


def loads(runs, system):
    ones = [float(r["load_before"].split()[0]) for r in runs if r["system"] == system]
    ones += [float(r["load_after"].split()[0]) for r in runs if r["system"] == system]
    return (statistics.mean(ones), max(ones)) if ones else (None, None)


def members_of(facts, system, prefix, key):
    out = {}
    for name in ("s1", "s2", "s3"):
        v = facts.get(system, {}).get(f"{prefix}.{name}.{key}")
        if v is not None:
            out[name] = float(v)
    return out


def leader(work, system, prefix, endpoints):
    try:
        with open(os.path.join(work, system, f"{prefix}-status.json")) as f:
            status = json.load(f)
    except (OSError, ValueError):
        return None
    for entry in status:
        st = entry.get("Status", {})
        if st.get("leader") and st.get("header", {}).get("member_id") == st.get("leader"):
            ep = entry.get("Endpoint", "").replace("http://", "")
            if ep in endpoints:
                return f"s{endpoints.index(ep) + 1}"
    return None


def build(facts, anomalies, runs, work):
    endpoints = facts["all"].get("endpoints", "").split(",")
    rows = []
    for name, (desc, metrics) in WORKLOADS.items():
        for label, path, unit, direction in metrics:
            rows.append(make_row(runs, name, desc, label, path, unit, direction))
    for clients, name in CLIENT_COUNTS:
        for label, path, unit, direction in (THR, P99):
            rows.append(make_row(runs, name, f"put, {clients} client(s), closed loop",
                                 label, path, unit, direction, group="put vs clients",
                                 clients=clients))

    resources = {}
    for system in SYSTEMS:
        n = facts["all"].get("footprint_puts", "?")
        res = {
            "vmhwm_kb_session": members_of(facts, system, "final", "vmhwm_kb"),
            "vmrss_kb_end": members_of(facts, system, "final", "vmrss_kb"),
            "cpu_s_session": members_of(facts, system, "final", "cpu_s"),
            "threads_end": members_of(facts, system, "final", "threads"),
            "vmhwm_kb_after_footprint": members_of(facts, system, "footprint", "vmhwm_kb"),
            "du_bytes_after_footprint": members_of(facts, system, "footprint", "du_bytes"),
            "alloc_bytes_after_footprint": members_of(facts, system, "footprint", "alloc_bytes"),
            "du_bytes_end": members_of(facts, system, "final", "du_bytes"),
            # "s1/member/wal": [apparent bytes, allocated bytes]
            "subdirs_after_footprint": {k.split(".sub.", 1)[0].split(".")[1] + "/" +
                                        k.split(".sub.", 1)[1]: [int(x) for x in v.split()]
                                        for k, v in facts.get(system, {}).items()
                                        if k.startswith("footprint.") and ".sub." in k},
            "leader_after_footprint": leader(work, system, "footprint", endpoints),
            "leader_end": leader(work, system, "final", endpoints),
            "exit_status": {m: facts.get(system, {}).get(f"member.{m}.exit_status")
                            for m in ("s1", "s2", "s3")},
            "footprint_puts": n,
            "load_start": facts.get(system, {}).get("load_start"),
            "load_end": facts.get(system, {}).get("load_end"),
            "load1_mean_during_runs": loads(runs, system)[0],
            "load1_max_during_runs": loads(runs, system)[1],
            "started": facts.get(system, {}).get("started"),
            "stopped": facts.get(system, {}).get("stopped"),
        }
        fp = good_runs(runs, system, "footprint")
        res["footprint_put_throughput_ops_s"] = (
            fp[0]["result"]["throughput_ops_s"] if fp else None)
        resources[system] = res

    def mib(kb_map, scale=1024, how=max):
        return how(kb_map.values()) / scale if kb_map else None

    n = facts["all"].get("footprint_puts", "?")
    resource_rows = []
    for label, key, scale, how, note in [
        ("peak RSS (VmHWM) of the largest member, whole session", "vmhwm_kb_session", 1024, max, ""),
        ("peak RSS (VmHWM), sum of the 3 members, whole session", "vmhwm_kb_session", 1024, sum, ""),
        (f"peak RSS (VmHWM) of the largest member after the {n} puts", "vmhwm_kb_after_footprint",
         1024, max, ""),
        (f"data dir (du -sb) per member after {n} puts, mean", "du_bytes_after_footprint",
         1 << 20, statistics.mean, ""),
        (f"data dir, allocated blocks, per member after {n} puts, mean",
         "alloc_bytes_after_footprint", 1 << 20, statistics.mean, ""),
    ]:
        e = mib(resources["etcd"][key], scale, how)
        s = mib(resources["synod"][key], scale, how)
        ratio = s / e if e and s is not None else None
        resource_rows.append({"quantity": label, "unit": "MiB", "direction": LOWER,
                              "etcd": e, "synod": s, "ratio": ratio,
                              "verdict": verdict(ratio, LOWER)})
    e = resources["etcd"]["footprint_put_throughput_ops_s"]
    s = resources["synod"]["footprint_put_throughput_ops_s"]
    ratio = s / e if e and s is not None else None
    resource_rows.append({"quantity": f"throughput of the {n} puts (100 clients, distinct keys)",
                          "unit": "ops/s", "direction": HIGHER, "etcd": e, "synod": s,
                          "ratio": ratio, "verdict": verdict(ratio, HIGHER)})
    return rows, resources, resource_rows


def make_row(runs, name, desc, label, path, unit, direction, group=None, clients=None):
    row = {"workload": name, "group": group or name, "description": desc, "quantity": label,
           "path": path, "unit": unit, "direction": direction}
    if clients is not None:
        row["clients"] = clients
    for system in SYSTEMS:
        med, values = median_of(runs, system, name, path)
        row[system] = med
        row[system + "_runs"] = values
        row[system + "_spread"] = spread(values, med)
    e, s = row["etcd"], row["synod"]
    row["ratio"] = s / e if e and s is not None else None
    row["verdict"] = verdict(row["ratio"], direction)
    for system in SYSTEMS:
        if row[system] is None:
            why = failure(runs, system, name)
            row[system + "_failed"] = why or "no run"
            row["verdict"] = (row["verdict"] + "; " if row["verdict"] else "") + \
                f"{system} failed: {row[system + '_failed']}"
    return row


def write_markdown(path, facts, anomalies, runs, rows, resources, resource_rows, plots):
    a = facts["all"]
    out = []
    w = out.append
    w(f"# synod and etcd side by side — {a.get('date', '')[:10]} ({a.get('mode')} mode)\n")
    w("Generated by `bench/compare.sh`"
      + (" --quick" if a.get("mode") == "quick" else "") + "; do not edit by hand.\n")
    w(f"- Machine: {a.get('host_nproc')} cores ({a.get('host_cpu')}), "
      f"{int(a.get('host_mem_kb', 0)) // 1024} MiB, disk {a.get('host_disk')}; shared: other "
      "people build and run tests on it during the comparison.")
    le, ls = resources["etcd"], resources["synod"]
    w(f"- Load average (1/5/15 min): {a.get('load_start')} at the start, {a.get('load_end')} at "
      f"the end; 1-min load during the etcd runs mean {fmt(le['load1_mean_during_runs'])} "
      f"(max {fmt(le['load1_max_during_runs'])}), during the synod runs mean "
      f"{fmt(ls['load1_mean_during_runs'])} (max {fmt(ls['load1_max_during_runs'])}).")
    w(f"- etcd: `{a.get('etcd_version')}` (/usr/bin/etcd, Debian). synod: commit "
      f"{a.get('git_commit', '')[:10]}"
      + (f" with uncommitted changes to {a.get('git_dirty').strip()}" if a.get("git_dirty", "").strip()
         else "") + f", RelWithDebInfo, binary sha256 {a.get('synod_sha256')}….")
    w(f"- Each system: one fresh 3-member cluster on 127.0.0.1 (data dirs in one temp dir on the "
      f"same disk), the same flags for both (`--heartbeat-interval 100 --election-timeout 1000 "
      f"--snapshot-count 100000`, the defaults of both); the systems ran one after the other. "
      f"{a.get('runs')} run(s) of {a.get('duration')} per workload, in rounds; "
      f"medians over the runs. synod-bench with `--conns {a.get('conns')}` over the three "
      f"members, `--val-size 256 --key-space 10000` (10k keys preloaded).")
    for system in SYSTEMS:
        svc = {k[len("service."):]: v for k, v in facts.get(system, {}).items()
               if k.startswith("service.")}
        if svc:
            w(f"- {system} services probed with etcdctl at start: " + ", ".join(
                f"{k} {v}" for k, v in sorted(svc.items())) + ".")
    w("- Ratio = synod / etcd. Spread = (max − min) / median over the runs, etcd / synod.\n")

    w("## Medians\n")
    w("| workload | quantity | etcd | synod | ratio synod/etcd | direction | reading | spread |")
    w("| --- | --- | ---: | ---: | ---: | --- | --- | --- |")
    last = None
    for r in rows:
        group = f"put, {r['clients']} clients" if "clients" in r else r["workload"]
        name = group if group != last else ""
        last = group
        sp = " / ".join("–" if r[s + "_spread"] is None else f"{100 * r[s + '_spread']:.0f}%"
                        for s in SYSTEMS)
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        arrow = "↑ higher better" if r["direction"] == HIGHER else "↓ lower better"
        w(f"| {name} | {r['quantity']} ({r['unit']}) | {fmt(r['etcd'], r['unit'])} | "
          f"{fmt(r['synod'], r['unit'])} | {ratio} | {arrow} | {r['verdict']} | {sp} |")
    w("")
    w("Workloads (`synod-bench` arguments):\n")
    for name, (desc, _) in WORKLOADS.items():
        w(f"- **{name}**: {desc} — `{a.get('workload.' + name, '')}`")
    w("- **put, N clients**: `put --clients N` (100 clients is the **put** row).\n")

    w("## Memory and disk\n")
    w("| quantity | etcd | synod | ratio synod/etcd | direction | reading |")
    w("| --- | ---: | ---: | ---: | --- | --- |")
    for r in resource_rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.2f}"
        arrow = "↑ higher better" if r["direction"] == HIGHER else "↓ lower better"
        w(f"| {r['quantity']} ({r['unit']}) | {fmt(r['etcd'], r['unit'])} | "
          f"{fmt(r['synod'], r['unit'])} | {ratio} | {arrow} | {r['verdict']} |")
    w("")
    w("Per member (VmHWM read from /proc/<pid>/status just before stopping; data dir after "
      f"the {a.get('footprint_puts')} puts and at the end; CPU = user + system over the "
      "whole session):\n")
    w("| system | member | role | VmHWM after puts (MiB) | VmHWM session (MiB) | "
      "VmRSS at end (MiB) | CPU (s) | threads | data dir after puts (MiB) | data dir at end (MiB) "
      "| exit status |")
    w("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for system in SYSTEMS:
        res = resources[system]
        for m in ("s1", "s2", "s3"):
            role = []
            if res["leader_after_footprint"] == m:
                role.append("leader after puts")
            if res["leader_end"] == m:
                role.append("leader at end")

            def g(key, scale):
                v = res[key].get(m)
                if v is None:
                    return "n/a"
                return str(int(v)) if key == "threads_end" else fmt(v / scale)
            if not role:
                known = res["leader_after_footprint"] or res["leader_end"]
                role.append("follower" if known else "unknown (no Status)")
            w(f"| {system} | {m} | {', '.join(role)} | "
              f"{g('vmhwm_kb_after_footprint', 1024)} | {g('vmhwm_kb_session', 1024)} | "
              f"{g('vmrss_kb_end', 1024)} | {g('cpu_s_session', 1)} | {g('threads_end', 1)} | "
              f"{g('du_bytes_after_footprint', 1 << 20)} | {g('du_bytes_end', 1 << 20)} | "
              f"{res['exit_status'].get(m) or 'n/a'} |")
    w("")
    subdirs = {s: resources[s]["subdirs_after_footprint"] for s in SYSTEMS}
    if any(subdirs.values()):
        w("Data-dir layout of s1 after the puts (du -sb, MiB; allocated = du -s --block-size=1): "
          + "; ".join(
            f"{s}: " + ", ".join(f"{k.split('/', 1)[1]} {v[0] / (1 << 20):.1f} "
                                 f"({v[1] / (1 << 20):.1f} allocated)"
                                 for k, v in sorted(subdirs[s].items()) if k.startswith("s1/"))
            for s in SYSTEMS) + ".\n")

    w("## Snapshots during the runs\n")
    w("The runs during which a member finished writing a snapshot file (`member/snap/*.snap` "
      "newer than the run's start; both systems snapshot every `--snapshot-count` entries): "
      "a run's latency tail may come from one.\n")
    for system in SYSTEMS:
        counted = [r for r in runs if r["system"] == system and r["snapshots"] is not None]
        with_snap = [f"{r['workload']} run {r['run']} ({r['snapshots']})"
                     for r in counted if r["snapshots"] > 0]
        if not counted:
            w(f"- {system}: not recorded")
        else:
            w(f"- {system}: " + (", ".join(with_snap) if with_snap else "none"))
    w("")

    w("## Anomalies\n")
    w(f"Failed runs, errors, members that died or needed SIGKILL, stalls (an operation slower "
      f"than {STALL_MS} ms) and open-loop runs that fell behind their rate.\n")
    if anomalies:
        for an in anomalies:
            w(f"- **{an['system']}**: {an['what']}")
    else:
        w("None: every run exited 0 with no errors and no stall, no member died, every member "
          "stopped on SIGTERM.")
    failed = [r for r in runs if r["exit"] != 0]
    if failed:
        w("")
        w("Runs left out of the medians: " + ", ".join(
            f"{r['system']} {r['workload']} run {r['run']} (exit {r['exit']})" for r in failed))
    w("")
    if plots:
        w("## Plots\n")
        for p in plots:
            w(f"![{os.path.basename(p)}]({os.path.basename(p)})\n")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def gp_quote(s):
    return "'" + s.replace("'", "''") + "'"


def plot(prefix, work, runs, facts):
    """Writes the data files and the gnuplot script under work, runs gnuplot."""
    pdir = os.path.join(work, "plots")
    os.makedirs(pdir, exist_ok=True)
    a = facts["all"]
    subtitle = (f"{a.get('date', '')[:10]}, {a.get('mode')} mode, median of {a.get('runs')} "
                f"run(s); load avg {a.get('load_start')} → {a.get('load_end')}")
    latency_png, clients_png = prefix + "-latency.png", prefix + "-put-clients.png"
    script = [
        "set terminal pngcairo size 1500,1250 font ',10'",
        f"set output {gp_quote(latency_png)}",
        f"set multiplot layout 3,3 title {gp_quote('latency percentiles (ms, log scale): ' + subtitle)}",
        "set logscale y", "set grid ytics mytics", "set key top left",
        "set xrange [-0.3:3.3]",
        "set xtics (" + ", ".join(f"'{p}' {i}" for i, p in enumerate(PERCENTILES)) + ")",
        "set ylabel 'ms'",
    ]
    for name in PLOT_WORKLOADS:
        data = os.path.join(pdir, f"lat-{name}.dat")
        cols = {}
        with open(data, "w") as f:
            f.write("# percentile etcd synod (ms, medians)\n")
            for p in PERCENTILES:
                vals = []
                for system in SYSTEMS:
                    v, _ = median_of(runs, system, name, "latency_ms." + p)
                    vals.append("NaN" if v is None or v <= 0 else f"{v:.6g}")
                    if v and v > 0:
                        cols[system] = True
                f.write(p + " " + " ".join(vals) + "\n")
        script.append(f"set title {gp_quote(PLOT_TITLES[name])}")
        missing = []
        for s in SYSTEMS:
            if not cols.get(s):
                missing += [f"{s}: no result", (failure(runs, s, name) or "no run")[:60]]
        for j, text in enumerate(missing):
            script.append(f"set label {j + 1} {gp_quote(text)} at graph 0.5, graph {0.16 - 0.06 * j} "
                          "center tc rgb 'red'")
        series = [f"{gp_quote(data)} using 0:{2 + i} with linespoints lw 2 pt 7 title '{s}'"
                  for i, s in enumerate(SYSTEMS) if cols.get(s)]
        if series:
            script.append("plot " + ", ".join(series))
        else:
            script.append("set multiplot next")
        script.append("unset label")
    script.append("unset multiplot")

    data = os.path.join(pdir, "put-clients.dat")
    have = {}
    with open(data, "w") as f:
        f.write("# clients etcd_ops_s synod_ops_s etcd_p99_ms synod_p99_ms (medians)\n")
        for clients, name in CLIENT_COUNTS:
            vals = []
            for path in ("throughput_ops_s", "latency_ms.p99"):
                for system in SYSTEMS:
                    v, _ = median_of(runs, system, name, path)
                    vals.append("NaN" if v is None or v <= 0 else f"{v:.6g}")
                    if v and v > 0:
                        have[system] = True
            f.write(f"{clients} " + " ".join(vals) + "\n")
    script += [
        "set terminal pngcairo size 1400,550 font ',10'",
        f"set output {gp_quote(clients_png)}",
        f"set multiplot layout 1,2 title {gp_quote('put, 256-byte values, closed loop: ' + subtitle)}",
        "unset logscale", "set logscale x", "set xrange [0.8:250]", "set xtics (1, 10, 50, 100, 200)",
        "set key top left", "set grid",
        "set title 'throughput vs clients'", "set xlabel 'clients'", "set ylabel 'ops/s'",
        "set yrange [0:*]",
    ]
    series = [f"{gp_quote(data)} using 1:{2 + i} with linespoints lw 2 pt 7 title '{s}'"
              for i, s in enumerate(SYSTEMS) if have.get(s)]
    script.append("plot " + ", ".join(series) if series else "set multiplot next")
    script += ["set title 'p99 latency vs clients'", "set ylabel 'ms (log scale)'",
               "set logscale y", "set yrange [*:*]"]
    series = [f"{gp_quote(data)} using 1:{4 + i} with linespoints lw 2 pt 7 title '{s}'"
              for i, s in enumerate(SYSTEMS) if have.get(s)]
    script.append("plot " + ", ".join(series) if series else "set multiplot next")
    script.append("unset multiplot")

    gp = os.path.join(pdir, "compare.gp")
    with open(gp, "w") as f:
        f.write("\n".join(script) + "\n")
    r = subprocess.run(["gnuplot", gp], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"compare_report: gnuplot failed ({gp}):\n{r.stderr}", file=sys.stderr)
        return []
    return [latency_png, clients_png]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--facts", required=True)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True, help="path prefix, e.g. bench/results/compare-2026-01-01")
    args = ap.parse_args()

    facts, anomalies = read_facts(args.facts)
    runs = read_runs(args.manifest)
    for a in derived_anomalies(runs):
        print(f"compare_report: ANOMALY ({a['system']}): {a['what']}", file=sys.stderr)
        anomalies.append(a)
    rows, resources, resource_rows = build(facts, anomalies, runs, args.work)
    plots = plot(args.out, args.work, runs, facts)
    write_markdown(args.out + ".md", facts, anomalies, runs, rows, resources, resource_rows, plots)

    def clean(r):
        return {k: v for k, v in r.items() if k != "result"} | {"result": r["result"]}
    report = {
        "facts": facts["all"],
        "systems": {s: {k: v for k, v in facts.get(s, {}).items()} for s in SYSTEMS},
        "medians": rows,
        "resources": resources,
        "resource_medians": resource_rows,
        "anomalies": anomalies,
        "plots": [os.path.basename(p) for p in plots],
        "runs": [clean(r) for r in runs],
    }
    with open(args.out + ".json", "w") as f:
        json.dump(report, f, indent=1, sort_keys=False)
        f.write("\n")
    print(f"compare_report: wrote {args.out}.json, {args.out}.md"
          + "".join(", " + p for p in plots))


if __name__ == "__main__":
    main()
