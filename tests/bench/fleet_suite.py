#!/usr/bin/python3
"""Fleet figures for `make bench` (issue 11): one operator, N agents
(default 1,000) on this machine, through Prosody and through a two-node
ejabberd cluster.

run_fleet() sets up the fleet (tests/lib/fleet.py), starts every agent at
once and measures:

  * the start-up storm: seconds until each agent logged omemo-published
    (its device list names it and its bundle is served), and how many never
    did within the time allowed;
  * the per-agent footprint: PSS of each agent's process tree (agent,
    supervisor, zygote, idle workers);
  * first contact: one signed job to every agent with no session yet
    (device lists and bundles fetched, sessions built): time until the
    send exits with every result back, ok / not ok / lost;
  * established: the same job again over the sessions;
  * the operator's CPU (wait4 rusage) and peak RSS (its own VmHWM, through
    GNU time: fleet.run_peak_rss says why not wait4's ru_maxrss) for each
    send, against the 64 MiB target;
  * the server's CPU per agent-job during the established send (its whole
    process tree);
  * printing the summary of N targets again from the job table
    (`moonwire results JOB`), when the build has it.

Returns (rows, raw) like run.py's other parts.
"""
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from agentkit import Kit  # noqa: E402
from fleet import Fleet, run_peak_rss  # noqa: E402
from prosody import Prosody  # noqa: E402

import path_suite  # noqa: E402

