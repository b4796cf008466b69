"""`moonwire fingerprint|devices|trust|distrust` against a live identity.

Why this exists: these commands are how an owner decides which keys the
agent talks to, so their output must say exactly what spec/cli.md says,
the fingerprint must be the one the other side's client shows (checked
against python-omemo, an independent implementation), and a trust decision
made with the CLI must change what the running endpoint does.  The
identity database is used by a running `__omemo_client` at the same time
(WAL + busy timeout).

Fixtures: prosody, omemo_peers, moonwire_bin (tests/conftest.py).
"""

import re
import subprocess

from test_omemo_prosody import Endpoint

GROUPED = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){7}$")


def mw(moonwire_bin, *args):
    r = subprocess.run([moonwire_bin] + list(args), capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout, r.stderr


def grouped(fp):
    return "-".join(fp[i:i + 8] for i in range(0, 64, 8))


def fingerprint(moonwire_bin, *sel):
    rc, out, err = mw(moonwire_bin, "fingerprint", *sel)
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 4, out
    fields = dict(line.split(": ", 1) for line in lines)
    assert list(fields) == ["jid", "device", "fingerprint", "fingerprint-ed25519"], out
    assert GROUPED.match(fields["fingerprint"]), out
    # the OMEMO 2 rendering of the same key, as python's xeddsa converts it
    import xeddsa
    curve = bytes.fromhex(fields["fingerprint"].replace("-", ""))
    assert fields["fingerprint-ed25519"] == grouped(
        xeddsa.curve25519_pub_to_ed25519_pub(curve, False).hex()), out
    return fields


def test_cli_against_python_omemo(moonwire_bin, prosody, omemo_peers, tmp_path):
    py = omemo_peers("pyuser", trust="blind")
    ep = Endpoint(moonwire_bin, prosody, str(tmp_path / "mw"), "agent").start()
    conf = ep.conf
    db = conf[:-len("agent.conf")] + "agent.db"
    try:
        # fingerprint: the identity the running endpoint announced
        f = fingerprint(moonwire_bin, "-c", conf)
        assert f["jid"] == ep.jid
        assert int(f["device"]) == ep.device
        assert f["fingerprint"].replace("-", "") == ep.fp
        assert fingerprint(moonwire_bin, "--db", db) == f

        # nothing cached yet for the peer
        rc, out, err = mw(moonwire_bin, "devices", "-c", conf, py.jid)
        assert (rc, out) == (0, "")
        assert "no cached devices for " + py.jid in err

        # the peer writes first: its device and key are now cached, undecided
        py.send(ep.jid, "hello")
        assert ep.recv() == (py.jid, py.device_id, "undecided", "hello")
        rc, out, err = mw(moonwire_bin, "devices", "-c", conf, py.jid)
        assert rc == 0, err
        # known from its message only, not from a device list: inactive
        assert out == "%d inactive undecided %s session\n" % (py.device_id,
                                                              grouped(py.fingerprint))
        ep.cmd("refresh " + py.jid)
        assert ep.expect("refreshed")[1] == "0"
        rc, out, err = mw(moonwire_bin, "devices", "-c", conf, py.jid)
        assert out == "%d active undecided %s session\n" % (py.device_id, grouped(py.fingerprint))
        assert mw(moonwire_bin, "devices", "--db", db, py.jid)[1] == out

        # undecided: the endpoint does not encrypt to it
        ep.cmd("send %s not yet" % py.jid)
        assert ep.expect("sent")[1] == "-24"       # MW_OMEMO_E_NO_DEVICES

        # trust with the CLI while the endpoint runs (upper case, spaces)
        spaced = " ".join(py.fingerprint[i:i + 8] for i in range(0, 64, 8)).upper()
        rc, out, err = mw(moonwire_bin, "trust", "-c", conf, py.jid, spaced)
        assert rc == 0, err
        assert out == "%s device %d: verified %s\n" % (py.jid, py.device_id,
                                                       grouped(py.fingerprint))
        rc, out, _ = mw(moonwire_bin, "devices", "-c", conf, py.jid)
        assert out == "%d active verified %s session\n" % (py.device_id, grouped(py.fingerprint))
        ep.send_to(py.jid, "now trusted")
        assert py.expect_message(ep.jid, "now trusted", timeout=20)

        # python-omemo shows the same fingerprint for our device
        devs = [d for d in py.devices(ep.jid) if d["device_id"] == ep.device]
        assert len(devs) == 1, devs
        assert devs[0]["fingerprint"] == f["fingerprint"].replace("-", "")

        # distrust: devices says revoked, nothing is encrypted to it and
        # nothing from it is decrypted
        rc, out, err = mw(moonwire_bin, "distrust", "--db", db, py.jid, py.fingerprint)
        assert rc == 0, err
        assert out == "%s device %d: revoked %s\n" % (py.jid, py.device_id,
                                                      grouped(py.fingerprint))
        rc, out, _ = mw(moonwire_bin, "devices", "-c", conf, py.jid)
        assert out == "%d active revoked %s session\n" % (py.device_id, grouped(py.fingerprint))
        ep.cmd("send %s revoked" % py.jid)
        assert ep.expect("sent")[1] == "-24"
        py.send(ep.jid, "from a revoked key")
        ev = ep.expect("decrypt-error")
        assert ev[1] == "-19", ev                  # MW_OMEMO_E_UNTRUSTED

        # trusting again restores it
        rc, out, _ = mw(moonwire_bin, "trust", "-c", conf, py.jid, py.fingerprint)
        assert rc == 0
        rc, out, _ = mw(moonwire_bin, "devices", "-c", conf, py.jid)
        assert " verified " in out
    finally:
        ep.stop()


def test_cli_errors(moonwire_bin, prosody, tmp_path):
    ep = Endpoint(moonwire_bin, prosody, str(tmp_path / "mw"), "agent")
    conf = ep.conf
    # fingerprint creates the identity offline (no server needed)
    f = fingerprint(moonwire_bin, "-c", conf)
    fp = f["fingerprint"]

    # malformed fingerprints: usage error (2), a typed message, nothing stored
    for bad in ("zz", fp.replace("-", "")[:63], fp.replace("-", "") + "0", "g" * 64, ""):
        for cmd in ("trust", "distrust"):
            rc, out, err = mw(moonwire_bin, cmd, "-c", conf, "peer@localhost", bad)
            assert rc == 2, (bad, rc, out, err)
            assert out == ""
            assert err == "moonwire: %s: malformed fingerprint\n" % cmd, err

    # unknown JID: nothing cached (exit 0, empty list, a note on stderr) ...
    rc, out, err = mw(moonwire_bin, "devices", "-c", conf, "nobody@localhost")
    assert (rc, out, err) == (0, "", "moonwire: no cached devices for nobody@localhost\n")
    # ... and a key may be verified before it is ever seen
    other = "ab" * 32
    rc, out, err = mw(moonwire_bin, "trust", "-c", conf, "nobody@localhost", other)
    assert rc == 0, err
    assert out == ("nobody@localhost: verified %s (no device with this key seen yet; "
                   "it applies when one appears)\n" % grouped(other))
    # not a bare JID
    rc, out, err = mw(moonwire_bin, "devices", "-c", conf, "nobody@localhost/res")
    assert rc == 2 and out == "", err
    assert err == ("moonwire: devices: nobody@localhost/res: a bare JID is expected: "
                   "use nobody@localhost\n"), err

    # usage errors
    assert mw(moonwire_bin, "devices", "-c", conf)[0] == 2
    assert mw(moonwire_bin, "trust", "-c", conf, "nobody@localhost")[0] == 2
    assert mw(moonwire_bin, "fingerprint")[0] == 2
    assert mw(moonwire_bin, "fingerprint", "-c", conf, "--db", "x.db")[0] == 2
    # --db never creates: a missing database is an error (1), not created
    missing = str(tmp_path / "missing.db")
    rc, out, err = mw(moonwire_bin, "fingerprint", "--db", missing)
    assert rc == 1 and out == "" and missing in err
    assert not (tmp_path / "missing.db").exists()
