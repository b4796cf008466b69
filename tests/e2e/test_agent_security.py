"""End to end (issue 10, "security as deployed"): the agent's own files,
its privileges, unverified devices and duplicate envelopes.

Why this exists: each test here pins one defence of spec/threat-model.md
that only shows with the real binary, a real Prosody and real peers: the
capabilities the running agent process really holds, what a policy may not
grant, what an unverified device of a policy JID can make the agent spend,
and who receives a stored result.
"""

import os
import re
import sqlite3
import time

from agentkit import run


def one(results):
    assert len(results) == 1, results
    return results[0]


def caps(pid):
    """The capability sets of a process from /proc/PID/status, as ints."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                out[k] = int(v.strip(), 16)
    return out


# ------------------------------------------------- capabilities of the agent

def test_agent_process_holds_no_capability(deploy):
    """Whatever the agent was started with (root here: every capability; the
    shipped unit: four ambient ones), once the supervisor runs the agent
    process itself holds none, and still serves jobs."""
    d = deploy
    before = caps(os.getpid())
    d.agent.start()
    pid = d.agent.proc.pid
    c = caps(pid)
    assert c["CapPrm"] == 0 and c["CapEff"] == 0, c
    assert c["CapAmb"] == 0 and c["CapInh"] == 0, c
    started = d.agent.grep(r"moonwire-agent: started ")
    assert started and "capabilities=none" in started[0], started
    if before["CapEff"] != 0:
        # the test itself is privileged: the agent had something to drop
        assert before["CapPrm"] != 0
    p, res = d.alice.send(d.agent, d.marker_job("caps"))
    r = one(res)
    assert p.returncode == 0 and r["status"] == "ok", (r, p.stderr)
    # after a job too
    c = caps(pid)
    assert c["CapPrm"] == 0 and c["CapEff"] == 0 and c["CapAmb"] == 0 and c["CapInh"] == 0, c
