#!/usr/bin/python3
"""Agent CPU per job, one in flight, for comparing agent builds (issue 13).

The whole-path bench (run.py --only path) prints the agent's CPU per job
among many other figures and takes minutes; comparing a change needs the
one figure, several rounds, before and after alternately on a shared
machine.  This starts one bench Prosody and one deployment (path_suite's
settings), then for each round and each given moonwire binary in turn
starts the agent with that binary, runs `path_bench latency` (one job in
flight) and prints the agent process's user+system CPU (from
/proc/PID/stat) per job, and the medians of its reply-sent stages.

  python3 tests/bench/agent_cpu.py --moonwire A [--moonwire B ...] \
      [--n 1000] [--rounds 3] [--strace FILE]

(With --strace the first round's CPU figures include strace's cost: its
use is the count of system calls per job, which load does not change.)
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import path_suite as ps  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moonwire", action="append", required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--durability", default="full", choices=("full", "normal"))
    ap.add_argument("--strace", default=None, help="count the agent's system calls "
                    "(strace -c) in the first round of each binary into FILE.N")
    ap.add_argument("--perf", default=None, help="perf record the agent of the first binary "
                    "in the first round into this file")
    args = ap.parse_args()
    build = os.path.join(ps.ROOT, "build")
    exe = ps.build_path_bench(build)
    work = tempfile.mkdtemp(prefix="agentcpu-", dir=os.path.join(build, "bench"))
    srv = ps.Prosody(os.path.join(work, "prosody"), **ps.BENCH_PROSODY)
    srv.start()
    try:
        kit = ps.Kit(os.path.abspath(args.moonwire[0]), srv, os.path.join(work, "kit"))
        op = kit.operator("op0")
        ag = kit.agent("agent00")
        ag.settings.update({"rate_limit": "0", "durability": args.durability})
        ag.allow(op)
        kit.trust(ag, op)
        res = {m: [] for m in args.moonwire}
        for r in range(args.rounds):
            for m in args.moonwire:
                kit.moonwire = os.path.abspath(m)
                ag.start()
                perf = None
                if args.perf and r == 0 and m == args.moonwire[0]:
                    import subprocess
                    # cpu-clock: this VM has no hardware counters; DWARF
                    # unwinding: the build keeps no frame pointers
                    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock",
                                             "--call-graph", "dwarf,16384", "-o", args.perf,
                                             "-p", str(ag.proc.pid)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(0.5)
                tracer = None
                if args.strace and r == 0:
                    import subprocess
                    tracer = subprocess.Popen(["strace", "-c", "-o", "%s.%d" % (
                        args.strace, args.moonwire.index(m)), "-p", str(ag.proc.pid)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(0.5)
                c0 = ps.cpu_seconds(ag.proc.pid)
                objs, err, rc = ps.run_json([exe, "latency", "--op", op.conf, "--to", ag.jid,
                                             "--n", str(args.n), "--warmup", str(args.warmup)],
                                            timeout=600)
                c1 = ps.cpu_seconds(ag.proc.pid)
                if tracer is not None:
                    import signal
                    tracer.send_signal(signal.SIGINT)
                    tracer.wait(30)
                if perf is not None:
                    import signal
                    perf.send_signal(signal.SIGINT)
                    perf.wait(30)
                time.sleep(0.2)
                st = ps.agent_stages(ag)
                ag.stop()
                lat = ps.find(objs, "latency") or {}
                per = (c1 - c0) / (args.n + args.warmup) * 1e6
                stages = {k: ps.med([s[k] for s in st.values() if k in s][-args.n:])
                          for k in ps.STAGES}
                res[m].append(per)
                print(f"round {r} {m}: agent CPU/job {per:.0f} us, p50 {lat.get('p50_us')} us, "
                      f"load {os.getloadavg()[0]:.1f}, stages "
                      + " ".join(f"{k}={v}" for k, v in stages.items()), flush=True)
                ag.log.clear() if hasattr(ag.log, "clear") else None
        for m in args.moonwire:
            print(f"{m}: median {statistics.median(res[m]):.0f} us over {len(res[m])} "
                  f"rounds: " + ", ".join(f"{v:.0f}" for v in res[m]))
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
