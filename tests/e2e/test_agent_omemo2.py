"""The agent over OMEMO 2 (issue 12): a python-omemo peer that speaks only
urn:xmpp:omemo:2 (python3-twomemo 1.0.3, tests/interop/omemo_peer.py
--omemo 2) through the real Prosody.

Why this exists: OMEMO 2 only counts if an implementation that shares no
code with moonwire reads what the agent publishes and writes, and the
agent reads what it writes.  The peer finds the agent's OMEMO 2 device list
and bundle on PEP, builds a session (first contact from its side), sends a
job inside an XEP-0420 envelope, and must get the result back over OMEMO 2
(it cannot read anything else); then again after the agent restarted; an
unverified OMEMO 2 device gets no answer; the legacy peer keeps working
beside.
"""

import re

from test_agent import peer_result, result_body, still_serves


def omemo2_peer(d, user="quinn", allow=True):
    pat = d.kit.peer(user, omemo="2")
    if allow:
        d.agent.allow_lines.append("allow %s %s default" % (d.alice.principal, pat.jid))
    return pat


def test_signed_job_over_omemo2_and_back(deploy):
    d = deploy
    pat = omemo2_peer(d)
    d.kit.trust_peer(d.agent, pat)
    d.agent.start()
    env = d.alice.sign(d.agent, d.marker_job("omemo2"), extra=["--job-id", "job-o2"])
    pat.send(d.agent.jid, env)
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok" and h["job-id"] == "job-o2", h
    d.agent.wait_log(r"reply-sent job=job-o2 ")
    # established session, both ways, and after a restart of the agent
    env = d.alice.sign(d.agent, d.marker_job("omemo2-b"), extra=["--job-id", "job-o2b"])
    pat.send(d.agent.jid, env)
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok" and h["job-id"] == "job-o2b", h
    d.agent.stop()
    d.agent.start()
    env = d.alice.sign(d.agent, d.marker_job("omemo2-c"), extra=["--job-id", "job-o2c"])
    pat.send(d.agent.jid, env)
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok" and h["job-id"] == "job-o2c", h
    errors = [e for e in pat.history if e.get("event") == "decrypt_error"]
    assert errors == [], errors


def test_interactive_over_omemo2_beside_legacy(deploy):
    d = deploy
    two = d.kit.peer("quinn", omemo="2")
    old = d.kit.peer("pat")
    d.agent.interactive(two)
    d.agent.interactive(old)
    d.kit.trust_peer(d.agent, two)
    d.kit.trust_peer(d.agent, old)
    d.agent.start()
    two.send(d.agent.jid, "return 6 * 7")
    old.send(d.agent.jid, "return 7 * 6")
    assert peer_result(two, d.agent, timeout=30).startswith("ok: 42 (")
    assert peer_result(old, d.agent, timeout=30).startswith("ok: 42 (")
    two.send(d.agent.jid, 'return "<&>"')
    assert peer_result(two, d.agent, timeout=30).startswith('ok: "<&>" (')


def test_unverified_omemo2_device_gets_no_reply(deploy):
    d = deploy
    pat = omemo2_peer(d, "mallory2")
    d.agent.start()                 # the agent never verified this device
    pat.send(d.agent.jid, d.alice.sign(d.agent, d.marker_job("untrusted2")))
    d.agent.wait_log(r"moonwire-agent: refused code=untrusted_device from=%s "
                     % re.escape(pat.jid))
    assert not d.agent.grep(r"reply.*to=%s" % re.escape(pat.jid))
    still_serves(d)
