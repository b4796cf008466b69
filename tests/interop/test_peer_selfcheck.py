"""Self-check of the integration-test infrastructure itself.

Why this exists: every moonwire integration test trusts tests/lib/prosody.py
and the python OMEMO peer. If they were broken, moonwire's own tests would
fail (or pass) for the wrong reasons. These tests prove, with no moonwire
binary involved, that the server really starts/stops/restarts on loopback,
and that two independent python-omemo peers really exchange encrypted
messages in both directions, survive restarts with their state, receive
offline messages, and honour manual trust.
"""

import json
import os
import socket
import subprocess
import time

import pytest

from prosody import Prosody, port_is_free

PROSODY_CLI = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "lib", "prosody.py")


def _accepts(host, port):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _process_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_server_starts_restarts_and_stops(tmp_path):
    srv = Prosody(tmp_path / "srv")
    try:
        t0 = time.monotonic()
        srv.start()
        assert time.monotonic() - t0 < 2.0, "startup took %.2fs" % (time.monotonic() - t0)
        assert srv.host == "127.0.0.1" and srv.domain == "localhost"
        assert _accepts(srv.host, srv.port)
        assert srv.register("carol", "s3cret") == "carol@localhost"
        assert os.path.exists(os.path.join(srv.data_dir, "localhost", "accounts", "carol.dat"))
        # The config must never make it listen beyond loopback.
        with open(srv.config_path) as f:
            cfg = f.read()
        assert '"127.0.0.1"' in cfg and "0.0.0.0" not in cfg and "::" not in cfg
        port = srv.port
        srv.restart()
        assert srv.port == port and srv.running() and _accepts(srv.host, port)
        assert os.path.exists(os.path.join(srv.data_dir, "localhost", "accounts", "carol.dat"))
    finally:
        srv.stop()
    assert not srv.running()
    assert port_is_free(port), "port %d still bound after stop()" % port
    srv.stop()  # idempotent


