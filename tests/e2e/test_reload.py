"""SIGHUP (`systemctl reload`) re-reads the policy and allowed_signers.

Why this exists: an owner who adds a grant or an operator key must not have
to restart the agent (a restart interrupts running jobs); and a reload with
a typo must never leave the agent with no policy or a half-read one.  So:
a reload takes effect for the next job, a running job keeps the grants it
started with, and a file with an error keeps the previous configuration
and names FILE:LINE in the log.
"""

import os
import re
import signal

from test_agent import one, still_serves, write


def reload(agent):
    agent.proc.send_signal(signal.SIGHUP)


def test_reload_applies_to_the_next_job(deploy):
    d = deploy
    d.agent.policy_text = d.agent.policy_text.replace("  sys\n", "", 1)
    d.agent.start()
    prog = d.program("info.lua", "return sys.info().cpus > 0\n")
    p, res = d.alice.send(d.agent, prog)
    r = one(res)
    assert r["status"] == "error" and "sys not granted" in r["error"], r
    # the owner grants sys and reloads
    with open(d.agent.policy) as f:
        text = f.read()
    write(d.agent.policy, text.replace("profile default\n", "profile default\n  sys\n", 1))
    reload(d.agent)
    line = d.agent.wait_log(r"moonwire-agent: reloaded ")
    assert "policy=%s" % d.agent.policy in line
    p, res = d.alice.send(d.agent, prog)
    r = one(res)
    assert r["status"] == "ok" and r["values"] == [True], r


def test_reload_with_an_error_keeps_the_previous_files(deploy):
    d = deploy
    d.agent.start()
    with open(d.agent.policy) as f:
        good = f.read()
    write(d.agent.policy, good + "profle typo\n")
    reload(d.agent)
    line = d.agent.wait_log(r"moonwire-agent: reload-failed ")
    n = len(good.splitlines()) + 1
    assert "%s:%d: " % (d.agent.policy, n) in line, line
    assert "previous policy and allowed_signers stay in force" in line
    # a grant that would reach the agent's own files is refused the same way
    write(d.agent.policy, good.replace("profile default\n",
                                       "profile default\n  read %s\n" % d.agent.state, 1))
    reload(d.agent)
    line = d.agent.wait_log(r"moonwire-agent: reload-failed ")
    assert "is the agent's state directory" in line, line
    # the agent kept serving under the old policy
    still_serves(d)
    assert d.agent.running()


def test_a_running_job_keeps_its_grants(deploy):
    d = deploy
    d.agent.start()
    target = os.path.join(d.out, "late")
    prog = d.program("late.lua", 'sleep(2)\nfs.write("%s", "x")\nreturn "wrote"\n' % target)
    proc = d.alice.send_async(d.agent, prog)
    d.agent.wait_log(r"accepted job=")
    with open(d.agent.policy) as f:
        text = f.read()
    write(d.agent.policy, re.sub(r"  write \S+\n", "", text))
    reload(d.agent)
    d.agent.wait_log(r"moonwire-agent: reloaded ")
    rc, res, err = d.alice.collect(proc)
    r = one(res)
    assert r["status"] == "ok" and r["values"] == ["wrote"], (r, err)
    assert os.path.exists(target)
    # the next job runs under the new policy: no write grant
    os.unlink(target)
    p, res = d.alice.send(d.agent, prog)
    r = one(res)
    assert r["status"] == "error" and "capability denied: fs.write" in r["error"], r
    assert not os.path.exists(target)
