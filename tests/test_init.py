"""`moonwire init agent|operator`: the guided setup (issue 14 item 4).

Why this exists: `init` writes the files an agent and an operator start
from.  What it writes must be accepted by the agent's own checks (`moonwire
agent --check`, `moonwire fingerprint`), with private modes, and what it
refuses must leave nothing behind: no file, no directory, no staging
leftover, no identity -- and a file that was there before is never touched
without --force.  No network is needed (tests/e2e/test_init_e2e.py runs a
job through Prosody with an agent and an operator set up only by `init`).

Fixtures: moonwire_bin (tests/conftest.py).
"""

import os
import pathlib
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

FP = r"[0-9a-f]{8}(?:-[0-9a-f]{8}){7}"


def run(moonwire_bin, *args, password="secret-pw\n", env=None):
    return subprocess.run([moonwire_bin] + list(args), input=password, capture_output=True,
                          text=True, timeout=60, env=env)


def keygen(path, kind="ed25519"):
    extra = ["-b", "2048"] if kind == "rsa" else []
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "alice@ops", "-f",
                    str(path)] + extra, check=True)
    return str(path)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def tree(root):
    """Every path under root (relative), to show that nothing was written."""
    out = []
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


@pytest.fixture
def keys(tmp_path):
    k = tmp_path / "keys"
    k.mkdir()
    return {"ed": keygen(k / "alice"), "rsa": keygen(k / "rsa", "rsa"),
            "ecdsa": keygen(k / "ecdsa", "ecdsa")}


def agent_args(tmp_path, keys, *extra, jid="router7@example.org"):
    return ["init", "agent", "--jid", jid, "--allowed-signer", keys["ed"] + ".pub",
            "--principal", "alice@ops", "--dir", str(tmp_path / "etc" / "moonwire"),
            "--state-dir", str(tmp_path / "var" / "lib" / "moonwire")] + list(extra)


def test_agent_files_pass_the_agents_own_check(moonwire_bin, tmp_path, keys):
    p = run(moonwire_bin, *agent_args(tmp_path, keys, "--operator", "alice@example.org",
                                      "--host", "127.0.0.1", "--port", "15222"))
    assert p.returncode == 0, p.stderr
    etc = tmp_path / "etc" / "moonwire"
    state = tmp_path / "var" / "lib" / "moonwire"
    conf = str(etc / "agent.conf")
    c = subprocess.run([moonwire_bin, "agent", "-c", conf, "--check"], capture_output=True,
                       text=True)
    assert c.returncode == 0 and "configuration ok" in c.stdout, c.stdout + c.stderr
    assert "WARNING" not in c.stdout
    assert "1 allow lines" in c.stdout
    # the files, as spec/agent.md and spec/policy.md describe them
    text = (etc / "agent.conf").read_text()
    for line in ("jid = router7@example.org", "password_file = password",
                 "host = 127.0.0.1", "port = 15222", "db = %s/identity.db" % state,
                 "state_dir = %s" % state, "allowed_signers = allowed_signers",
                 "policy = policy"):
        assert re.search(r"^%s$" % re.escape(line), text, re.M), (line, text)
    pol = (etc / "policy").read_text()
    assert re.search(r"^profile status\n  sys\n", pol, re.M), pol
    assert re.search(r"^allow alice@ops alice@example.org status$", pol, re.M), pol
    assert not re.search(r"^\s*(read|write|exec|kv|command)\b", pol, re.M), pol
    with open(keys["ed"] + ".pub") as f:
        typ, b64 = f.read().split()[:2]
    signers = [l for l in (etc / "allowed_signers").read_text().splitlines()
               if l and not l.startswith("#")]
    assert signers == ['alice@ops namespaces="moonwire-job" %s %s' % (typ, b64)]
    assert (etc / "password").read_text() == "secret-pw\n"
    # modes: secrets private, the rest group-readable, nothing for others
    assert mode(etc / "password") == 0o600
    for n in ("agent.conf", "policy", "allowed_signers"):
        assert mode(etc / n) == 0o640, n
    assert mode(etc) == 0o750 and mode(state) == 0o700
    assert mode(state / "identity.db") == 0o600
    assert [n for n in os.listdir(etc) if n.startswith(".")] == []
    # the identity printed is the one `moonwire fingerprint` reads
    fp = subprocess.run([moonwire_bin, "fingerprint", "-c", conf], capture_output=True,
                        text=True, check=True).stdout
    assert fp in p.stdout, (fp, p.stdout)
    g = re.search(r"^fingerprint: (%s)$" % FP, fp, re.M).group(1)
    assert re.search(r"^    moonwire trust -c OPERATOR_CONF router7@example.org %s$" % g,
                     p.stdout, re.M), p.stdout
    assert "moonwire trust -c %s alice@example.org OPERATOR_FINGERPRINT" % conf in p.stdout


