"""`moonwire sign` and `moonwire verify` against the real OpenSSH tools.

Why this exists: operators sign jobs with ssh-keygen or ssh-agent and owners
keep an ssh-keygen allowed_signers file, so moonwire must agree with OpenSSH
byte for byte in both directions: what moonwire signs, `ssh-keygen -Y verify`
accepts; what `ssh-keygen -Y sign` signs, `moonwire verify` accepts; and every
way a job can be wrong is refused with its exact code (spec/envelope.md).

Run: make pytest PYTEST_TARGETS=tests/test_signing.py
"""

import base64
import datetime
import os
import re
import signal
import subprocess
import time

import pytest

NS = "moonwire-job"
AGENT_JID = "agent@example.org"
BEGIN = b"\n-----BEGIN SSH SIGNATURE-----\n"


def run(args, input=None, env=None, check=False, timeout=60):
    p = subprocess.run(args, input=input, capture_output=True, timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s\n%s" % (args, p.returncode, p.stdout.decode(),
                                                      p.stderr.decode()))
    return p


def keygen(path, kind="ed25519", passphrase="", comment="test"):
    args = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", comment, "-f", str(path)]
    if kind == "rsa":
        args[4:4] = ["-b", "2048"]
    run(args, check=True)
    return str(path)


def pubkey(path):
    with open(path + ".pub") as f:
        return " ".join(f.read().split()[:2])


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def split(envelope):
    """The signed part and the armored signature of an envelope."""
    i = envelope.index(BEGIN)
    return envelope[:i], envelope[i + 1:]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    k = {
        "alice": keygen(d / "alice", comment="alice@example.org"),
        "mallory": keygen(d / "mallory"),
        "enc": keygen(d / "enc", passphrase="correct horse"),
        "rsa": keygen(d / "rsa", kind="rsa"),
        "ecdsa": keygen(d / "ecdsa", kind="ecdsa"),
    }
    signers = d / "allowed_signers"
    signers.write_text(
        "# who may sign moonwire jobs\n"
        "alice@example.org,ops@example.org namespaces=\"moonwire-job\" %s\n"
        "rsa@example.org %s\n"
        "ecdsa@example.org %s\n"
        "enc@example.org %s\n" % (pubkey(k["alice"]), pubkey(k["rsa"]), pubkey(k["ecdsa"]),
                                  pubkey(k["enc"])))
    k["signers"] = str(signers)
    k["dir"] = d
    return k


@pytest.fixture
def program(tmp_path):
    p = tmp_path / "job.lua"
    p.write_bytes(b"-- a job\nreturn 6 * 7\n")
    return str(p)


class Moonwire:
    def __init__(self, binary, tmp_path):
        self.bin = binary
        self.tmp = tmp_path

    def __call__(self, *args, input=None, env=None):
        return run([self.bin] + [str(a) for a in args], input=input, env=env)

    def sign(self, key, prog, *extra, env=None):
        p = self("sign", "-k", key, "--to", AGENT_JID, *extra, prog, env=env)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout

    def verify(self, signers, envelope, *extra):
        return self("verify", "-f", signers, *extra, "-", input=envelope)

    def refused(self, signers, envelope, code, *extra):
        p = self.verify(signers, envelope, *extra)
        err = p.stderr.decode()
        assert p.returncode == 1, (p.returncode, p.stdout, err)
        assert err.startswith("refused: %s: " % code), err
        assert p.stdout == b""
        return err

    def with_ssh_keygen(self, key, prepared, ns=NS, hashalg=None):
        """Signs a prepared file with ssh-keygen; returns the armored signature."""
        path = self.tmp / ("prepared-%d" % time.monotonic_ns())
        path.write_bytes(prepared)
        args = ["ssh-keygen", "-q", "-Y", "sign", "-f", key, "-n", ns]
        if hashalg:
            args += ["-O", "hashalg=" + hashalg]
        run(args + [str(path)], check=True)
        with open(str(path) + ".sig", "rb") as f:
            return f.read()


@pytest.fixture
def mw(moonwire_bin, tmp_path):
    return Moonwire(moonwire_bin, tmp_path)


def ssh_keygen_verify(keys, tmp_path, envelope, principal="alice@example.org"):
    part, sig = split(envelope)
    sigf = tmp_path / "part.sig"
    sigf.write_bytes(sig)
    return run(["ssh-keygen", "-Y", "verify", "-f", keys["signers"], "-I", principal,
                "-n", NS, "-s", str(sigf)], input=part)


# ---- both directions with ssh-keygen ----

