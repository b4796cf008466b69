"""The agent over OMEMO 2 (issue 12): a python-omemo peer that speaks only
urn:xmpp:omemo:2 (python3-twomemo 1.0.3, tests/interop/omemo_peer.py
--omemo 2) through the real Prosody.

Why this exists: OMEMO 2 only counts if an implementation that shares no
code with moonwire reads what the agent publishes and writes, and the
agent reads what it writes.  The peer finds the agent's OMEMO 2 device list
and bundle on PEP, builds a session (first contact from its side), sends a
job inside an XEP-0420 envelope, and must get the result back over OMEMO 2
(it cannot read anything else); then again after the agent restarted and
after the peer restarted; an
unverified OMEMO 2 device gets no answer; the legacy peer keeps working
beside.
"""

import os
import re
import sqlite3
import time

import pytest

from agentkit import run
from test_agent import peer_result, result_body, still_serves

# python-omemo's twomemo publishes its bundle with pubsub#max_items, which
# ejabberd 23.01 refuses (moonwire drops the field and publishes again;
# the python peer does not)
pytestmark = pytest.mark.prosody_only("python-omemo twomemo cannot publish on ejabberd 23.01 (pubsub#max_items)")


# The OMEMO layer's own empty messages: nothing in them touches the agent's
# credentials, so the as-deployed pass leaves them to the other passes.
omemo_only = pytest.mark.skipif(
    os.environ.get("MW_AS_DEPLOYED") == "1",
    reason="deployed pass: OMEMO session upkeep, not the agent's credentials")


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
    # the python side restarts too: its stored sessions go on
    pat.restart()
    env = d.alice.sign(d.agent, d.marker_job("omemo2-d"), extra=["--job-id", "job-o2d"])
    pat.send(d.agent.jid, env)
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok" and h["job-id"] == "job-o2d", h
    errors = [e for e in pat.history if e.get("event") == "decrypt_error"]
    assert errors == [], errors
    # one version-4 session with the peer, and no legacy one
    assert not d.agent.grep(r"refused code=omemo")


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


def ed25519_rendering(curve_hex, sign_bit=False):
    """The Ed25519 form of a Curve25519 fingerprint, by python's xeddsa (an
    implementation moonwire shares no code with)."""
    import xeddsa
    return xeddsa.curve25519_pub_to_ed25519_pub(bytes.fromhex(curve_hex), sign_bit).hex()


def test_fingerprint_renderings_and_trust_by_ed25519(deploy):
    d = deploy
    pat = omemo2_peer(d, "rhea")
    # `fingerprint` shows both renderings of the agent's one identity key
    curve = d.agent.fingerprint().replace("-", "")
    out = run([d.kit.moonwire, "fingerprint", "-c", d.agent.conf]).stdout
    ed_line = re.search(r"^fingerprint-ed25519: (\S+)$", out, re.M).group(1)
    assert ed_line.replace("-", "") == ed25519_rendering(curve), out
    # the operator verifies the peer by the rendering an OMEMO 2 client
    # shows (python-omemo's own key may carry the sign bit: either works)
    ed = ed25519_rendering(pat.fingerprint, sign_bit=True)
    p = run([d.kit.moonwire, "trust", "-c", d.agent.conf, pat.jid, ed])
    assert "no device with this key seen yet" in p.stdout, p.stdout
    d.agent.start()
    env = d.alice.sign(d.agent, d.marker_job("ed25519"), extra=["--job-id", "job-ed"])
    pat.send(d.agent.jid, env)
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok" and h["job-id"] == "job-ed", h
    # now seen: the Ed25519 rendering names that device, shown as Curve25519
    p = run([d.kit.moonwire, "trust", "-c", d.agent.conf, pat.jid,
             ed25519_rendering(pat.fingerprint)])
    grouped = "-".join(pat.fingerprint[i:i + 8] for i in range(0, 64, 8))
    assert re.search(r"^%s device \d+: verified %s$" % (re.escape(pat.jid), grouped),
                     p.stdout, re.M), p.stdout


def test_empty_omemo2_messages_run_nothing(deploy):
    """XEP-0384's empty messages (<keys>, no <payload>), as python-omemo
    sends them to complete a key exchange or keep a session fresh: the agent
    logs them, runs nothing, answers nothing, and the session goes on."""
    d = deploy
    pat = omemo2_peer(d, "sam")
    d.kit.trust_peer(d.agent, pat)
    d.agent.start()
    # first contact by an empty message carrying the key exchange
    ev = pat.send_empty(d.agent.jid, build=True)
    assert [r["kex"] for r in ev["recipients"]] == [True], ev
    d.agent.wait_log(r"key-transport from=%s device=%d" % (re.escape(pat.jid), pat.device_id))
    assert d.agent.grep(r"new-session from=%s " % re.escape(pat.jid))
    # a job on the session that empty message built
    env = d.alice.sign(d.agent, d.marker_job("after-kex"), extra=["--job-id", "job-e1"])
    pat.send(d.agent.jid, env)
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok" and h["job-id"] == "job-e1", h
    # an empty message on the established (confirmed) session
    ev = pat.send_empty(d.agent.jid)
    assert [r["kex"] for r in ev["recipients"]] == [False], ev
    d.agent.wait_log(r"key-transport from=%s device=%d" % (re.escape(pat.jid), pat.device_id))
    env = d.alice.sign(d.agent, d.marker_job("after-empty"), extra=["--job-id", "job-e2"])
    pat.send(d.agent.jid, env)
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok" and h["job-id"] == "job-e2", h
    # nothing ran but the two jobs, nothing else came back, nothing refused
    assert d.markers() == ["after-empty", "after-kex"], d.markers()
    pat.sync()
    assert pat.events("message") == [], pat.events("message")
    assert [e for e in pat.history if e.get("event") == "decrypt_error"] == []
    assert len(d.agent.grep(r"key-transport from=%s " % re.escape(pat.jid))) == 2
    assert not d.agent.grep(r"refused code=")


