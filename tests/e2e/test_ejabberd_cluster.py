"""A fleet across a two-node ejabberd cluster (issue 11, "The cluster").

Why this exists: a fleet that outgrows one server moves to an ejabberd
cluster, where the operator and its agents are connected to different
Erlang nodes.  Device lists, bundles and messages then cross the cluster;
this checks that one signed job from an operator on node A reaches agents
on node A and on node B, and that every result comes back to the operator.
It fails when PEP or message routing only works within one node, or when
an agent on node B never becomes reachable."""

import os

from agentkit import Kit

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
