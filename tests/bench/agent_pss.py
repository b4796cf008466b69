#!/usr/bin/python3
"""The footprint of one agent tree (issue 11, item 5): PSS of the agent,
its sandbox supervisor, the zygote and the idle workers, read from
/proc/PID/smaps_rollup, for a few idle agents connected to the test
Prosody -- with the default pool (idle_workers = parallel = 2) and with
idle_workers = 0.

Why PSS: the processes of one tree (and of all agents) share the
moonwire binary's and the libraries' pages; PSS charges each shared page
to its sharers in equal parts, so the sum over every process of N agents
is what N agents really cost, and dividing by N is the per-agent figure.

    /usr/bin/python3 tests/bench/agent_pss.py --moonwire build/moonwire [--agents 10]

Prints one table; a measurement, not a test (nothing is asserted).
Must run as root (smaps_rollup of the workers, which run as nobody).
"""

import argparse
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "interop"))

from agentkit import Kit  # noqa: E402
from prosody import Prosody  # noqa: E402


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def tree(pid):
    out = [pid]
    for c in children(pid):
        out += tree(c)
    return out


def pss_kb(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def measure(kit, n, idle_workers):
    agents = []
    for i in range(n):
        a = kit.agent("pss%s%d" % (idle_workers, i))
        if idle_workers is not None:
            a.settings["idle_workers"] = str(idle_workers)
        agents.append(a.start())
    for a in agents:
        a.wait_log(r"omemo-published", timeout=60)
    time.sleep(2)           # the pools are full, nothing is starting
    rows = {"agent": 0, "supervisor": 0, "zygote": 0, "workers": 0}
    nworkers = 0
    for a in agents:
        sup = int(re.search(r"supervisor=(\d+)", a.grep(r"started jid=")[-1]).group(1))
        rows["agent"] += pss_kb(a.proc.pid)
        rows["supervisor"] += pss_kb(sup)
        for z in children(sup):
            rows["zygote"] += pss_kb(z)
            for w in tree(z)[1:]:
                rows["workers"] += pss_kb(w)
                nworkers += 1
    for a in agents:
        a.stop()
    return {k: v / n for k, v in rows.items()}, nworkers / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moonwire", required=True)
    ap.add_argument("--agents", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv = Prosody(os.path.join(tmp, "prosody"))
        srv.start()
        try:
            kit = Kit(os.path.abspath(args.moonwire), srv, os.path.join(tmp, "kit"))
            print("per-agent PSS (KiB), mean over %d idle agents on one Prosody" % args.agents)
            print("%-22s %8s %10s %8s %8s %8s" % ("pool", "agent", "supervisor", "zygote",
                                                   "workers", "total"))
            for label, iw in (("default (2 idle)", None), ("idle_workers = 1", 1),
                              ("idle_workers = 0", 0)):
                r, nw = measure(kit, args.agents, iw)
                print("%-22s %8.0f %10.0f %8.0f %8.0f %8.0f   (%.1f workers/agent)" % (
                    label, r["agent"], r["supervisor"], r["zygote"], r["workers"],
                    sum(r.values()), nw))
            kit.close()
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