@omemo_only
def test_agent_completes_key_exchange_and_sends_heartbeats(deploy):
    """The agent's own empty OMEMO 2 messages (XEP-0384): a key exchange
    that no reply answered is completed about a second later, so the peer
    stops attaching it; after 53 unanswered messages of one sending chain
    the 54th is answered by a heartbeat that turns the ratchet, once."""
    d = deploy
    pat = omemo2_peer(d, "ursula")
    d.kit.trust_peer(d.agent, pat)
    d.agent.start()
    who = r"jid=%s device=%d" % (re.escape(pat.jid), pat.device_id)
    ev = pat.send_empty(d.agent.jid, build=True)
    assert [r["kex"] for r in ev["recipients"]] == [True], ev
    d.agent.wait_log(r"omemo-empty-sent %s reason=kex-completion" % who)
    ka = pat.expect("key_transport", sender=d.agent.jid, timeout=15)
    assert ka["kex"] is False, ka
    # the session is confirmed: no key exchange from the peer any more
    ev = pat.send_empty(d.agent.jid)
    assert [r["kex"] for r in ev["recipients"]] == [False], ev
    # messages 0..52 of the peer's chain want no heartbeat ...
    for _ in range(52):
        pat.send_empty(d.agent.jid)

    def transports():
        return len(d.agent.grep(r"key-transport from=%s " % re.escape(pat.jid)))
    deadline = time.monotonic() + 30
    while transports() < 54 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert transports() == 54, transports()
    time.sleep(2.5)         # two of the agent's 1 s ticks: nothing is due
    assert not d.agent.grep(r"reason=heartbeat")
    assert pat.events("key_transport") == [], pat.events("key_transport")
    # ... the 54th does, once
    pat.send_empty(d.agent.jid)
    d.agent.wait_log(r"omemo-empty-sent %s reason=heartbeat" % who)
    ka = pat.expect("key_transport", sender=d.agent.jid, timeout=15)
    assert ka["kex"] is False, ka
    pat.send_empty(d.agent.jid)
    d.agent.wait_log(r"key-transport from=%s " % re.escape(pat.jid))
    time.sleep(2.5)
    assert len(d.agent.grep(r"omemo-empty-sent ")) == 2, d.agent.grep(r"omemo-empty-sent ")
    # and jobs go on
    env = d.alice.sign(d.agent, d.marker_job("after-heartbeat"), extra=["--job-id", "job-h1"])
    pat.send(d.agent.jid, env)
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok" and h["job-id"] == "job-h1", h
    assert not d.agent.grep(r"refused code=")


@omemo_only
def test_agent_repairs_a_lost_session(deploy):
    """A verified device's message that no longer decrypts (here: the agent
    lost its OMEMO 2 session, as after restoring an old backup) makes the
    agent fetch the device's bundle, build a new session over the pinned
    identity and send an empty message carrying the key exchange; the peer
    accepts it, and the job sent again runs.  The message that failed was
    never decrypted, so nothing ran twice."""
    d = deploy
    pat = omemo2_peer(d, "victor")
    d.kit.trust_peer(d.agent, pat)
    d.agent.start()
    env1 = d.alice.sign(d.agent, d.marker_job("before-loss"), extra=["--job-id", "job-r1"])
    pat.send(d.agent.jid, env1)
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok", h
    d.agent.stop()
    db = sqlite3.connect(d.agent.db)
    with db:
        n = db.execute("DELETE FROM omemo_sessions_v4 WHERE jid = ?", (pat.jid,)).rowcount
    db.close()
    assert n == 1, n
    d.agent.start()
    env2 = d.alice.sign(d.agent, d.marker_job("after-repair"), extra=["--job-id", "job-r2"])
    ev = pat.send(d.agent.jid, env2)
    assert [r["prekey"] for r in ev["recipients"]] == [False], ev
    who = r"jid=%s device=%d" % (re.escape(pat.jid), pat.device_id)
    d.agent.wait_log(r"refused code=omemo from=%s device=%d " % (re.escape(pat.jid), pat.device_id))
    d.agent.wait_log(r"omemo-repaired %s" % who)
    ka = pat.expect("key_transport", sender=d.agent.jid, timeout=20)
    assert ka["kex"] is True, ka
    # the job that failed never ran: sent again, it runs once
    assert d.markers() == ["before-loss"], d.markers()
    pat.send(d.agent.jid, env2)
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok" and h["job-id"] == "job-r2", h
    assert d.markers() == ["after-repair", "before-loss"], d.markers()
    assert len(d.agent.grep(r"omemo-repair ")) == 1