def test_moonwire_sign_verifies_with_ssh_keygen(mw, keys, program, tmp_path):
    env = mw.sign(keys["alice"], program, "--job-id", "job-1", "--limit", "cpu=1s",
                  "--limit", "memory=8M")
    text = env.decode()
    assert text.startswith("moonwire-job 1\naudience: agent@example.org\njob-id: job-1\n")
    assert "\nlimits: cpu=1s memory=8M\nprogram-length: 22\n\n-- a job\nreturn 6 * 7\n\n" \
        "-----BEGIN SSH SIGNATURE-----\n" in text
    assert text.endswith("-----END SSH SIGNATURE-----\n")
    for line in split(env)[1].splitlines():
        assert len(line) <= 76
    p = ssh_keygen_verify(keys, tmp_path, env)
    assert p.returncode == 0, p.stderr
    assert b'Good "moonwire-job" signature for alice@example.org' in p.stdout
    # ...and only for a principal of that line.
    assert ssh_keygen_verify(keys, tmp_path, env, "eve@example.org").returncode != 0
    # A changed program byte fails in ssh-keygen too.
    assert ssh_keygen_verify(keys, tmp_path, env.replace(b"6 * 7", b"6 * 8")).returncode != 0


@pytest.mark.parametrize("hashalg", [None, "sha256", "sha512"])
def test_ssh_keygen_sign_then_moonwire(mw, keys, program, hashalg):
    prep = mw("sign", "--prepare", "--to", AGENT_JID, "--ttl", "10m", program)
    assert prep.returncode == 0, prep.stderr
    assert BEGIN not in prep.stdout and prep.stdout.endswith(b"return 6 * 7\n")
    sig = mw.with_ssh_keygen(keys["alice"], prep.stdout, hashalg=hashalg)
    sigf = mw.tmp / "job.sig"
    sigf.write_bytes(sig)
    preparedf = mw.tmp / "job"
    preparedf.write_bytes(prep.stdout)
    p = mw("sign", "--signature", sigf, preparedf)
    assert p.returncode == 0, p.stderr
    env = p.stdout
    assert env.startswith(prep.stdout + BEGIN)
    v = mw.verify(keys["signers"], env, "--audience", AGENT_JID)
    assert v.returncode == 0, v.stderr
    out = v.stdout.decode()
    assert out.startswith("ok\n")
    assert "\nprincipals: alice@example.org,ops@example.org\n" in out
    assert "\naudience: agent@example.org\n" in out
    m = re.search(r"^issued-at: (.*)$", out, re.M)
    n = re.search(r"^not-after: (.*)$", out, re.M)
    t0 = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ")
    t1 = datetime.datetime.strptime(n.group(1), "%Y-%m-%dT%H:%M:%SZ")
    assert (t1 - t0).total_seconds() == 600
    assert abs(time.time() - t0.replace(tzinfo=datetime.timezone.utc).timestamp()) < 60


def test_fingerprint_matches_ssh_keygen(mw, keys, program):
    env = mw.sign(keys["alice"], program)
    v = mw.verify(keys["signers"], env)
    assert v.returncode == 0, v.stderr
    fp = run(["ssh-keygen", "-l", "-f", keys["alice"] + ".pub"], check=True).stdout.split()[1]
    assert ("\nsigner: %s\n" % fp.decode()) in v.stdout.decode()


def test_ed25519_is_deterministic_like_ssh_keygen(mw, keys, program):
    prep = mw("sign", "--prepare", "--to", AGENT_JID, "--job-id", "same", program).stdout
    sig = mw.with_ssh_keygen(keys["alice"], prep)
    sigf = mw.tmp / "s.sig"
    sigf.write_bytes(sig)
    pf = mw.tmp / "p"
    pf.write_bytes(prep)
    env = mw("sign", "--signature", sigf, pf).stdout
    # moonwire's own signature over the same bytes is the same signature.
    r = run([mw.bin, "sign", "-k", keys["alice"], "--to", AGENT_JID, "--job-id", "same", program])
    assert r.returncode == 0, r.stderr
    if r.stdout.split(BEGIN)[0] != prep:   # the clock ticked between the two
        pytest.skip("clock moved between the two signatures")

    def blob(e):
        body = split(e)[1].decode().splitlines()[1:-1]
        return base64.b64decode("".join(body))
    assert blob(env) == blob(r.stdout)


# ---- refusals ----

def test_refusals_tampering(mw, keys, program):
    env = mw.sign(keys["alice"], program)
    assert mw.verify(keys["signers"], env).returncode == 0
    mw.refused(keys["signers"], env.replace(b"6 * 7", b"6 * 8"), "bad_signature")
    mw.refused(keys["signers"], env.replace(b"agent@example.org", b"agent@example.net"),
               "bad_signature")
    mw.refused(keys["signers"], env, "wrong_audience", "--audience", "other@example.org")
    mw.refused(keys["signers"], env.replace(b"moonwire-job 1", b"moonwire-job 2"), "version")
    mw.refused(keys["signers"], b"hello there\n", "malformed")
    mw.refused(keys["signers"], env.replace(b"\n", b"\r\n"), "malformed")
    mw.refused(keys["signers"], env + b"trailing garbage\n", "malformed")
    mw.refused(keys["signers"], b"x" * (120 * 1024 + 1), "oversized")
    # A signature line damaged: the armor no longer decodes.
    part, sig = split(env)
    lines = sig.split(b"\n")
    lines[1] = b"!" + lines[1][1:]
    mw.refused(keys["signers"], part + b"\n" + b"\n".join(lines), "bad_signature")