TARGETS = {
    "established_all_back_s": 5.0,
    "first_contact_all_back_s": 20.0,
    "operator_rss_mib": 64.0,
    "summary_s": 1.0,
}
PROGRAM = "return 1+1\n"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def timed_send(moonwire, conf, targets_file, agents, program, timeout_s, srv_pid):
    """One `moonwire send --json` to the fleet; wall time, rusage, results."""
    cmd = [moonwire, "send", "-c", conf, "--timeout", "%ds" % timeout_s, "--json"]
    if targets_file is not None:
        cmd += ["--targets", targets_file]
    else:
        for a in agents:
            cmd += ["--to", a.jid]
    cmd.append(program)
    out_path = program + ".out"
    s0 = path_suite.tree_cpu_seconds(srv_pid)
    m0 = machine_cpu_seconds()
    h0 = harness_cpu_seconds()
    t0 = time.monotonic()
    with open(out_path, "w") as out, open(out_path + ".err", "w") as err:
        rc, ru, peak_kib = run_peak_rss(cmd, stdout=out, stderr=err,
                                        stdin=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    m1 = machine_cpu_seconds()
    h1 = harness_cpu_seconds()
    s1 = path_suite.tree_cpu_seconds(srv_pid)
    with open(out_path) as f:
        text = f.read()
    with open(out_path + ".err") as f:
        err_text = f.read()
    objs = []
    for line in text.splitlines():
        try:
            import json
            objs.append(json.loads(line))
        except ValueError:
            pass
    per_target = [o for o in objs if "from" in o or "target" in o or "jid" in o]
    ok = sum(1 for o in per_target if o.get("status") == "ok")
    job_ids = {o.get("job_id") for o in objs if o.get("job_id")}
    return {
        "wall_s": wall, "rc": rc, "ok": ok, "results": len(per_target),
        "operator_cpu_s": ru.ru_utime + ru.ru_stime, "operator_maxrss_kib": peak_kib,
        "server_cpu_s": (s1 - s0) if s0 is not None and s1 is not None else None,
        "machine_cpu_s": m1 - m0,
        "harness_cpu_s": h1 - h0,
        "job_ids": sorted(j for j in job_ids if j), "stderr_tail": err_text[-400:],
    }


def machine_cpu_seconds():
    """CPU seconds the whole machine has spent busy (all cores, /proc/stat):
    beside wall time x cores, it says whether a send was CPU-bound."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def harness_cpu_seconds():
    """CPU seconds of this process (every thread): what the bench itself
    takes from the cores the fleet runs on."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def send_supports(moonwire, flag):
    p = subprocess.run([moonwire, "send", "--help"], capture_output=True, text=True)
    return flag in (p.stdout + p.stderr)


def run_fleet(build_dir, moonwire, args, server="prosody"):
    n = args.fleet_agents
    raw = {"server": server, "agents": n}
    base = os.path.join(build_dir, "bench")
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fleet-", dir=base)
    if server == "prosody":
        srv = Prosody(os.path.join(work, "prosody"), log_level="warn", ibr=True,
                      extra_config="network_settings = { nagle = false }")
        nodes = None
    else:
        from ejabberd import EjabberdCluster
        srv = EjabberdCluster(2, os.path.join(work, "ejabberd"))
        nodes = srv.nodes
    fleet = None
    try:
        log(f"bench: fleet: starting {server}")
        srv.start()
        srv_pid = srv.proc.pid
        kit = Kit(moonwire, srv, os.path.join(work, "kit"))
        op = kit.operator("fleetop")
        t = time.monotonic()
        log(f"bench: fleet: setting up {n} agents")
        settings = {"rate_limit": "0"}
        if args.fleet_idle_workers is not None:
            settings["idle_workers"] = str(args.fleet_idle_workers)
        fleet = Fleet(kit, op, n, servers=nodes, settings=settings,
                      policy_text="limits wall=10s\nprofile default\n  sys\n").setup()
        raw["setup_s"] = time.monotonic() - t
        log("bench: fleet: start-up storm")
        fleet.start()
        pub = fleet.wait_published(timeout=args.fleet_storm_timeout)
        times = sorted(pub.values())
        raw["storm"] = {
            "published": len(pub), "missing": n - len(pub),
            "p50_s": times[len(times) // 2] if times else None,
            "all_s": times[-1] if len(times) == n else None,
            "exited": sum(1 for a in fleet.agents if a.proc.poll() is not None),
        }
        time.sleep(2.0)
        pss = sorted(fleet.pss_kib().values())
        raw["pss_kib"] = {"median": pss[len(pss) // 2] if pss else None,
                          "max": pss[-1] if pss else None, "total": sum(pss),
                          "agents": len(pss)}
        sizes = sorted(fleet.tree_sizes().values())
        raw["tree_processes_median"] = sizes[len(sizes) // 2] if sizes else None
        prog = os.path.join(work, "job.lua")
        with open(prog, "w") as f:
            f.write(PROGRAM)
        tf = fleet.targets_file(os.path.join(work, "targets")) \
            if send_supports(moonwire, "--targets") else None
        for kind in ("first_contact", "established"):
            log(f"bench: fleet: {kind} to {n} agents")
            raw[kind] = timed_send(moonwire, op.conf, tf, fleet.agents, prog,
                                   args.fleet_send_timeout, srv_pid)
        est = raw["established"]
        if est.get("server_cpu_s") is not None:
            raw["server_cpu_per_agent_job_us"] = est["server_cpu_s"] / n * 1e6
        sub = subprocess.run([moonwire, "results", "--help"], capture_output=True, text=True)
        if sub.returncode == 0 and est.get("job_ids"):
            t = time.monotonic()
            p = subprocess.run([moonwire, "results", "-c", op.conf, est["job_ids"][0]],
                               capture_output=True, text=True, timeout=120)
            raw["summary"] = {"wall_s": time.monotonic() - t, "rc": p.returncode,
                              "lines": len(p.stdout.splitlines())}
    finally:
        if fleet is not None:
            log("bench: fleet: stopping agents")
            fleet.stop()
        srv.stop()
        if not args.keep_path_workdir:
            shutil.rmtree(work, ignore_errors=True)
    return rows_for(raw), raw


def fmt(v, unit="", prec=1):
    return path_suite.fmt(v, unit, prec)


def verdict(value, target, higher_is_better=False):
    return path_suite.verdict(value, target, higher_is_better)


def rows_for(raw):
    name = path_suite.SERVER_NAMES.get(raw["server"], raw["server"])
    if raw["server"] == "ejabberd":
        name += " (2-node cluster)"
    n = raw["agents"]
    rows = [(f"FLEET of {n} agents through {name} (issue 11)", "", "", "")]
    st = raw.get("storm") or {}
    rows.append(("start-up storm: published / missing / exited",
                 f"{st.get('published')} / {st.get('missing')} / {st.get('exited')}",
                 "missing 0", "met" if st.get("missing") == 0 else "not met"))
    rows.append(("  seconds until published: median / all",
                 f"{fmt(st.get('p50_s'))} / {fmt(st.get('all_s'))} s", "", ""))
    pss = raw.get("pss_kib") or {}
    rows.append((f"per-agent PSS (agent tree, {raw.get('tree_processes_median')} processes): "
                 "median / max / total",
                 f"{fmt((pss.get('median') or 0) / 1024, '', 2)} / "
                 f"{fmt((pss.get('max') or 0) / 1024, '', 2)} / "
                 f"{fmt((pss.get('total') or 0) / 1024, '', 0)} MiB", "", ""))
    for kind, label, key in (("first_contact", "first contact", "first_contact_all_back_s"),
                             ("established", "established", "established_all_back_s")):
        s = raw.get(kind) or {}
        all_back = s.get("wall_s") if s.get("ok") == n else None
        rows.append((f"{label}: one job to {n} agents, all results back",
                     fmt(s.get("wall_s"), " s", 2), f"<= {TARGETS[key]:.0f} s",
                     verdict(all_back, TARGETS[key])))
        rows.append(("  ok / results / exit status",
                     f"{s.get('ok')} / {s.get('results')} / {s.get('rc')}", "", ""))
        rss = (s.get("operator_maxrss_kib") or 0) / 1024
        rows.append(("  operator CPU / peak RSS",
                     f"{fmt(s.get('operator_cpu_s'), ' s', 2)} / {fmt(rss, ' MiB', 1)}",
                     "RSS <= 64 MiB", verdict(rss or None, TARGETS["operator_rss_mib"])))
        if s.get("machine_cpu_s") is not None and s.get("wall_s"):
            cores = os.cpu_count() or 1
            rows.append(("  whole machine CPU / busy share of its cores / bench's own",
                         f"{fmt(s['machine_cpu_s'], ' s', 2)} / "
                         f"{fmt(100 * s['machine_cpu_s'] / (s['wall_s'] * cores), ' %', 0)} / "
                         f"{fmt(s.get('harness_cpu_s'), ' s', 2)}",
                         "", ""))
    rows.append((f"{name} CPU per agent-job (established)",
                 fmt(raw.get("server_cpu_per_agent_job_us"), " us"), "", ""))
    sm = raw.get("summary")
    if sm:
        rows.append((f"summary of {n} targets again (moonwire results, incl. login)",
                     fmt(sm.get("wall_s"), " s", 2), "<= 1 s",
                     verdict(sm.get("wall_s") if sm.get("rc") == 0 else None,
                             TARGETS["summary_s"])))
    return rows