def test_agent_without_operator_allows_nobody(moonwire_bin, tmp_path, keys):
    p = run(moonwire_bin, *agent_args(tmp_path, keys))
    assert p.returncode == 0, p.stderr
    conf = str(tmp_path / "etc" / "moonwire" / "agent.conf")
    c = subprocess.run([moonwire_bin, "agent", "-c", conf, "--check"], capture_output=True,
                       text=True)
    assert c.returncode == 0 and "0 allow lines" in c.stdout, c.stdout + c.stderr
    assert "nobody may run jobs" in p.stdout


def test_password_file_and_ca_file(moonwire_bin, tmp_path, keys):
    pw = tmp_path / "pw.txt"
    pw.write_text("from-a-file\nsecond line ignored\n")
    ca = tmp_path / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(tmp_path / "ca.key"),
                    "-out", str(ca), "-days", "2", "-subj", "/CN=test-ca"],
                   check=True, capture_output=True)
    p = run(moonwire_bin, *agent_args(tmp_path, keys, "--password-file", str(pw),
                                      "--ca-file", str(ca)), password="")
    assert p.returncode == 0, p.stderr
    etc = tmp_path / "etc" / "moonwire"
    assert (etc / "password").read_text() == "from-a-file\n"
    assert "ca_file = %s\n" % ca in (etc / "agent.conf").read_text()
    c = subprocess.run([moonwire_bin, "agent", "-c", str(etc / "agent.conf"), "--check"],
                       capture_output=True, text=True)
    assert c.returncode == 0, c.stderr


def test_operator_account_file(moonwire_bin, tmp_path, keys):
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home))
    p = run(moonwire_bin, "init", "operator", "--jid", "alice@example.org", "--signing-key",
            keys["ed"], "--host", "xmpp.example.org", "--port", "5222", env=env)
    assert p.returncode == 0, p.stderr
    d = home / ".config" / "moonwire"
    conf = d / "alice.conf"              # the default: LOCALPART.conf
    text = conf.read_text()
    for line in ("jid = alice@example.org", "password_file = alice.password",
                 "host = xmpp.example.org", "port = 5222", "db = alice.db",
                 "signing_key = %s" % keys["ed"]):
        assert re.search(r"^%s$" % re.escape(line), text, re.M), (line, text)
    assert (d / "alice.password").read_text() == "secret-pw\n"
    assert mode(conf) == 0o600 and mode(d / "alice.password") == 0o600
    assert mode(d / "alice.db") == 0o600 and mode(d) == 0o700
    fp = subprocess.run([moonwire_bin, "fingerprint", "-c", str(conf)], capture_output=True,
                        text=True, check=True, env=env).stdout
    assert fp in p.stdout
    g = re.search(r"^fingerprint: (%s)$" % FP, fp, re.M).group(1)
    assert re.search(r"^    moonwire trust -c AGENT_CONF alice@example.org %s$" % g,
                     p.stdout, re.M), p.stdout
    # `moonwire send` takes the account file as it is (the key is found:
    # it gets as far as compiling the program and refusing its syntax)
    bad = tmp_path / "bad.lua"
    bad.write_text("return (\n")
    s = subprocess.run([moonwire_bin, "send", "-c", str(conf), "--to", "r@example.org",
                        str(bad)], capture_output=True, text=True, env=env, timeout=30)
    assert s.returncode == 3 and "nothing was signed" in s.stderr, s.stderr


