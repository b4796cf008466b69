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
import time

from agentkit import json_lines, run


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


# ------------------------------------------- a stored result goes back only
# to the device the journal recorded for the job

def second_device(d, op, name):
    """Another moonwire device of op's account (own identity database),
    verified by the agent and verifying the agent.  Returns its conf."""
    dev_dir = os.path.join(d.kit.workdir, name)
    os.makedirs(dev_dir, exist_ok=True)
    conf = os.path.join(dev_dir, "account.conf")
    with open(conf, "w") as f:
        f.write(op.account_lines().replace(op.db, os.path.join(dev_dir, "identity.db")))
    out = run([d.kit.moonwire, "fingerprint", "-c", conf]).stdout
    fp = re.search(r"\b([0-9a-f]{8}(?:[- ]?[0-9a-f]{8}){7})\b", out).group(1)
    d.agent.write_conf()
    run([d.kit.moonwire, "trust", "-c", d.agent.conf, op.jid, fp])
    run([d.kit.moonwire, "trust", "-c", conf, d.agent.jid, d.agent.fingerprint()])
    return conf


def send_envelope(d, conf, env_path, timeout):
    p = run([d.kit.moonwire, "send", "-c", conf, "--timeout", timeout, "--json",
             "--to", d.agent.jid, "--envelope", env_path], check=False, timeout=120)
    return p, json_lines(p.stdout)


def test_duplicate_result_goes_only_to_the_requesting_device(deploy):
    d = deploy
    pat = d.kit.peer("pat")                     # another verified operator
    d.agent.allow_lines.append("allow %s %s default" % (d.alice.principal, pat.jid))
    d.kit.trust_peer(d.agent, pat)
    alice2 = second_device(d, d.alice, "alice-laptop")
    d.agent.start()
    env = os.path.join(d.programs, "e1")
    with open(env, "w") as f:
        f.write(d.alice.sign(d.agent, d.marker_job("once"), extra=["--job-id", "job-77"]))
    p, res = d.alice.send(d.agent, envelope=env)
    first = one(res)
    assert p.returncode == 0 and first["status"] == "ok" and first["values"] == [1], first
    alice_dev = int(re.search(r"accepted job=job-77 from=\S+ device=(\d+)",
                              d.agent.wait_log(r"accepted job=job-77 ")).group(1))
    d.agent.wait_log(r"reply-sent job=job-77 ")
    # pat's session is built now, before alice2's first contact below uses
    # one more prekey (the agent republishes 30-150 s after a use; a key
    # exchange that picks a used prekey is still taken for 300 s)
    pat.send_empty(d.agent.jid, build=True)
    d.agent.wait_log(r"key-transport from=%s " % re.escape(pat.jid))
    # alice's second (verified) device resends the envelope: nothing back
    p, res = send_envelope(d, alice2, env, "4s")
    assert p.returncode == 6 and one(res)["status"] == "no_answer", (p.stdout, p.stderr)
    line = d.agent.wait_log(r"refused code=replay from=%s device=(\d+) job=job-77 "
                            % re.escape(d.alice.jid))
    assert int(re.search(r"device=(\d+)", line).group(1)) != alice_dev, line
    # another operator's verified device resends it: nothing back either
    with open(env) as f:
        pat.send(d.agent.jid, f.read())
    d.agent.wait_log(r"refused code=replay from=%s device=\d+ job=job-77 " % re.escape(pat.jid))
    time.sleep(2)
    assert not [e for e in pat.events("message") if e.get("sender") == d.agent.jid], \
        pat.events("message")
    assert not d.agent.grep(r"reply-sent job=job-77 to=%s" % re.escape(pat.jid))
    assert not d.agent.grep(r"duplicate job=job-77 from=%s" % re.escape(pat.jid))
    # alice's own device resends it: the stored result, and it never ran twice
    p, res = d.alice.send(d.agent, envelope=env)
    again = one(res)
    assert p.returncode == 0 and again["status"] == "ok" and again["values"] == [1], again
    d.agent.wait_log(r"duplicate job=job-77 from=%s device=%d state=done"
                     % (re.escape(d.alice.jid), alice_dev))
    assert len(d.agent.grep(r"accepted job=job-77 ")) == 1
    assert d.markers() == ["once"]


