#!/usr/bin/python3
"""A fleet of moonwire agents for the fleet benchmark and the start-up
storm (issue 11): hundreds to a thousand agents of one operator on one
machine, set up in parallel.

Why this exists: agentkit.Kit sets up one agent at a time the way a user
would (six processes per trust pair); a thousand agents need the same
deployment -- accounts, identities, trust both ways, one allowed signer and
policy each -- in minutes, not an hour.  Accounts come from in-band
registration on loopback (prosody.register_inband), the operator's
fingerprint is read once, and each agent costs three `moonwire` runs
(its fingerprint, its trust in the operator, the operator's trust in it),
run by a small pool of threads.

    fleet = Fleet(kit, op, 1000, servers=[srv])    # or a cluster's nodes
    fleet.setup()                      # accounts, identities, trust
    fleet.start()                      # every agent at once: the storm
    fleet.wait_published(timeout=600)  # {jid: seconds to omemo-published}
    fleet.pss_kib()                    # PSS of each agent's process tree
"""

import concurrent.futures
import os
import re
import subprocess
import tempfile
import time

from agentkit import run

FP_RE = re.compile(r"\b([0-9a-f]{8}(?:-[0-9a-f]{8}){7})\b")


def fingerprint_of(moonwire, conf):
    out = run([moonwire, "fingerprint", "-c", conf]).stdout
    m = FP_RE.search(out)
    if not m:
        raise RuntimeError("no fingerprint in: %r" % out)
    return m.group(1)


def tree_pids(pid):
    """pid and its live descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def pss_kib(pid):
    """Proportional set size of one process (smaps_rollup), KiB."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


GNU_TIME = "/usr/bin/time"


def run_peak_rss(cmd, **popen_kw):
    """Runs cmd and returns (returncode, rusage, peak RSS of cmd's own
    process in KiB).

    Why not wait4's ru_maxrss of the child: Linux keeps a process's peak
    RSS across execve, and the forked child starts as a copy of this
    Python process, so the child's ru_maxrss is at least the *caller's*
    RSS at fork time (a bench process holding 1,000 agents' logs made a
    10 MiB operator look like 160 MiB).  GNU time (Debian `time`) is a
    ~1 MiB process that forks the command itself and reports the child's
    own high-water mark (VmHWM), deterministically, after it exited."""
    if not os.access(GNU_TIME, os.X_OK):
        raise RuntimeError("%s (Debian package `time`) is needed to measure "
                           "peak RSS" % GNU_TIME)
    fd, path = tempfile.mkstemp(prefix="maxrss-")
    os.close(fd)
    try:
        p = subprocess.Popen([GNU_TIME, "-q", "-f", "%M", "-o", path, "--"] + list(cmd),
                             **popen_kw)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        with open(path) as f:
            lines = [l for l in f.read().split() if l.strip()]
        peak = int(lines[-1]) if lines and lines[-1].isdigit() else None
    finally:
        os.unlink(path)
    return p.returncode, ru, peak


class Fleet:
    """n agents named PREFIX0000... of operator op.  servers: the XMPP
    servers (nodes) agents connect to, round robin; settings: extra agent
    configuration keys (e.g. idle_workers)."""

    def __init__(self, kit, op, n, prefix="fa", servers=None, settings=None,
                 policy_text=None, threads=4):
        self.kit = kit
        self.op = op
        self.n = n
        self.prefix = prefix
        self.servers = servers or [kit.prosody]
        self.settings = dict(settings or {})
        self.policy_text = policy_text
        self.threads = threads
        self.agents = []
        self.started_at = None

    # ------------------------------------------------------------ set-up

    def _setup_one(self, i, op_fp):
        a = self.kit.agent("%s%04d" % (self.prefix, i))
        a.server = self.servers[i % len(self.servers)]
        a.settings.update(self.settings)
        if self.policy_text is not None:
            a.policy_text = self.policy_text
        a.allow(self.op)
        a.write_conf()
        fp = fingerprint_of(self.kit.moonwire, a.conf)
        run([self.kit.moonwire, "trust", "-c", a.conf, self.op.jid, op_fp])
        return i, a, fp

    def setup(self):
        """Accounts, identities and trust both ways for every agent; the
        operator's trust decisions are written one at a time (one
        database), the agents' in parallel."""
        self.op.write_conf()
        op_fp = fingerprint_of(self.kit.moonwire, self.op.conf)
        done = {}
        with concurrent.futures.ThreadPoolExecutor(self.threads) as ex:
            futs = [ex.submit(self._setup_one, i, op_fp) for i in range(self.n)]
            for f in concurrent.futures.as_completed(futs):
                i, a, fp = f.result()
                done[i] = (a, fp)
        self.agents = [done[i][0] for i in range(self.n)]
        for a, fp in (done[i] for i in range(self.n)):
            run([self.kit.moonwire, "trust", "-c", self.op.conf, a.jid, fp])
        return self

    def targets_file(self, path, agents=None):
        with open(path, "w") as f:
            f.write("# %d agents of the fleet benchmark\n" % len(agents or self.agents))
            for a in agents or self.agents:
                f.write(a.jid + "\n")
        return path

    # ------------------------------------------------------------ running

    def start(self):
        """Every agent at once (no waiting between them): the storm."""
        self.started_at = time.monotonic()
        for a in self.agents:
            a.start(wait=False)
        return self

    def wait_published(self, timeout=600.0):
        """Seconds from start() until each agent logged omemo-published;
        agents that did not within timeout are missing from the answer."""
        deadline = self.started_at + timeout
        seen = {}
        pat = re.compile(r"omemo-published device=\d+")
        while time.monotonic() < deadline and len(seen) < len(self.agents):
            for a in self.agents:
                if a.jid in seen:
                    continue
                if any(pat.search(x) for x in a.log):
                    seen[a.jid] = time.monotonic() - self.started_at
            time.sleep(0.5)
        return seen

    def pss_kib(self):
        """{jid: PSS of the agent's process tree (agent, supervisor,
        zygote, idle workers) in KiB}, for running agents."""
        out = {}
        for a in self.agents:
            if a.proc is not None and a.proc.poll() is None:
                out[a.jid] = sum(pss_kib(p) for p in tree_pids(a.proc.pid))
        return out

    def tree_sizes(self):
        return {a.jid: len(tree_pids(a.proc.pid)) for a in self.agents
                if a.proc is not None and a.proc.poll() is None}

    def stop(self):
        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            list(ex.map(lambda a: a.stop(timeout=30), self.agents))
