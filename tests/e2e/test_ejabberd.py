"""End-to-end through ejabberd 23.01 (issue 11): ejabberd refuses the
publish-options field pubsub#max_items with resource-constraint "Unknown
field"; the agent must publish again with access_model only, confirm that
its device list and bundle are served (`omemo-published`), and answer a job
sent by an operator through the same server.  Fails on code that only
retries on precondition-not-met: the agent never publishes, the operator
finds no device and the agent logs nothing."""

import os
import re

import pytest

from agentkit import Kit

POLICY = """\
limits wall=10s program=16K
profile default
  sys
"""


@pytest.fixture
def ejabberd_kit(request, moonwire_bin, ejabberd, tmp_path):
    k = Kit(moonwire_bin, ejabberd, tmp_path / "kit")
    try:
        yield k
    finally:
        k.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is None or rep.failed:
            for a in k.agents:
                print("\n=== agent %s log\n%s" % (a.jid, "\n".join(a.log[-60:])))


def test_job_through_ejabberd(ejabberd_kit):
    kit = ejabberd_kit
    agent = kit.agent()
    alice = kit.operator("alice")
    agent.policy_text = POLICY
    agent.allow(alice)
    kit.trust(agent, alice)
    agent.start()
    line = agent.wait_log(r"omemo-published device=\d+", timeout=30)
    connected = [x for x in agent.log if " connected jid=" in x]
    device = re.search(r"device=(\d+)", connected[0]).group(1)
    assert line.endswith("omemo-published device=%s" % device), (line, connected)
    # ejabberd's refusal of the unknown publish-option is logged, not hidden
    assert any("omemo-publish-refused" in x and "pubsub#max_items" in x
               for x in agent.log), agent.log
    prog = os.path.join(kit.workdir, "hello.lua")
    with open(prog, "w") as f:
        f.write('print("hi from ejabberd")\nreturn 42\n')
    p, res = alice.send(agent, prog)
    assert p.returncode == 0, p.stderr
    assert len(res) == 1, (p.stdout, p.stderr)
    r = res[0]
    assert r["status"] == "ok" and r["from"] == agent.jid, r
    assert r["values"] == [42] and r["output"] == "hi from ejabberd\n", r
    assert not any("omemo-publish-failed" in x for x in agent.log), agent.log