# ------------------------------------------- grants never reach the agent's files

def check(d):
    """`moonwire agent -c CONF --check` on the conf as written now."""
    return run([d.kit.moonwire, "agent", "-c", d.agent.conf, "--check"], check=False)


def test_policy_grants_never_reach_the_agents_own_files(deploy):
    d = deploy
    ag = d.agent
    real = os.path.realpath
    d.agent.write_conf()
    p = check(d)
    assert p.returncode == 0, p.stderr
    base = d.agent.policy_text
    cases = [
        # (profile line, expected message after "POLICY:LINE: ")
        ("read /", "read / would expose the agent's identity database %s" % real(ag.db)),
        ("read %s" % d.kit.workdir,
         "read %s would expose the agent's identity database %s" % (d.kit.workdir,
                                                                      real(ag.db))),
        ("write %s" % ag.state, "write %s is the agent's state directory %s"
         % (ag.state, real(ag.state))),
    ]
    # through a symlink: compared canonically
    link = os.path.join(d.kit.workdir, "innocent-looking")
    os.symlink(ag.dir, link)
    cases.append(("read %s" % link, "read %s would expose the agent's identity database %s"
                  % (link, real(ag.db))))
    # a directory inside the state directory
    inner = os.path.join(ag.state, "inner")
    os.makedirs(inner)
    cases.append(("read %s" % inner, "read %s lies inside the agent's state directory %s"
                  % (inner, real(ag.state))))
    for line, msg in cases:
        d.agent.policy_text = base + "profile sneaky\n  " + line + "\n"
        d.agent.write_conf()
        want_line = (base + "profile sneaky\n").count("\n") + 1
        p = check(d)
        assert p.returncode == 2, (line, p.stdout, p.stderr)
        assert "%s:%d: %s" % (ag.policy, want_line, msg) in p.stderr, (line, p.stderr)
    # the agent itself refuses to start with such a policy, before connecting
    d.agent.policy_text = base + "profile sneaky\n  read /\n"
    ag.write_conf()
    p = run([d.kit.moonwire, "agent", "-c", ag.conf], check=False, timeout=30)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "would expose the agent's identity database" in p.stderr, p.stderr
    assert "connecting" not in p.stderr, p.stderr
    # password_file and the configuration file are protected too
    secrets = os.path.join(d.kit.workdir, "secrets")
    os.makedirs(secrets)
    with open(os.path.join(secrets, "pw"), "w") as f:
        f.write(ag.password + "\n")
    d.agent.policy_text = base + "profile sneaky\n  read %s\n" % secrets
    ag.write_conf()
    with open(ag.conf) as f:
        conf = f.read()
    assert "password = %s\n" % ag.password in conf
    with open(ag.conf, "w") as f:
        f.write(conf.replace("password = %s\n" % ag.password,
                             "password_file = %s\n" % os.path.join(secrets, "pw")))
    p = check(d)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "read %s would expose the agent's password file %s/pw" % (
        secrets, real(secrets)) in p.stderr, p.stderr
    conf_dir = os.path.join(d.kit.workdir, "etc")
    os.makedirs(conf_dir)
    other_conf = os.path.join(conf_dir, "agent.conf")
    with open(other_conf, "w") as f:
        f.write(conf)
    with open(ag.policy, "w") as f:
        f.write(base + "profile sneaky\n  read %s\n" % conf_dir)
    p = run([d.kit.moonwire, "agent", "-c", other_conf, "--check"], check=False)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "would expose the agent's configuration file %s" % real(other_conf) in p.stderr, \
        p.stderr
    # and a harmless policy still starts and serves
    d.agent.policy_text = base
    d.agent.start()
    p, res = d.alice.send(d.agent, d.marker_job("fine"))
    assert one(res)["status"] == "ok", res
