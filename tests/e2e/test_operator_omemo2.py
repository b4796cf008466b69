"""moonwire as an OMEMO 2 initiator (issue 12, item 3): `moonwire send`
to a moonwire agent through the real Prosody.

Why this exists: the agent publishes both OMEMO versions, so the operator
CLI speaks OMEMO 2 by default and legacy only where no OMEMO 2 device list
exists; `--omemo legacy|2` forces one and a recipient that does not offer
it is not sent to, with a typed reason.  What went over the wire is read
from both identity databases: version-4 sessions (omemo_sessions_v4) and
the version each side last read from the other (omemo_devices.reply_version,
4 for OMEMO 2), so a silent fall back to legacy fails these tests.
"""

import re
import sqlite3

import pytest

from agentkit import run
from test_agent import one, send_ok


def v4_sessions(ident, jid):
    db = sqlite3.connect(ident.db, timeout=10)
    try:
        return db.execute("SELECT COUNT(*) FROM omemo_sessions_v4 WHERE jid = ?",
                          (jid,)).fetchone()[0]
    finally:
        db.close()


def read_version(ident, jid):
    """The version ident last decrypted from jid's devices (max over them)."""
    db = sqlite3.connect(ident.db, timeout=10)
    try:
        return db.execute("SELECT MAX(reply_version) FROM omemo_devices WHERE jid = ?",
                          (jid,)).fetchone()[0]
    finally:
        db.close()


def test_default_is_omemo2_first_contact_and_restarts(deploy):
    d = deploy
    d.agent.start()
    # first contact: no session yet; the job goes as an OMEMO 2 key exchange
    send_ok(d, d.alice, "first", 1)
    assert v4_sessions(d.alice, d.agent.jid) == 1
    assert read_version(d.agent, d.alice.jid) == 4     # the agent read OMEMO 2
    assert read_version(d.alice, d.agent.jid) == 4     # and answered in it
    # `devices` shows the OMEMO 2 session and the key's Ed25519 rendering,
    # the one `fingerprint` prints for the agent's owner
    own = run([d.kit.moonwire, "fingerprint", "-c", d.agent.conf]).stdout
    ed = re.search(r"^fingerprint-ed25519: (\S+)$", own, re.M).group(1)
    curve = re.search(r"^fingerprint: (\S+)$", own, re.M).group(1)
    out = run([d.kit.moonwire, "devices", "-c", d.alice.conf, d.agent.jid]).stdout
    assert re.fullmatch(r"\d+ active verified %s omemo2 session2 ed25519 %s\n"
                        % (curve, ed), out), out
    # the established session, from a new operator process
    send_ok(d, d.alice, "second", 2)
    # after a restart of the agent
    d.agent.stop()
    d.agent.start()
    send_ok(d, d.alice, "third", 3)
    assert v4_sessions(d.alice, d.agent.jid) == 1
    # legacy on demand, beside: one identity, both sessions
    send_ok(d, d.alice, "legacy", 4, extra=["--omemo", "legacy"])
    assert read_version(d.agent, d.alice.jid) == 3
    assert read_version(d.alice, d.agent.jid) == 3
    out = run([d.kit.moonwire, "devices", "-c", d.alice.conf, d.agent.jid]).stdout
    assert re.fullmatch(r"\d+ active verified %s session omemo2 session2 ed25519 %s\n"
                        % (curve, ed), out), out
    # and back to OMEMO 2 on the session kept
    send_ok(d, d.alice, "again", 5, extra=["--omemo", "2"])
    assert read_version(d.agent, d.alice.jid) == 4
    assert not d.agent.grep(r"refused code=")


@pytest.mark.prosody_only("python-omemo twomemo cannot publish on ejabberd 23.01 (pubsub#max_items)")
def test_forced_version_not_offered_is_not_sent(kit):
    alice = kit.operator("alice")
    old = kit.peer("pat")                   # legacy only
    two = kit.peer("quinn", omemo="2")      # OMEMO 2 only
    kit.trust_peer(alice, old)
    kit.trust_peer(alice, two)
    prog = kit.workdir + "/p.lua"
    with open(prog, "w") as f:
        f.write("return 1\n")
    for peer, forced in ((old, "2"), (two, "legacy")):
        p, res = alice.send(peer.jid, prog, timeout="5s", extra=["--omemo", forced])
        assert p.returncode == 6, (p.stdout, p.stderr)
        assert one(res)["status"] == "not_sent", res
        assert re.search(r"%s: the recipient does not offer the OMEMO version "
                         r"asked for" % re.escape(peer.jid), p.stderr), p.stderr
    # without --omemo each gets the version it speaks: the job arrives
    for peer in (old, two):
        p, res = alice.send(peer.jid, prog, timeout="2s")
        assert p.returncode == 6 and one(res)["status"] == "no_answer", (p.stdout, p.stderr)
        ev = peer.expect_message(alice.jid, timeout=20)
        assert "return 1" in ev["body"], ev
    # a bad --omemo value is a usage error, nothing is signed
    p = run([kit.moonwire, "send", "-c", alice.conf, "--to", old.jid, "--omemo", "1",
             prog], check=False)
    assert p.returncode == 2 and "--omemo: legacy or 2" in p.stderr, p.stderr
