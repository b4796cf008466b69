"""The first hour of a new user (issue 15): every failure met while setting
up an agent and an operator on a TLS server is named with what to do,
survivable (no crash, no silent stall) and documented.

Why this exists: a fresh deployment meets a missing ca_file, a wrong pin, a
wrong password, a server restart, an operator not verified by the agent,
relative paths in account files and loose file modes.  Each case here checks
the exact message, the exit status of spec/cli.md and that nothing crashed.

Fixtures: moonwire_bin (tests/conftest.py); a TLS Prosody with its own
self-signed certificate (a private CA of one) is started here
(tests/lib/prosody.py, tls=True); agents and operators come from
tests/lib/agentkit.py with their account files rewritten for TLS.
"""

import os
import re
import stat
import subprocess
import time

import pytest

from agentkit import Kit, run
from prosody import free_port

HELLO = "return 1 + 1\n"


@pytest.fixture
def tls_kit(request, moonwire_bin, tls_prosody, tmp_path):
    k = Kit(moonwire_bin, tls_prosody, tmp_path / "kit")
    try:
        yield k
    finally:
        for a in k.agents:
            a.stop()
        k.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is None or rep.failed:
            for a in k.agents:
                print("\n=== agent %s log\n%s" % (a.jid, "\n".join(a.log[-60:])))


def over_tls(ident, trust="ca", **extra):
    """ident's account file: TLS with ca_file (trust="ca"), the certificate
    pin only (trust="pin"), or neither (trust=None); extra keys replace."""
    srv = ident.kit.prosody

    def lines():
        d = {"jid": ident.jid, "password": ident.password, "host": srv.host,
             "port": str(srv.port), "db": ident.db}
        if trust == "ca":
            d["ca_file"] = srv.cert_path
        elif trust == "pin":
            d["cert_pin_sha256"] = srv.cert_sha256
        d.update(extra)
        return "".join("%s = %s\n" % kv for kv in d.items() if kv[1] is not None)
    ident.account_lines = lines
    ident.write_conf()
    return ident


def deployment(kit, agent_trust="ca", op_trust="ca", verify_op=True):
    agent = over_tls(kit.agent(), agent_trust)
    op = over_tls(kit.operator("alice"), op_trust)
    agent.allow(op)
    agent.write_conf()
    if verify_op:
        kit.trust(agent, op)
    else:
        op.trust(agent)          # the operator verified the agent, not back
    prog = os.path.join(kit.workdir, "hello.lua")
    with open(prog, "w") as f:
        f.write(HELLO)
    return agent, op, prog


def moonwire(kit, *args, **kw):
    return run([kit.moonwire] + [str(a) for a in args], check=False, **kw)


# ---- 1. no crash, no silent stall ----

def test_missing_ca_file_named_at_check_and_start(tls_kit):
    agent = over_tls(tls_kit.agent(), ca_file="/nonexistent/ca.pem")
    agent.write_conf()
    line = [i + 1 for i, l in enumerate(open(agent.conf)) if l.startswith("ca_file")][0]
    want = "%s:%d: ca_file /nonexistent/ca.pem: No such file or directory" % (agent.conf, line)
    p = moonwire(tls_kit, "agent", "-c", agent.conf, "--check")
    assert p.returncode == 2 and want in p.stderr, p.stderr
    p = moonwire(tls_kit, "agent", "-c", agent.conf, timeout=20)
    assert p.returncode == 2 and want in p.stderr, p.stderr      # not SIGSEGV