def test_refusals_time(mw, keys, program):
    env = mw.sign(keys["alice"], program, "--ttl", "5m")
    now = int(time.time())
    assert mw.verify(keys["signers"], env, "--at", rfc3339(now + 290)).returncode == 0
    err = mw.refused(keys["signers"], env, "expired", "--at", rfc3339(now + 3600))
    assert "expired at" in err
    mw.refused(keys["signers"], env, "not_yet_valid", "--at", rfc3339(now - 3600))
    # 60 s of skew on issued-at.
    assert mw.verify(keys["signers"], env, "--at", rfc3339(now - 30)).returncode == 0


def test_refusal_validity_too_long(mw, keys, program):
    prep = mw("sign", "--prepare", "--to", AGENT_JID, "--ttl", "7d", program).stdout
    # Stretch not-after by hand to 8 days and sign that with ssh-keygen.
    m = re.search(rb"issued-at: (\S+)\n", prep)
    t0 = datetime.datetime.strptime(m.group(1).decode(), "%Y-%m-%dT%H:%M:%SZ")
    t0 = t0.replace(tzinfo=datetime.timezone.utc).timestamp()
    prep = re.sub(rb"not-after: \S+", ("not-after: " + rfc3339(t0 + 8 * 86400)).encode(), prep)
    env = prep + b"\n" + mw.with_ssh_keygen(keys["alice"], prep)
    mw.refused(keys["signers"], env, "validity_too_long")


def test_refusal_wrong_namespace(mw, keys, program):
    prep = mw("sign", "--prepare", "--to", AGENT_JID, program).stdout
    sig = mw.with_ssh_keygen(keys["alice"], prep, ns="file")
    mw.refused(keys["signers"], prep + b"\n" + sig, "wrong_namespace")
    # `sign --signature` refuses to wrap it.
    sigf, pf = mw.tmp / "x.sig", mw.tmp / "x"
    sigf.write_bytes(sig)
    pf.write_bytes(prep)
    p = mw("sign", "--signature", sigf, pf)
    assert p.returncode == 1 and b"wrong_namespace" in p.stderr, p.stderr
    # nor one over other bytes
    pf.write_bytes(prep.replace(b"6 * 7", b"6 * 9"))
    sigf.write_bytes(mw.with_ssh_keygen(keys["alice"], prep))
    p = mw("sign", "--signature", sigf, pf)
    assert p.returncode == 1 and b"bad_signature" in p.stderr, p.stderr


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_refusal_unsupported_key(mw, keys, program, kind):
    prep = mw("sign", "--prepare", "--to", AGENT_JID, program).stdout
    env = prep + b"\n" + mw.with_ssh_keygen(keys[kind], prep)
    err = mw.refused(keys["signers"], env, "unsupported_key")
    assert "only ssh-ed25519" in err
    # moonwire itself will not sign with one.
    p = mw("sign", "-k", keys[kind], "--to", AGENT_JID, program)
    assert p.returncode == 2 and b"ssh-ed25519" in p.stderr


def test_refusal_unknown_signer(mw, keys, program, tmp_path):
    env = mw.sign(keys["mallory"], program)
    err = mw.refused(keys["signers"], env, "unknown_signer")
    assert "SHA256:" in err
    alice = pubkey(keys["alice"])
    for opts in ['valid-before="20200101"', 'valid-after="20990101Z"', 'namespaces="git,file"',
                 "cert-authority"]:
        f = tmp_path / "signers"
        f.write_text("alice@example.org %s %s\n" % (opts, alice))
        env = mw.sign(keys["alice"], program)
        mw.refused(str(f), env, "unknown_signer")
    # The signer is looked up at the verification time, as ssh-keygen does.
    f.write_text('alice@example.org valid-before="%s" %s\n' % (
        time.strftime("%Y%m%d%H%M%SZ", time.gmtime(time.time() + 3600)), alice))
    assert mw.verify(str(f), env).returncode == 0
    mw.refused(str(f), env, "unknown_signer", "--at", rfc3339(time.time() + 2 * 3600))


