"""moonwire as the OMEMO 2 initiator against python-omemo's twomemo
(python3-twomemo 1.0.3) through Prosody (issue 12, item 4).

Why this exists: tests/e2e/test_agent_omemo2.py has python start every
session; here moonwire does (the `__omemo_client` endpoint of
test_omemo_prosody.py, which speaks OMEMO 2 to a recipient listing only
urn:xmpp:omemo:2 devices).  The python peer reports whether the <key> for
it carried kex="true", so a session moonwire builds again after a restart
(a new key exchange instead of the stored session) fails the test.
"""

import queue

import pytest

from test_omemo_prosody import Endpoint

pytestmark = pytest.mark.prosody_only(
    "python-omemo twomemo cannot publish on ejabberd 23.01 (pubsub#max_items)")


def recv_skipping_empty(mw, timeout=20, dropped=None):
    """The next decrypted text of mw; empty OMEMO 2 messages (python sends
    one to complete a key exchange) are reported as "dropped" and skipped
    (appended to `dropped`)."""
    while True:
        ev = mw.events.get(timeout=timeout)
        if ev[0] == "dropped":
            if dropped is not None:
                dropped.append(ev)
            continue
        assert ev[0] == "recv", ev
        return ev[1], int(ev[2]), ev[3], ev[4] if len(ev) > 4 else ""


def test_moonwire_first_over_omemo2_and_restart(moonwire_bin, prosody, omemo_peers,
                                                 tmp_path):
    py = omemo_peers("quinn", trust="blind", omemo="2")
    mw = Endpoint(moonwire_bin, prosody, str(tmp_path / "mw"), "agent").start()
    try:
        mw.trust_fp(py.jid, py.fingerprint)
        # first contact from moonwire: a key exchange, read exactly
        mw.send_to(py.jid, "moonwire speaks first <&> ü")
        ev = py.expect("message", sender=mw.jid, timeout=20)
        assert (ev["body"], ev["kex"], ev["trust"]) == ("moonwire speaks first <&> ü",
                                                        True, "trusted"), ev
        # python completes the key exchange with an empty message (dropped
        # by moonwire, not an error) and answers
        py.send(mw.jid, "python answers")
        dropped = []
        assert recv_skipping_empty(mw, dropped=dropped) == (py.jid, py.device_id,
                                                            "verified", "python answers")
        assert [(e[1], int(e[2])) for e in dropped] == [(py.jid, py.device_id)], dropped
        # the session is confirmed: no key exchange any more
        mw.send_to(py.jid, "established")
        ev = py.expect("message", sender=mw.jid, timeout=20)
        assert (ev["body"], ev["kex"]) == ("established", False), ev
        # a new moonwire process on the same database continues the session
        mw.stop()
        mw.start()
        mw.send_to(py.jid, "after restart")
        ev = py.expect("message", sender=mw.jid, timeout=20)
        assert (ev["body"], ev["kex"]) == ("after restart", False), ev
        py.send(mw.jid, "still here")
        assert recv_skipping_empty(mw)[3] == "still here"
        for i in range(5):
            mw.send_to(py.jid, "m%d" % i)
            ev = py.expect("message", sender=mw.jid, timeout=20)
            assert (ev["body"], ev["kex"]) == ("m%d" % i, False), ev
            py.send(mw.jid, "p%d" % i)
            assert recv_skipping_empty(mw)[3] == "p%d" % i
        py.sync()
        try:
            extra = mw.events.get(timeout=1)
        except queue.Empty:
            extra = None
        assert extra is None or extra[0] == "dropped", extra
        assert [e for e in py.history if e.get("event") == "decrypt_error"] == []
    finally:
        mw.stop()