def test_operator_with_a_pub_key_and_a_file(moonwire_bin, tmp_path, keys):
    conf = tmp_path / "ops" / "bob.conf"
    p = run(moonwire_bin, "init", "operator", "--jid", "bob@example.org", "--signing-key",
            keys["ed"] + ".pub", "--file", str(conf))
    assert p.returncode == 0, p.stderr
    assert "signing_key = %s.pub\n" % keys["ed"] in conf.read_text()
    assert sorted(os.listdir(conf.parent)) == ["bob.conf", "bob.db", "bob.password"]


# ---- refusals: exit 2, a clear message, nothing written ----

REFUSALS = [
    # (name, how to change the agent arguments, message)
    ("rsa key", lambda a, k: a.__setitem__(5, k["rsa"] + ".pub"),
     r"ssh-rsa' is not supported .*only Ed25519"),
    ("ecdsa key", lambda a, k: a.__setitem__(5, k["ecdsa"] + ".pub"),
     r"ecdsa-sha2-nistp256' is not supported"),
    ("missing .pub", lambda a, k: a.__setitem__(5, k["ed"] + ".nope"),
     r"--allowed-signer .*: No such file"),
    ("a private key as .pub", lambda a, k: a.__setitem__(5, k["ed"]),
     r"--allowed-signer"),
    ("jid with resource", lambda a, k: a.__setitem__(3, "router7@example.org/res"),
     r"--jid .*not a bare JID"),
    ("jid without domain", lambda a, k: a.__setitem__(3, "router7"), r"not a bare JID"),
    ("jid with a space", lambda a, k: a.__setitem__(3, "r 7@example.org"), r"not a bare JID"),
    ("jid with newline", lambda a, k: a.__setitem__(3, "r7@example.org\nallow_plaintext = yes"),
     r"not a bare JID"),
    ("bad operator jid", lambda a, k: a.extend(["--operator", "alice"]),
     r"--operator .*not a bare JID"),
    ("bad principal", lambda a, k: a.__setitem__(7, "alice,*"), r"--principal"),
    ("bad port", lambda a, k: a.extend(["--port", "70000"]), r"--port"),
    ("ca file not a certificate", lambda a, k: a.extend(["--ca-file", k["ed"] + ".pub"]),
     r"--ca-file: .*certificate"),
    ("unknown flag", lambda a, k: a.append("--bogus"), r"usage: moonwire init"),
    ("operand", lambda a, k: a.append("extra"), r"unexpected argument"),
]