def test_ca_file_removed_while_running_is_logged_not_a_crash(tls_kit, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(open(tls_kit.prosody.cert_path).read())
    agent = over_tls(tls_kit.agent(), ca_file=str(ca))
    agent.start()
    ca.unlink()
    tls_kit.prosody.restart()
    line = agent.wait_log(r"connect-failed .*ca_file", timeout=30)
    assert "%s: No such file or directory" % ca in line
    assert agent.wait_log(r"reconnect-scheduled .*kind=configuration")
    assert agent.running()


@pytest.mark.parametrize("trust", ["ca", "pin"])
def test_agent_reconnects_after_two_server_restarts(tls_kit, trust):
    agent, op, prog = deployment(tls_kit, agent_trust=trust)
    agent.start()
    for _ in range(2):
        tls_kit.prosody.restart()
        agent.wait_log(r"moonwire-agent: connected", timeout=40)
    assert not agent.grep("server certificate not trusted"), agent.log
    time.sleep(0.5)
    p, res = op.send(agent, prog)
    assert p.returncode == 0 and res[0]["values"] == [2], (p.stdout, p.stderr)
    assert agent.running()


# ---- 2. connection failures named ----

def test_send_names_connection_failures(tls_kit):
    agent, op, prog = deployment(tls_kit)
    srv = tls_kit.prosody
    cases = [
        ({"ca_file": None}, "moonwire send: server certificate not trusted: set ca_file "
                            "or cert_pin_sha256 (127.0.0.1:%d)" % srv.port),
        ({"ca_file": None, "cert_pin_sha256": "ab" * 32},
         "moonwire send: server certificate does not match cert_pin_sha256"),
        ({"ca_file": srv.cert_path, "cert_pin_sha256": "ab" * 32},
         "moonwire send: server certificate does not match cert_pin_sha256"),
        ({"password": "wrong"}, "moonwire send: login refused: wrong password for "
                                "alice@localhost"),
        ({"allow_plaintext": "yes", "ca_file": None},
         "moonwire send: server requires TLS (127.0.0.1:%d)" % srv.port),
    ]
    for extra, want in cases:
        over_tls(op, "ca", **extra)
        p, _ = op.send(agent, prog, json_out=False, timeout="10s")
        assert p.returncode == 6, (extra, p.stderr)
        assert want in p.stderr, (extra, p.stderr)
    closed = free_port()
    over_tls(op, "ca", port=str(closed))
    p, _ = op.send(agent, prog, json_out=False, timeout="10s")
    assert p.returncode == 6
    assert "moonwire send: connection refused by 127.0.0.1:%d" % closed in p.stderr, p.stderr


def test_agent_backs_off_on_wrong_password_and_names_it(tls_kit):
    agent = over_tls(tls_kit.agent(), password="wrong")
    agent.start(wait=False)
    line = agent.wait_log(r"connect-failed", timeout=30)
    assert 'reason="login refused: wrong password for agent@localhost' in line, line
    line = agent.wait_log(r"reconnect-scheduled", timeout=5)
    ms = int(re.search(r"in_ms=(\d+)", line).group(1))
    assert ms >= 48000 and "kind=configuration" in line, line
    assert agent.running()


def test_agent_names_untrusted_certificate(tls_kit):
    agent = over_tls(tls_kit.agent(), trust=None)
    agent.start(wait=False)
    line = agent.wait_log(r"connect-failed", timeout=30)
    assert "server certificate not trusted: set ca_file or cert_pin_sha256" in line, line
    assert "kind=configuration" in agent.wait_log(r"reconnect-scheduled", timeout=5)


# ---- 3. waiting in vain ----

def test_unverified_operator_is_told_what_to_do(tls_kit):
    agent, op, prog = deployment(tls_kit, verify_op=False)
    agent.start()
    p, _ = op.send(agent, prog, json_out=False, timeout="4s")
    assert p.returncode == 6, p.stderr
    assert "no result for job" in p.stderr
    assert "it has not verified this device" in p.stderr, p.stderr
    fp = op.fingerprint()
    assert ("moonwire trust -c AGENT_CONFIG alice@localhost %s" % fp) in p.stderr, p.stderr


def test_unknown_account_is_named(tls_kit):
    agent, op, prog = deployment(tls_kit)
    run([tls_kit.moonwire, "trust", "-c", op.conf, "ghost@localhost", "ab" * 32])
    p, _ = op.send("ghost@localhost", prog, json_out=False, timeout="10s")
    assert p.returncode == 6, p.stderr
    assert "server returned an error" not in p.stderr
    # Prosody answers forbidden for a missing account (it hides which exist)
    assert "moonwire send: ghost@localhost: no such account or no OMEMO device " \
        "list (forbidden): ghost@localhost does not exist, or no agent has ever " \
        "connected with it" in p.stderr, p.stderr


def test_foreign_domain_and_unverified_agent_are_named(tls_kit):
    agent, op, prog = deployment(tls_kit)
    op.fingerprint()
    run([tls_kit.moonwire, "trust", "-c", op.conf, "ghost@nowhere.invalid", "ab" * 32])
    p, _ = op.send("ghost@nowhere.invalid", prog, json_out=False, timeout="15s")
    assert p.returncode == 6, p.stderr
    assert "server returned an error" not in p.stderr
    # the test server has no server-to-server module: not-allowed, with a text
    assert "moonwire send: ghost@nowhere.invalid: remote domain nowhere.invalid " \
        "unreachable (not-allowed" in p.stderr, p.stderr
    # an agent whose fingerprint the operator never verified: fails at once
    other = over_tls(tls_kit.agent("router9"))
    other.start()
    p, _ = op.send(other, prog, json_out=False, timeout="15s")
    assert p.returncode == 6, p.stderr
    assert ("moonwire send: router9@localhost: no trusted device to encrypt to: verify "
            "the agent's fingerprint first: moonwire trust -c %s router9@localhost "
            "FINGERPRINT" % op.conf) in p.stderr, p.stderr


def test_send_warns_about_exposed_key(tls_kit):
    agent, op, prog = deployment(tls_kit)
    agent.start()
    os.chmod(op.key, 0o644)
    p, res = op.send(agent, prog)
    assert p.returncode == 0, p.stderr
    assert ("moonwire send: WARNING: private key %s is readable by others (mode 0644): "
            "chmod 600 %s" % (op.key, op.key)) in p.stderr, p.stderr


# ---- 4. paths in account files ----

def test_relative_and_home_paths_resolve_against_the_file(tls_kit, tmp_path):
    op = tls_kit.operator("carol")
    home = tmp_path / "home"
    (home / "keys").mkdir(parents=True)
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "pw").write_text("pw\n")
    os.chmod(conf_dir / "pw", 0o600)
    conf = conf_dir / "carol.conf"
    conf.write_text("jid = %s\npassword_file = pw\ndb = ids/carol.db\nhost = 127.0.0.1\n"
                    "port = %d\nca_file = ~/keys/ca.pem\n" % (op.jid, tls_kit.prosody.port))
    (home / "keys" / "ca.pem").write_text(open(tls_kit.prosody.cert_path).read())
    (conf_dir / "ids").mkdir()
    env = dict(os.environ, HOME=str(home))
    outs = []
    for cwd in (str(tmp_path), "/"):
        p = subprocess.run([tls_kit.moonwire, "fingerprint", "-c", str(conf)], cwd=cwd,
                           env=env, capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        outs.append(p.stdout)
    assert outs[0] == outs[1]                      # one identity, wherever run
    assert os.path.exists(conf_dir / "ids" / "carol.db")
    assert not os.path.exists(tmp_path / "ids")


# ---- 5. --check ----

def test_check_names_files_lines_and_pin(tls_kit, tmp_path):
    agent = over_tls(tls_kit.agent())
    agent.write_conf()
    base = open(agent.conf).read()

    def check(text):
        with open(agent.conf, "w") as f:
            f.write(text)
        return moonwire(tls_kit, "agent", "-c", agent.conf, "--check")

    n = len(base.splitlines()) + 1
    p = check(base.replace("db = " + agent.db, "db = /nonexistent-dir/x.db"))
    line = [i + 1 for i, l in enumerate(base.splitlines()) if l.startswith("db =")][0]
    assert p.returncode == 2
    assert "%s:%d: db: directory /nonexistent-dir: No such file or directory" % (
        agent.conf, line) in p.stderr, p.stderr
    p = check(base + "cert_pin_sha256 = abcdef0123\n")
    assert p.returncode == 2
    assert ("%s:%d: cert_pin_sha256 must be 64 hex digits (the SHA-256 of the server "
            "certificate's DER form), not 10 digits" % (agent.conf, n)) in p.stderr, p.stderr
    p = check(base.replace("password = pw", "password_file = /nonexistent/pw"))
    assert p.returncode == 2
    assert "password_file /nonexistent/pw: No such file or directory" in p.stderr, p.stderr
    pw = tmp_path / "pw"
    pw.write_text("pw\n")
    os.chmod(pw, 0o644)
    p = check(base.replace("password = pw", "password_file = %s" % pw))
    assert p.returncode == 0, p.stderr
    assert "WARNING: password_file %s is readable by others (mode 0644): chmod 600 %s" % (
        pw, pw) in p.stdout, p.stdout
    assert "configuration ok" in p.stdout


# ---- 6. private files ----

def test_identity_database_private_whatever_the_umask(tls_kit):
    op = over_tls(tls_kit.operator("dave"))
    p = subprocess.run("umask 022; exec %s fingerprint -c %s" % (tls_kit.moonwire, op.conf),
                       shell=True, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(op.db).st_mode) == 0o600
    # a running agent keeps its -wal and -shm files open: private as well
    agent = over_tls(tls_kit.agent())
    old = os.umask(0o022)
    try:
        agent.start()
    finally:
        os.umask(old)
    for suffix in ("", "-wal", "-shm"):
        path = agent.db + suffix
        assert os.path.exists(path), path
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, path
    # a database an older version left readable is made private
    agent.stop()
    os.chmod(agent.db, 0o644)
    agent.start()
    assert stat.S_IMODE(os.stat(agent.db).st_mode) == 0o600


# ---- 8. smaller points ----

def test_smaller_points(tls_kit, tmp_path):
    op = over_tls(tls_kit.operator("erin"))
    bad = tmp_path / "broken.lua"
    bad.write_text("local x = 1\nreturn x +\n")
    p, _ = op.send("router7@localhost", str(bad), json_out=False)
    assert p.returncode == 3, p.stderr
    assert "moonwire send: broken.lua:3: unexpected symbol near <eof>" in p.stderr, p.stderr
    assert "nothing was signed or sent" in p.stderr
    p = moonwire(tls_kit, "send", "-c", op.conf, "--to", "router7", bad)
    assert p.returncode == 2
    assert "moonwire send: --to router7: not a bare JID (user@domain, no /resource)" \
        in p.stderr, p.stderr
    op.fingerprint()
    p = moonwire(tls_kit, "trust", "-c", op.conf, "alice@mw.test/phone", "ab" * 32)
    assert p.returncode == 2
    assert "moonwire: trust: alice@mw.test/phone: a bare JID is expected" in p.stderr, p.stderr
    assert "use alice@mw.test" in p.stderr
    good = tmp_path / "table.lua"
    good.write_text("return {a = 1, b = {2, 3}}\n")
    p = moonwire(tls_kit, "run", good)
    assert p.returncode == 0
    assert re.search(r"^returned: \{.*\}$", p.stdout, re.M), p.stdout
    p = moonwire(tls_kit, "--version")
    assert p.returncode == 0 and re.match(r"moonwire \d+\.\d+\.\d+", p.stdout), p.stdout


def test_foreground_log_lines_carry_timestamps(tls_kit):
    agent, op, prog = deployment(tls_kit)
    agent.start()
    line = agent.grep(r"moonwire-agent: connected")[0]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z moonwire-agent: connected",
                    line), line
