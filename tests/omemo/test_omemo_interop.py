"""moonwire OMEMO against python-omemo 1.0 (oldmemo) through Prosody.

Why this exists: the legacy wire format only counts if an independent
implementation reads what moonwire writes and the other way round.  The
python side is tests/interop/omemo_peer.py driven through OmemoPeer
(tests/interop/peer.py, fixture `omemo_peers`); the moonwire side is the
`__omemo_client` endpoint of test_omemo_prosody.py.
"""

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
