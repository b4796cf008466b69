"""moonwire OMEMO against python-omemo 1.0 (oldmemo) through Prosody.

Why this exists: the legacy wire format only counts if an independent
implementation reads what moonwire writes and the other way round.  The
python side is tests/interop/omemo_peer.py driven through OmemoPeer
(tests/interop/peer.py, fixture `omemo_peers`); the moonwire side is the
`__omemo_client` endpoint of test_omemo_prosody.py.
"""

import os

from test_omemo_prosody import Endpoint


def test_python_first_then_moonwire(moonwire_bin, prosody, omemo_peers, tmp_path):
    py = omemo_peers("pyuser", trust="blind")
    mw = Endpoint(moonwire_bin, prosody, str(tmp_path / "mw"), "agent").start()
    try:
        mw.trust_fp(py.jid, py.fingerprint)
        py.send(mw.jid, "hello from python")
        jid, dev, trust, text = mw.recv()
        assert (jid, dev, trust, text) == (py.jid, py.device_id, "verified",
                                            "hello from python")
        mw.send_to(py.jid, "hello from moonwire")
        ev = py.expect("message", sender=mw.jid, timeout=20)
        assert ev.get("body") == "hello from moonwire", ev
        for i in range(10):
            py.send(mw.jid, "p%d" % i)
            assert mw.recv()[3] == "p%d" % i
            mw.send_to(py.jid, "m%d" % i)
            assert py.expect("message", sender=mw.jid, timeout=20).get("body") == "m%d" % i
        mw.stop()
        mw.start()
        py.send(mw.jid, "after restart")
        assert mw.recv()[3] == "after restart"
        mw.send_to(py.jid, "still here")
        assert py.expect("message", sender=mw.jid, timeout=20).get("body") == "still here"
    finally:
        mw.stop()


def test_moonwire_first(moonwire_bin, prosody, omemo_peers, tmp_path):
    py = omemo_peers("pyuser", trust="blind")
    mw = Endpoint(moonwire_bin, prosody, str(tmp_path / "mw"), "agent").start()
    try:
        mw.trust_fp(py.jid, py.fingerprint)
        mw.send_to(py.jid, "moonwire speaks first")
        ev = py.expect("message", sender=mw.jid, timeout=20)
        assert ev.get("body") == "moonwire speaks first", ev
        py.send(mw.jid, "python answers")
        assert mw.recv()[3] == "python answers"
    finally:
        mw.stop()


def _recv_exactly(mw, sender, text):
    """The next recv of mw is (sender, text); key-transport drops are skipped,
    anything else (a decrypt error, another text: a duplicate or a reorder)
    fails."""
    while True:
        ev = mw.events.get(timeout=20)
        if ev[0] == "dropped":
            continue
        assert ev[0] == "recv", ev
        assert (ev[1], ev[4] if len(ev) > 4 else "") == (sender, text), ev
        return


def test_hundred_alternating_with_restart(moonwire_bin, prosody, omemo_peers, tmp_path):
    """100 messages, python and moonwire in turn; moonwire is stopped before
    message 50 (python's, so it waits in Prosody's offline storage) and
    started again.  Every message decrypts on the other side exactly once,
    in order, and neither side reports a decrypt error."""
    import queue
    py = omemo_peers("pyuser", trust="blind")
    mw = Endpoint(moonwire_bin, prosody, str(tmp_path / "mw"), "agent").start()
    try:
        mw.trust_fp(py.jid, py.fingerprint)
        for i in range(100):
            text = "msg %03d" % i
            if i == 50:
                mw.stop()
            if i % 2 == 0:
                py.send(mw.jid, text)
                if i == 50:
                    mw.start()          # delivered from offline storage
                _recv_exactly(mw, py.jid, text)
            else:
                mw.send_to(py.jid, text)
                ev = py.expect("message", sender=mw.jid, timeout=20)
                assert (ev["body"], ev["encrypted"], ev["trust"]) == (text, True, "trusted"), ev
        # nothing more arrives on either side: no duplicates, no errors
        py.sync()
        try:
            extra = mw.events.get(timeout=2)
        except queue.Empty:
            extra = None
        assert extra is None or extra[0] == "dropped", extra
        assert py.events("message") == []
        assert py.events("decrypt_error") == []
        assert [e for e in py.history if e.get("event") == "decrypt_error"] == []
        assert len([e for e in py.history
                    if e.get("event") == "message" and e.get("from") == mw.jid]) == 50
    finally:
        mw.stop()


def test_consumed_prekey_replaced_in_published_bundle(moonwire_bin, prosody, omemo_peers,
                                                      tmp_path):
    """A first-contact PreKey message consumes one of moonwire's prekeys: the
    bundle Prosody serves afterwards lacks that id, carries one new id, and
    still has 100 prekeys, the same set as moonwire's unused ones; the
    consumed one is kept, marked used, for its grace period
    (MW_OMEMO_PREKEY_GRACE_SECS)."""
    import sqlite3
    import time
    py = omemo_peers("pyuser", trust="blind")
    # its republish window shortened to 2 s: the bundle goes out 2-10 s
    # after the use instead of 30-150 s
    mw = Endpoint(moonwire_bin, prosody, str(tmp_path / "mw"), "agent",
                  env={"MOONWIRE_TEST_REPUBLISH_MS": "2000"}).start()
    db = os.path.join(str(tmp_path / "mw"), "agent.db")

    def stored_ids(used=False):
        con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
        try:
            return {r[0] for r in con.execute(
                "SELECT id FROM omemo_prekeys WHERE used IS %s NULL" % ("NOT" if used else ""))}
        finally:
            con.close()

    try:
        before = py.bundle(mw.jid, mw.device)
        ids0 = before["prekey_ids"]
        assert len(ids0) == 100 and len(set(ids0)) == 100
        assert set(ids0) == stored_ids()
        py.send(mw.jid, "first contact")
        jid, dev, trust, text = mw.recv()
        assert (jid, dev, text) == (py.jid, py.device_id, "first contact")
        # the republish comes 1-5 windows (random) after the use
        # (spec/omemo.md, "PEP"): the old bundle is served until then
        assert set(py.bundle(mw.jid, mw.device)["prekey_ids"]) == set(ids0)
        deadline = time.monotonic() + 30
        while True:
            after = py.bundle(mw.jid, mw.device)
            if set(after["prekey_ids"]) != set(ids0) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        ids1 = after["prekey_ids"]
        gone, new = set(ids0) - set(ids1), set(ids1) - set(ids0)
        assert len(gone) == 1, (gone, new)
        assert len(new) == 1, (gone, new)
        assert len(ids1) == 100 and len(set(ids1)) == 100
        assert set(ids1) == stored_ids()     # what is published is what is unused
        assert stored_ids(used=True) == gone   # the consumed one: kept, marked used
        assert after["identity_key"] == before["identity_key"]
        assert after["signed_prekey_id"] == before["signed_prekey_id"]
        # the session keeps working both ways
        mw.trust_fp(py.jid, py.fingerprint)
        mw.send_to(py.jid, "reply")
        assert py.expect("message", sender=mw.jid, timeout=20)["body"] == "reply"
    finally:
        mw.stop()
