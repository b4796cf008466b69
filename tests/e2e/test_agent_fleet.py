"""End to end (issue 11, item 5): an agent at fleet size -- server failover,
the periodic OMEMO publication re-check, a configurable idle worker pool.

Why this exists: in a fleet an agent that cannot reach its first server,
or whose device list vanished from the server without a notification it
acts on, is a device nobody can reach until someone restarts it.  These
tests take the real agent through both against the real Prosody: a dead
first server (it must move on to the second), and an account node deleted
by another client of the same account (the re-check must notice it,
log it, and publish again).  Every check is a log line the agent wrote,
what the server serves (python-omemo fetches it) and a job that runs.
"""

import os
import re
import socket
import subprocess
import time

import pytest

from agentkit import run

HERE = os.path.dirname(os.path.abspath(__file__))
PEP_ADMIN = os.path.join(os.path.dirname(HERE), "lib", "pep_admin.py")
DEVICELIST = "eu.siacs.conversations.axolotl.devicelist"


def free_port():
    """A loopback port nobody listens on (connections are refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def job_runs(d, name="fleet"):
    p, res = d.alice.send(d.agent, d.marker_job(name))
    assert p.returncode == 0 and res[0]["status"] == "ok", (p.stdout, p.stderr)
    assert d.marker(name)


def test_failover_to_second_server(deploy):
    d = deploy
    dead = free_port()
    real = d.kit.prosody.port
    orig = d.agent.account_lines
    d.agent.account_lines = lambda: orig().replace("port = %d\n" % real, "port = %d\n" % dead)
    d.agent.settings["failover"] = "127.0.0.1:%d" % real
    d.agent.start(wait=False)
    d.agent.wait_log(r"connecting jid=%s server=127.0.0.1:%d" % (re.escape(d.agent.jid), dead))
    d.agent.wait_log(r"connect-failed .*127\.0\.0\.1:%d" % dead)
    d.agent.wait_log(r"server-failover next=127\.0\.0\.1:%d" % real)
    line = d.agent.wait_log(r"reconnect-scheduled in_ms=\d+ kind=network")
    assert 800 <= int(re.search(r"in_ms=(\d+)", line).group(1)) <= 1200, line
    d.agent.wait_log(r"connecting jid=%s server=127.0.0.1:%d" % (re.escape(d.agent.jid), real))
    d.agent.wait_log(r"connected jid=")
    d.agent.wait_log(r"omemo-published")
    job_runs(d)


def test_failover_config_errors(deploy):
    d = deploy
    d.agent.settings["failover"] = "example.org:5222"     # plaintext to a non-loopback host
    d.agent.write_conf()
    p = run([d.kit.moonwire, "agent", "-c", d.agent.conf, "--check"], check=False)
    assert p.returncode == 2 and "failover" in p.stderr and "example.org" in p.stderr, p.stderr
    for bad, why in (("127.0.0.1:0", "port"), ("[::1]5222", "IPv6"), ("[::1", "IPv6"),
                     ("a@b", "host")):
        d.agent.settings["failover"] = bad
        d.agent.write_conf()
        p = run([d.kit.moonwire, "agent", "-c", d.agent.conf, "--check"], check=False)
        assert p.returncode == 2 and re.search(r"account\.conf:\d+: failover: .*%s" % why,
                                               p.stderr), (bad, p.stderr)


@pytest.mark.prosody_only("restarts the server (Prosody.restart)")
def test_server_restart_spreads_reconnections(deploy):
    """After a server restart the first reconnection of each agent waits
    the backoff (1 s +-20 %) plus a uniform 0..reconnect_spread; with 0
    only the backoff.  The delays are the agent's own logged choices."""
    d = deploy
    wide = d.kit.agent("wide")
    wide.policy_text = d.agent.policy_text
    wide.allow(d.alice)
    d.kit.trust(wide, d.alice)
    wide.settings["reconnect_spread"] = "20s"
    d.agent.settings["reconnect_spread"] = "0s"
    d.agent.start()
    wide.start()
    d.kit.prosody.restart()
    ms = {}
    for a in (d.agent, wide):
        line = a.wait_log(r"reconnect-scheduled in_ms=\d+ kind=network", timeout=30)
        ms[a.user] = int(re.search(r"in_ms=(\d+)", line).group(1))
    assert 800 <= ms["agent"] <= 1200, ms
    assert 800 <= ms["wide"] <= 21200, ms
    d.agent.wait_log(r"connected jid=", timeout=30)
    wide.wait_log(r"connected jid=", timeout=60)
    job_runs(d, "after-restart")


def test_periodic_recheck_republishes(deploy):
    d = deploy
    pat = d.kit.peer("pat")
    d.agent.settings["omemo_recheck"] = "2s"
    d.agent.start()
    dev = int(re.search(r"device=(\d+)", d.agent.wait_log(r"omemo-published")).group(1))
    # the re-check runs (1.5-2.5 s) and finds everything in place
    d.agent.wait_log(r"omemo-recheck device=%d result=ok" % dev, timeout=10)
    # another client of the agent's account deletes the device list node
    p = subprocess.run(["/usr/bin/python3", PEP_ADMIN, "--jid", d.agent.jid, "--password",
                        d.agent.password, "--port", str(d.kit.prosody.port), "delete",
                        DEVICELIST], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", (p.stdout, p.stderr)
    assert dev not in [x["device_id"] for x in pat.devices(d.agent.jid)]
    # the next re-check notices, says so loudly, and publishes again
    d.agent.wait_log(r"omemo-publish-failed node=%s op=recheck " % re.escape(DEVICELIST),
                     timeout=10)
    d.agent.wait_log(r"omemo-published device=%d" % dev, timeout=15)
    assert dev in [x["device_id"] for x in pat.devices(d.agent.jid)]
    d.agent.wait_log(r"omemo-recheck device=%d result=ok" % dev, timeout=10)
    job_runs(d)


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


def workers(agent):
    """The idle workers: children of the zygote, the supervisor's child."""
    sup = int(re.search(r"supervisor=(\d+)", agent.grep(r"started jid=")[-1]).group(1))
    kids = children(sup)
    assert len(kids) == 1, kids
    return children(kids[0])


def settles_at(agent, n):
    """The pool refills in the background: wait (bounded) until it holds n
    workers, then check it stays there."""
    deadline = time.time() + 10
    while len(workers(agent)) != n and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    return len(workers(agent)) == n


def test_idle_workers(deploy):
    """By default `parallel` workers wait ready; idle_workers = 0 keeps
    none (each job forks its own), idle_workers = 1 one."""
    d = deploy
    d.agent.start()
    assert settles_at(d.agent, 2)
    d.agent.stop()
    for n in (0, 1):
        d.agent.settings["idle_workers"] = str(n)
        d.agent.start()
        assert settles_at(d.agent, n)
        job_runs(d, "a%d" % n)
        job_runs(d, "b%d" % n)
        assert settles_at(d.agent, n)
        d.agent.stop()
