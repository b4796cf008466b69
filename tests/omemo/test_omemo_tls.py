"""TLS and certificate pinning of the moonwire XMPP endpoint, against a
Prosody that requires STARTTLS with a self-signed certificate.

Why this exists: outside loopback tests TLS is mandatory, and the account
file trusts a server either through `ca_file` or through `cert_pin_sha256`
(SHA-256 of the server certificate's DER form).  These tests prove each way
in and that every wrong or missing trust anchor is refused with a typed
error (`connect-error ERR NAME` on stdout, `moonwire: connect: NAME` on
stderr) before the endpoint says or sends anything; the refusals without a
CA are made during the TLS handshake, before the password is sent.

Fixtures: moonwire_bin (tests/conftest.py); the TLS Prosody is tests/conftest.py's tls_prosody
(tests/lib/prosody.py, tls=True).
"""

import os
import subprocess


from test_omemo_prosody import Endpoint

PIN_REFUSED = "-33 server certificate does not match cert_pin_sha256"
UNTRUSTED = "-34 server certificate not trusted (set ca_file or cert_pin_sha256)"


def account(ep, prosody, **settings):
    """Rewrites ep's account file: no allow_plaintext, plus settings."""
    lines = ["jid = " + ep.jid, "password = pw", "host = " + prosody.host,
             "port = %d" % prosody.port,
             "db = " + os.path.join(os.path.dirname(ep.conf), ep.jid.split("@")[0] + ".db")]
    lines += ["%s = %s" % kv for kv in settings.items()]
    with open(ep.conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return ep


def run_refused(moonwire_bin, ep, peer_jid):
    """Starts ep, asks it at once to send to peer_jid, and returns
    (exit status, stdout lines, stderr) once it gave up."""
    p = subprocess.run([moonwire_bin, "__omemo_client", "-c", ep.conf],
                       input="send %s secret\nquit\n" % peer_jid,
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout.splitlines(), p.stderr


def session_log(prosody):
    with open(prosody.log_path, errors="replace") as f:
        return f.read()


def test_ca_file_and_right_pin_connect_over_tls(moonwire_bin, tls_prosody, tmp_path):
    alice = account(Endpoint(moonwire_bin, tls_prosody, str(tmp_path / "a"), "alice"),
                    tls_prosody, ca_file=tls_prosody.cert_path)
    bob = account(Endpoint(moonwire_bin, tls_prosody, str(tmp_path / "b"), "bob"),
                  tls_prosody, cert_pin_sha256=tls_prosody.cert_sha256)
    try:
        alice.start()
        bob.start()
        alice.trust(bob)
        bob.trust(alice)
        alice.send(bob, "over tls")
        assert bob.recv() == (alice.jid, alice.device, "verified", "over tls")
        bob.send(alice, "pinned")
        assert alice.recv()[3] == "pinned"
    finally:
        alice.stop()
        bob.stop()
    log = session_log(tls_prosody)
    # the server requires encryption: both logged in over TLS
    assert "Authenticated as alice@localhost" in log
    assert "Authenticated as bob@localhost" in log


def test_plaintext_refused_by_tls_server(moonwire_bin, tls_prosody, tmp_path):
    """Control: the server really demands TLS (so the logins above used it)."""
    ep = Endpoint(moonwire_bin, tls_prosody, str(tmp_path / "p"), "plain")  # allow_plaintext
    rc, out, err = run_refused(moonwire_bin, ep, "nobody@localhost")
    assert rc == 1, (out, err)
    assert not any(l.startswith("ready") for l in out), out
    assert "Authenticated as plain@localhost" not in session_log(tls_prosody)


def test_wrong_pin_refused_before_login(moonwire_bin, tls_prosody, tmp_path):
    ep = account(Endpoint(moonwire_bin, tls_prosody, str(tmp_path / "w"), "agent"),
                 tls_prosody, cert_pin_sha256="00" * 32)
    rc, out, err = run_refused(moonwire_bin, ep, "bob@localhost")
    assert rc == 1, (out, err)
    assert "connect-error " + PIN_REFUSED in out, out
    assert "moonwire: connect: server certificate does not match cert_pin_sha256" in err
    assert not any(l.startswith(("ready", "sent")) for l in out), out
    log = session_log(tls_prosody)
    assert "Authenticated as agent@localhost" not in log   # password never sent
    assert "<message" not in log


def test_wrong_pin_with_valid_ca_refused(moonwire_bin, tls_prosody, tmp_path):
    """The CA accepts the certificate, the pin does not: the pin wins.  This
    refusal comes after login (libstrophe shows a CA-valid certificate only
    once connected) but before presence, PEP or any message."""
    ep = account(Endpoint(moonwire_bin, tls_prosody, str(tmp_path / "w"), "agent"),
                 tls_prosody, ca_file=tls_prosody.cert_path, cert_pin_sha256="ab" * 32)
    rc, out, err = run_refused(moonwire_bin, ep, "bob@localhost")
    assert rc == 1, (out, err)
    assert "connect-error " + PIN_REFUSED in out, out
    assert "moonwire: connect: server certificate does not match cert_pin_sha256" in err
    assert not any(l.startswith(("ready", "sent")) for l in out), out
    log = session_log(tls_prosody)
    assert "<message" not in log
    assert "<presence" not in log
    assert "eu.siacs.conversations.axolotl" not in log      # nothing published


def test_no_ca_no_pin_not_trusted(moonwire_bin, tls_prosody, tmp_path):
    ep = account(Endpoint(moonwire_bin, tls_prosody, str(tmp_path / "n"), "agent"),
                 tls_prosody)
    rc, out, err = run_refused(moonwire_bin, ep, "bob@localhost")
    assert rc == 1, (out, err)
    assert "connect-error " + UNTRUSTED in out, out
    assert "moonwire: connect: server certificate not trusted" in err
    assert not any(l.startswith(("ready", "sent")) for l in out), out
    assert "Authenticated as agent@localhost" not in session_log(tls_prosody)