def test_allowed_signers_errors_are_usage(mw, keys, program, tmp_path):
    f = tmp_path / "signers"
    f.write_text("# ok\nalice@example.org %s\nbroken line\n" % pubkey(keys["alice"]))
    env = mw.sign(keys["alice"], program)
    p = mw.verify(str(f), env)
    assert p.returncode == 2
    assert ("%s:3: " % f).encode() in p.stderr


# ---- signing keys ----

@pytest.fixture
def ssh_agent(tmp_path):
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            assert proc.poll() is None, "ssh-agent exited"
            assert time.monotonic() < deadline, "ssh-agent did not start"
            time.sleep(0.05)
        env = dict(os.environ, SSH_AUTH_SOCK=sock)
        yield env
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_ssh_agent_signs(mw, keys, program, tmp_path, ssh_agent):
    p = mw("sign", "-k", keys["alice"] + ".pub", "--to", AGENT_JID, program, env=ssh_agent)
    assert p.returncode == 2 and b"ssh-add" in p.stderr, p.stderr
    run(["ssh-add", "-q", keys["alice"]], env=ssh_agent, check=True)
    env = mw.sign(keys["alice"] + ".pub", program, env=ssh_agent)
    assert mw.verify(keys["signers"], env).returncode == 0
    assert ssh_keygen_verify(keys, tmp_path, env).returncode == 0


def test_encrypted_key(mw, keys, program, tmp_path, ssh_agent):
    no_agent = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    p = mw("sign", "-k", keys["enc"], "--to", AGENT_JID, program, env=no_agent)
    assert p.returncode == 2
    assert b"encrypted" in p.stderr and b"ssh-agent" in p.stderr and b"--signature" in p.stderr
    # With the key in the agent, the .pub beside the encrypted file is used.
    # (ssh-add wants a terminal for a passphrase: add a decrypted copy.)
    plain = tmp_path / "enc-plain"
    plain.write_bytes(open(keys["enc"], "rb").read())
    os.chmod(plain, 0o600)
    run(["ssh-keygen", "-q", "-p", "-P", "correct horse", "-N", "", "-f", str(plain)], check=True)
    run(["ssh-add", "-q", str(plain)], env=ssh_agent, check=True)
    env = mw.sign(keys["enc"], program, env=ssh_agent)
    v = mw.verify(keys["signers"], env)
    assert v.returncode == 0, v.stderr
    assert b"principals: enc@example.org\n" in v.stdout


# ---- the command line ----

def test_usage(mw, keys, program):
    assert mw("sign", "--to", AGENT_JID, program).returncode == 2
    assert mw("sign", "-k", keys["alice"], program).returncode == 2
    assert mw("sign", "-k", keys["alice"], "--to", AGENT_JID, "--ttl", "8d", program).returncode == 2
    assert mw("sign", "-k", keys["alice"], "--to", AGENT_JID, "--ttl", "0s", program).returncode == 2
    assert mw("sign", "-k", keys["alice"], "--to", AGENT_JID + "/res", program).returncode == 2
    assert mw("sign", "-k", keys["alice"], "--to", AGENT_JID, "--job-id", "a b", program).returncode == 2
    p = mw("sign", "-k", keys["alice"], "--to", AGENT_JID, "--limit", "cpu=forever", program)
    assert p.returncode == 2 and b"cpu" in p.stderr
    assert mw("sign", "-k", keys["alice"], "--to", AGENT_JID, "--ttl", "7d", program).returncode == 0
    assert mw("verify", "-").returncode == 2
    assert mw("verify", "-f", keys["signers"], "--at", "yesterday", "-").returncode == 2
    assert mw("sign", "--help").returncode == 0
    assert mw("verify", "--help").returncode == 0


def test_program_text_rules(mw, keys, tmp_path):
    crlf = tmp_path / "crlf.lua"
    crlf.write_bytes(b"-- windows\r\nreturn 1\r\n")
    env = mw.sign(keys["alice"], str(crlf))
    assert b"\r" not in env and b"program-length: 20\n\n-- windows\nreturn 1\n\n" in env
    assert mw.verify(keys["signers"], env).returncode == 0
    lone = tmp_path / "cr.lua"
    lone.write_bytes(b"return 1\rreturn 2\n")
    p = mw("sign", "-k", keys["alice"], "--to", AGENT_JID, str(lone))
    assert p.returncode == 2 and b"CR" in p.stderr and b"XML" in p.stderr
    ctl = tmp_path / "ctl.lua"
    ctl.write_bytes(b"return '\x1b[31m'\n")
    assert mw("sign", "-k", keys["alice"], "--to", AGENT_JID, str(ctl)).returncode == 2


def test_verify_reads_a_file(mw, keys, program, tmp_path):
    env = mw.sign(keys["alice"], program)
    f = tmp_path / "envelope"
    f.write_bytes(env)
    p = mw("verify", "-f", keys["signers"], f)
    assert p.returncode == 0 and p.stdout.startswith(b"ok\n")
