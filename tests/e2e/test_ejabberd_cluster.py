"""A fleet across a two-node ejabberd cluster (issue 11, "The cluster").

Why this exists: a fleet that outgrows one server moves to an ejabberd
cluster, where the operator and its agents are connected to different
Erlang nodes.  Device lists, bundles and messages then cross the cluster;
this checks that one signed job from an operator on node A reaches agents
on node A and on node B, and that every result comes back to the operator.
It fails when PEP or message routing only works within one node, or when
an agent on node B never becomes reachable."""

import json
import os
import re
import time

from agentkit import Kit, run

POLICY = """\
limits wall=10s program=16K
profile default
  sys
"""


def test_one_job_to_agents_on_both_nodes(moonwire_bin, ejabberd_cluster, tmp_path):
    cl = ejabberd_cluster
    assert len(cl.members()) == 2
    kit = Kit(moonwire_bin, cl, tmp_path / "kit")
    try:
        alice = kit.operator("alice")       # on node A
        agents = []
        for i in range(4):
            a = kit.agent("agent%d" % i)
            a.server = cl.nodes[i % 2]      # agent0, agent2 on A; agent1, agent3 on B
            a.policy_text = POLICY
            a.allow(alice)
            kit.trust(a, alice)
            agents.append(a)
        for a in agents:
            a.start()
        for a in agents:
            a.wait_log(r"omemo-published device=\d+", timeout=60)
        for a in agents:
            with open(a.conf) as f:
                assert "port = %d" % a.server.port in f.read()
        prog = os.path.join(kit.workdir, "where.lua")
        with open(prog, "w") as f:
            f.write('return "answered"\n')
        p, res = alice.send(agents, prog, timeout="60s")
        assert p.returncode == 0, (p.stdout, p.stderr)
        by_jid = {r["from"]: r for r in res if "from" in r}
        assert set(by_jid) == {a.jid for a in agents}, (p.stdout, p.stderr)
        for a in agents:
            r = by_jid[a.jid]
            assert r["status"] == "ok" and r["values"] == ["answered"], r
            # each agent ran it exactly once
            job = "job=%s " % r["job_id"]
            assert sum(" accepted " in x and job in x for x in a.log) == 1, a.log[-20:]
    finally:
        kit.close()
        for a in kit.agents:
            print("\n=== agent %s log\n%s" % (a.jid, "\n".join(a.log[-30:])))


def test_node_dies_during_a_fan_out(moonwire_bin, ejabberd_cluster, tmp_path):
    """Node B is killed (SIGKILL, no goodbye) while a fan-out's jobs run.
    The agents that were on B fail over to node A (their `failover`
    setting) and deliver the results they journaled; the operator's `send`
    stops waiting first (its timeout is shorter than the job), says which
    targets did not return and how to collect them, and `moonwire results`
    later shows every target ok.  Nothing is lost and no job runs twice."""
    cl = ejabberd_cluster
    a_node, b_node = cl.nodes
    kit = Kit(moonwire_bin, cl, tmp_path / "kit")
    try:
        alice = kit.operator("alice")
        agents = []
        for i in range(4):
            a = kit.agent("agent%d" % i)
            a.server = cl.nodes[i % 2]
            if a.server is b_node:
                a.settings["failover"] = "%s:%d" % (a_node.host, a_node.port)
            a.policy_text = POLICY + "  sleep 10s\n"
            a.allow(alice)
            kit.trust(a, alice)
            agents.append(a)
        on_b = [a for a in agents if a.server is b_node]
        for a in agents:
            a.start()
        for a in agents:
            a.wait_log(r"omemo-published device=\d+", timeout=60)
        prog = os.path.join(kit.workdir, "slow.lua")
        with open(prog, "w") as f:
            f.write('sleep(4)\nreturn "survived"\n')
        proc = alice.send_async(agents, prog, timeout="2s")
        for a in agents:
            a.wait_log(r"accepted job=", timeout=30)
        b_node.kill()
        rc, res, err = alice.collect(proc, timeout=60)
        assert rc == 6, (res, err)
        m = re.search(r"moonwire results -c \S+ ([0-9a-f]{32})", err)
        assert m, err
        job = m.group(1)
        # the agents of node B find node A
        for a in on_b:
            a.wait_log(r"connecting .*server=%s:%d" % (re.escape(a_node.host),
                                                       a_node.port), timeout=60)
            a.wait_log(r" connected jid=", timeout=60)
        # every result comes back later, each job ran once
        deadline = time.time() + 60
        while True:
            r = run([moonwire_bin, "results", "-c", alice.conf, "--json", "--wait", "5s",
                     job], check=False)
            objs = [json.loads(x) for x in r.stdout.splitlines()]
            per = {o["from"]: o for o in objs if "from" in o}
            if all(per.get(a.jid, {}).get("status") == "ok" for a in agents) or \
                    time.time() > deadline:
                break
        for a in agents:
            assert per[a.jid]["status"] == "ok" and per[a.jid]["values"] == ["survived"], \
                (a.jid, objs, r.stderr)
            assert sum(" accepted " in x and "job=%s " % job in x for x in a.log) == 1, \
                a.log[-30:]
        summary = [o for o in objs if o.get("summary")]
        assert summary and summary[0]["ok"] == 4, objs
        assert r.returncode == 0, r.stderr
    finally:
        kit.close()
        for a in kit.agents:
            print("\n=== agent %s log\n%s" % (a.jid, "\n".join(a.log[-30:])))