def test_cli_detached_start_and_stop(tmp_path):
    d = tmp_path / "cli"
    r = subprocess.run(["/usr/bin/python3", PROSODY_CLI, "start", str(d),
                        "--user", "alice:pw", "--user", "bob:pw"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    info = None
    try:
        assert r.returncode == 0, r.stderr.decode()
        lines = r.stdout.decode().strip().splitlines()
        assert len(lines) == 1
        info = json.loads(lines[0])
        assert set(info) == {"host", "port", "domain", "pid"}
        assert info["host"] == "127.0.0.1" and info["domain"] == "localhost"
        # The CLI has exited; the server must still be there.
        assert _accepts(info["host"], info["port"])
        with open(d / "pid") as f:
            assert int(f.read()) == info["pid"]
        assert os.path.exists(d / "data" / "localhost" / "accounts" / "bob.dat")
    finally:
        s = subprocess.run(["/usr/bin/python3", PROSODY_CLI, "stop", str(d)], timeout=30)
    assert s.returncode == 0
    assert info is not None and port_is_free(info["port"])
    assert not _process_alive(info["pid"]), "detached server still running after stop"


@pytest.mark.parametrize("first", ["alice", "bob"])
def test_encrypted_exchange_both_ways(omemo_peers, first):
    alice = omemo_peers("alice")
    bob = omemo_peers("bob")
    assert alice.device_id != bob.device_id
    assert len(alice.fingerprint) == 64 and alice.fingerprint != bob.fingerprint
    a, b = (alice, bob) if first == "alice" else (bob, alice)

    sent = a.send(b.jid, "first contact from " + a.user)
    # First contact: a PreKeySignalMessage to b's only device.
    assert sent["recipients"] == [{"jid": b.jid, "device_id": b.device_id, "prekey": True}]
    ev = b.expect_message(a.jid, "first contact from " + a.user)
    assert ev["device_id"] == a.device_id and ev["id"] == sent["id"]

    b.send(a.jid, "reply from " + b.user + " \u00e9\u2713")
    ev = a.expect_message(b.jid, "reply from " + b.user + " \u00e9\u2713")
    assert ev["device_id"] == b.device_id

    # The session is now established both ways: further messages are plain
    # SignalMessages and keep decrypting in order.
    for i in range(3):
        s = a.send(b.jid, "n%d" % i)
        assert s["recipients"][0]["prekey"] is False
    for i in range(3):
        assert b.expect_message(a.jid)["body"] == "n%d" % i
    # The devices view agrees with what the peers announced.
    devs = a.devices(b.jid)
    assert [(d["device_id"], d["fingerprint"], d["trust"]) for d in devs] == \
        [(b.device_id, b.fingerprint, "trusted")]
    assert not a.events("decrypt_error") and not b.events("decrypt_error")


def test_restart_keeps_identity_sessions_and_gets_offline_messages(omemo_peers):
    alice = omemo_peers("alice")
    bob = omemo_peers("bob")
    alice.send(bob.jid, "before restart")
    bob.expect_message(alice.jid, "before restart")
    bob.send(alice.jid, "ack before restart")
    alice.expect_message(bob.jid, "ack before restart")

    dev, fp = bob.device_id, bob.fingerprint
    bob.close()
    # Bob is offline: the server must keep this for him (mod_offline).
    alice.send(bob.jid, "while you were away")
    ready = bob.restart()
    assert (ready["device_id"], ready["fingerprint"]) == (dev, fp)
    ev = bob.expect_message(alice.jid, "while you were away")
    assert ev["delayed"] is True

    bob.send(alice.jid, "after restart")
    assert alice.expect_message(bob.jid, "after restart")["device_id"] == dev
    alice.send(bob.jid, "to restarted bob")
    bob.expect_message(alice.jid, "to restarted bob")

    # And the other side restarting works too.
    adev = alice.device_id
    assert alice.restart()["device_id"] == adev
    alice.send(bob.jid, "from restarted alice")
    bob.expect_message(alice.jid, "from restarted alice")
    bob.send(alice.jid, "to restarted alice")
    alice.expect_message(bob.jid, "to restarted alice")
    assert not alice.events("decrypt_error") and not bob.events("decrypt_error")


def test_manual_trust_refuses_undecided_device(omemo_peers):
    alice = omemo_peers("alice", trust="manual")
    bob = omemo_peers("bob")

    err = alice.send(bob.jid, "must not leave", check=False)
    assert err["event"] == "error" and err["cmd"] == "send"
    assert "StillUndecided" in err["reason"]
    devs = alice.devices(bob.jid)
    assert [(d["device_id"], d["fingerprint"], d["trust"]) for d in devs] == \
        [(bob.device_id, bob.fingerprint, "undecided")]

    # Decrypting from an undecided device is allowed (and reported as such).
    bob.send(alice.jid, "from an undecided device")
    ev = alice.expect_message(bob.jid, "from an undecided device")
    assert ev["trust"] == "undecided"

    # Still refused to send until trusted; then it goes through.
    assert alice.send(bob.jid, "still not", check=False)["event"] == "error"
    t = alice.trust(bob.jid, bob.fingerprint.upper())  # case-insensitive
    assert t["device_ids"] == [bob.device_id]
    assert alice.devices(bob.jid)[0]["trust"] == "trusted"
    alice.send(bob.jid, "now trusted")
    bob.expect_message(alice.jid, "now trusted")
    # Nothing that was refused was delivered.
    assert all(e.get("body") not in ("must not leave", "still not")
               for e in bob.history if e.get("event") == "message")

    # Distrusting again refuses sending (NoEligibleDevices: no trusted device).
    alice.trust(bob.jid, bob.fingerprint, level="distrusted")
    assert alice.send(bob.jid, "after distrust", check=False)["event"] == "error"


def test_peers_survive_server_restart(prosody, omemo_peers):
    alice = omemo_peers("alice")
    bob = omemo_peers("bob")
    alice.send(bob.jid, "before server restart")
    bob.expect_message(alice.jid, "before server restart")

    prosody.restart()
    for p in (alice, bob):
        p.expect("disconnected", timeout=10)
        p.expect("reconnected", timeout=15)
    alice.send(bob.jid, "after server restart")
    bob.expect_message(alice.jid, "after server restart")
    bob.send(alice.jid, "reply after server restart")
    alice.expect_message(bob.jid, "reply after server restart")


def test_expect_timeout_is_bounded_and_explains(omemo_peers):
    alice = omemo_peers("alice")
    t0 = time.monotonic()
    with pytest.raises(AssertionError) as ei:
        alice.expect("message", sender="nobody@localhost", timeout=0.5)
    assert time.monotonic() - t0 < 2.0
    msg = str(ei.value)
    assert "alice@localhost" in msg and "ready" in msg  # recent output included


def test_plain_and_raw_messages(omemo_peers):
    alice = omemo_peers("alice")
    bob = omemo_peers("bob")
    alice.send_plain(bob.jid, "in the clear")
    ev = bob.expect("message", sender=alice.jid, encrypted=False)
    assert ev["body"] == "in the clear"
    # A malformed OMEMO element must yield a decrypt_error, not kill the peer.
    alice.send_raw("<message to='%s' type='chat' id='bad1'>"
                   "<encrypted xmlns='eu.siacs.conversations.axolotl'>"
                   "<header sid='12345'><key rid='%d'>!!notbase64</key><iv>AAAA</iv></header>"
                   "<payload>AAAA</payload></encrypted></message>" % (bob.jid, bob.device_id))
    ev = bob.expect("decrypt_error", sender=alice.jid, timeout=15)
    assert ev["id"] == "bad1" and ev["device_id"] == 12345
    alice.send(bob.jid, "still fine")
    bob.expect_message(alice.jid, "still fine")