@pytest.mark.parametrize("name,change,message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_agent_refusals_write_nothing(moonwire_bin, tmp_path, keys, name, change, message):
    args = agent_args(tmp_path, keys)
    change(args, keys)
    before = tree(tmp_path)
    p = run(moonwire_bin, *args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert re.search(message, p.stderr), p.stderr
    assert tree(tmp_path) == before


def test_agent_refuses_without_a_password(moonwire_bin, tmp_path, keys):
    before = tree(tmp_path)
    p = run(moonwire_bin, *agent_args(tmp_path, keys), password="")
    assert p.returncode == 2 and "no password" in p.stderr, p.stderr
    p = run(moonwire_bin, *agent_args(tmp_path, keys), password="\n")
    assert p.returncode == 2 and "empty" in p.stderr, p.stderr
    assert tree(tmp_path) == before


def test_operator_refusals_write_nothing(moonwire_bin, tmp_path, keys):
    conf = str(tmp_path / "ops" / "alice.conf")
    before = tree(tmp_path)
    for args, message in [
            (["--jid", "alice@example.org"], r"--signing-key KEY is required"),
            (["--jid", "alice@example.org", "--signing-key", str(tmp_path / "nokey")],
             r"--signing-key .*No such file"),
            (["--jid", "alice@example.org", "--signing-key", keys["rsa"]],
             r"ssh-ed25519"),
            (["--jid", "alice@example.org", "--signing-key", keys["rsa"] + ".pub"],
             r"ssh-rsa' is not supported"),
            (["--jid", "alice", "--signing-key", keys["ed"]], r"not a bare JID"),
            (["--signing-key", keys["ed"]], r"--jid JID is required")]:
        p = run(moonwire_bin, "init", "operator", "--file", conf, *args)
        assert p.returncode == 2, (args, p.stderr)
        assert re.search(message, p.stderr), (args, p.stderr)
    assert tree(tmp_path) == before


def test_existing_files_are_not_overwritten_without_force(moonwire_bin, tmp_path, keys):
    p = run(moonwire_bin, *agent_args(tmp_path, keys, "--operator", "alice@example.org"))
    assert p.returncode == 0, p.stderr
    etc = tmp_path / "etc" / "moonwire"
    old = {n: (etc / n).read_bytes() for n in os.listdir(etc)}
    fp = re.search(r"^fingerprint: (%s)$" % FP, p.stdout, re.M).group(1)
    before = tree(tmp_path)
    p = run(moonwire_bin, *agent_args(tmp_path, keys, "--principal", "bob@ops"),
            password="other\n")
    assert p.returncode == 2, p.stderr
    for n in ("agent.conf", "policy", "allowed_signers", "password"):
        assert "%s exists; not overwritten (--force replaces it)" % (etc / n) in p.stderr
    assert {n: (etc / n).read_bytes() for n in os.listdir(etc)} == old
    assert tree(tmp_path) == before
    # one existing file is enough to refuse all of them
    os.unlink(etc / "policy")
    os.unlink(etc / "agent.conf")
    p = run(moonwire_bin, *agent_args(tmp_path, keys))
    assert p.returncode == 2 and "password exists" in p.stderr, p.stderr
    assert sorted(os.listdir(etc)) == ["allowed_signers", "password"]

    # --force replaces the files; the identity is kept (operators trust it)
    p = run(moonwire_bin, *agent_args(tmp_path, keys, "--principal", "bob@ops", "--force"),
            password="other\n")
    assert p.returncode == 0, p.stderr
    assert "kept the existing" in p.stdout
    assert re.search(r"^fingerprint: (%s)$" % FP, p.stdout, re.M).group(1) == fp
    assert (etc / "password").read_text() == "other\n"
    assert "bob@ops namespaces=" in (etc / "allowed_signers").read_text()
    assert mode(etc / "password") == 0o600 and mode(etc / "policy") == 0o640
    assert [n for n in os.listdir(etc) if n.startswith(".")] == []


def test_operator_force(moonwire_bin, tmp_path, keys):
    conf = tmp_path / "ops" / "alice.conf"
    args = ["init", "operator", "--jid", "alice@example.org", "--signing-key", keys["ed"],
            "--file", str(conf)]
    assert run(moonwire_bin, *args).returncode == 0
    old = conf.read_text()
    p = run(moonwire_bin, *args, "--host", "h.example.org")
    assert p.returncode == 2 and "exists; not overwritten" in p.stderr, p.stderr
    assert conf.read_text() == old
    p = run(moonwire_bin, *args, "--host", "h.example.org", "--force")
    assert p.returncode == 0, p.stderr
    assert "host = h.example.org\n" in conf.read_text()


def test_identity_of_another_jid_is_never_replaced(moonwire_bin, tmp_path, keys):
    assert run(moonwire_bin, *agent_args(tmp_path, keys)).returncode == 0
    etc = tmp_path / "etc" / "moonwire"
    old = {n: (etc / n).read_bytes() for n in os.listdir(etc)}
    db = tmp_path / "var" / "lib" / "moonwire" / "identity.db"
    fp_before = subprocess.run([moonwire_bin, "fingerprint", "--db", str(db)],
                               capture_output=True, text=True, check=True).stdout
    p = run(moonwire_bin, *agent_args(tmp_path, keys, "--force", jid="other@example.org"))
    assert p.returncode == 2, p.stderr
    assert "belongs to another JID" in p.stderr and "never replaced" in p.stderr
    assert {n: (etc / n).read_bytes() for n in os.listdir(etc)} == old
    assert subprocess.run([moonwire_bin, "fingerprint", "--db", str(db)], capture_output=True,
                          text=True, check=True).stdout == fp_before


def test_a_failed_check_removes_what_this_run_created(moonwire_bin, tmp_path, keys):
    # identity.db is a directory: the agent's check refuses it after the
    # directories were made and the files staged; all of it goes again
    state = tmp_path / "var" / "lib" / "moonwire"
    (state / "identity.db").mkdir(parents=True)
    before = tree(tmp_path)
    p = run(moonwire_bin, *agent_args(tmp_path, keys))
    assert p.returncode == 2, p.stderr
    assert re.search(r"agent\.conf:\d+: db: .*identity\.db is not a regular file", p.stderr), \
        p.stderr
    assert str(tmp_path / "etc" / "moonwire" / "agent.conf") in p.stderr   # not the staging name
    assert tree(tmp_path) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs root")
def test_user_owns_the_secrets_root_keeps_the_configuration(moonwire_bin, keys):
    # pytest's tmp_path is under a directory only root may enter
    tmp = tempfile.mkdtemp(prefix="mw-init-user-")
    try:
        os.chmod(tmp, 0o755)
        _user_owns(moonwire_bin, pathlib.Path(tmp), keys)
    finally:
        shutil.rmtree(tmp)


def _user_owns(moonwire_bin, tmp_path, keys):
    p = run(moonwire_bin, *agent_args(tmp_path, keys, "--user", "nobody"))
    assert p.returncode == 0, p.stderr
    etc = tmp_path / "etc" / "moonwire"
    state = tmp_path / "var" / "lib" / "moonwire"
    nobody = pwd.getpwnam("nobody")
    st = os.stat(etc / "password")
    assert (st.st_uid, st.st_gid, mode(etc / "password")) == (nobody.pw_uid, nobody.pw_gid, 0o600)
    for n in ("agent.conf", "policy", "allowed_signers"):
        st = os.stat(etc / n)
        assert (st.st_uid, st.st_gid, mode(etc / n)) == (0, nobody.pw_gid, 0o640), n
    st = os.stat(etc)
    assert (st.st_uid, st.st_gid, mode(etc)) == (0, nobody.pw_gid, 0o750)
    for path in (state, state / "identity.db"):
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid), path
    assert "sudo -u nobody moonwire trust -c %s" % (etc / "agent.conf") in p.stdout
    # the service user can check and read its identity; it cannot write its policy
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=%d" % nobody.pw_gid, "--clear-groups"]
    c = subprocess.run(as_nobody + [moonwire_bin, "agent", "-c", str(etc / "agent.conf"),
                                    "--check"], capture_output=True, text=True)
    assert c.returncode == 0 and "configuration ok" in c.stdout, c.stdout + c.stderr
    f = subprocess.run(as_nobody + [moonwire_bin, "fingerprint", "-c",
                                    str(etc / "agent.conf")], capture_output=True, text=True)
    assert f.returncode == 0 and f.stdout in p.stdout, f.stderr


def test_user_needs_root_or_is_refused(moonwire_bin, tmp_path, keys):
    before = tree(tmp_path)
    p = run(moonwire_bin, *agent_args(tmp_path, keys, "--user", "no-such-user-here"))
    assert p.returncode == 2 and "no such user" in p.stderr, p.stderr
    assert tree(tmp_path) == before


def test_help_and_usage(moonwire_bin):
    p = subprocess.run([moonwire_bin, "init", "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    for o in ("--jid", "--allowed-signer", "--principal", "--operator", "--dir",
              "--state-dir", "--user", "--password-file", "--host", "--port", "--ca-file",
              "--force", "--signing-key", "--file"):
        assert o in p.stdout, o
    for args in (["init"], ["init", "robot"]):
        p = subprocess.run([moonwire_bin] + args, capture_output=True, text=True)
        assert p.returncode == 2 and "usage: moonwire init" in p.stderr, args
    p = subprocess.run([moonwire_bin, "init", "agent", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "usage: moonwire init agent" in p.stdout


def test_interrupted_while_waiting_for_the_password(moonwire_bin, tmp_path, keys):
    before = tree(tmp_path)
    p = subprocess.Popen([moonwire_bin] + agent_args(tmp_path, keys), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signal.SIGTERM and "interrupted" in err, (p.returncode, err)
    assert tree(tmp_path) == before
