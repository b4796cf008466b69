"""An agent set up only by `moonwire init agent` and an operator set up
only by `moonwire init operator` run a job through a real Prosody.

Why this exists: the guided setup (issue 14 item 4) promises a working
deployment from a few flags: the files it writes, the identities it
creates and the two `moonwire trust` lines it prints (run here exactly as
printed, with only the placeholder for the other side's file and
fingerprint filled in) must be all it takes.  Nothing is written by hand.
The server is a TLS Prosody with its own certificate (--ca-file), as on a
real server; init has no plaintext option.  The profile init writes
grants `sys` only: a job that reads a file is refused by the sandbox.

Fixtures: moonwire_bin (tests/conftest.py); the TLS Prosody is tests/conftest.py's tls_prosody,
as in test_walkthrough.py.
"""

import os
import re
import subprocess

from agentkit import ForegroundAgent



ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FP = r"[0-9a-f]{8}(?:-[0-9a-f]{8}){7}"


def sh(cmd, stdin=None, env=None):
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120,
                       env=env)
    assert p.returncode == 0, (cmd, p.stdout, p.stderr)
    return p.stdout


def printed_trust_line(out, placeholder, value, fp_placeholder=None, fp=None):
    """The indented `moonwire trust ...` line init printed that names
    placeholder, with the placeholders filled in, as an argv."""
    lines = [l.strip() for l in out.splitlines()
             if l.startswith("    ") and "moonwire trust -c %s " % placeholder in l]
    assert len(lines) == 1, out
    line = lines[0].replace(placeholder, value)
    if fp_placeholder is not None:
        line = line.replace(fp_placeholder, fp)
    argv = line.split()
    assert argv[:3] == ["moonwire", "trust", "-c"] and len(argv) == 6, line
    return argv


def test_agent_and_operator_from_init_run_a_job(moonwire_bin, tls_prosody, tmp_path):
    srv = tls_prosody
    agent_jid = srv.register("router7", "router7-password")
    alice_jid = srv.register("alice", "alice-password")
    server = ["--host", srv.host, "--port", str(srv.port), "--ca-file", srv.cert_path]
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    env = dict(os.environ, HOME=str(home))
    env.pop("JOURNAL_STREAM", None)
    key = str(home / ".ssh" / "id_ed25519")
    sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@ops", "-f", key])

    # the operator: her account file, its password, her identity
    op = sh([moonwire_bin, "init", "operator", "--jid", alice_jid, "--signing-key", key,
             "--password-file", "-"] + server, stdin="alice-password\n", env=env)
    alice_conf = str(home / ".config" / "moonwire" / "alice.conf")
    assert "wrote %s" % alice_conf in op, op
    alice_fp = re.search(r"^fingerprint: (%s)$" % FP, op, re.M).group(1)

    # the device: configuration, policy, allowed_signers, password, identity
    etc, var = tmp_path / "etc" / "moonwire", tmp_path / "var" / "lib" / "moonwire"
    ag = sh([moonwire_bin, "init", "agent", "--jid", agent_jid, "--allowed-signer",
             key + ".pub", "--principal", "alice@ops", "--operator", alice_jid,
             "--dir", str(etc), "--state-dir", str(var), "--password-file", "-"] + server,
            stdin="router7-password\n", env=env)
    agent_conf = str(etc / "agent.conf")
    assert "%s: configuration ok (policy: 1 profiles, 1 allow lines)" % agent_conf in ag, ag
    agent_fp = re.search(r"^fingerprint: (%s)$" % FP, ag, re.M).group(1)

    # the printed trust lines, run as printed: each side verifies the other
    argv = printed_trust_line(ag, "OPERATOR_CONF", alice_conf)
    assert argv[4:] == [agent_jid, agent_fp]
    out = sh([moonwire_bin] + argv[1:], env=env)
    assert "verified %s" % agent_fp in out, out
    argv = printed_trust_line(op, "AGENT_CONF", agent_conf)
    assert argv[4:] == [alice_jid, alice_fp]
    # the agent's own hint for the same step names the same command
    assert printed_trust_line(ag, agent_conf, agent_conf, "OPERATOR_FINGERPRINT",
                              alice_fp) == argv
    out = sh([moonwire_bin] + argv[1:], env=env)
    assert "verified %s" % alice_fp in out, out

    with ForegroundAgent([moonwire_bin, "agent", "-c", agent_conf], env=env) as agent:
        log = agent.log
        p = subprocess.run([moonwire_bin, "send", "-c", alice_conf, "--to", agent_jid,
                            "--timeout", "30s",
                            os.path.join(ROOT, "scripts", "system-status.lua")],
                           capture_output=True, text=True, env=env, timeout=90)
        assert p.returncode == 0 and "status: ok" in p.stdout, \
            (p.stdout, p.stderr, "".join(log))
        assert "returned: {" in p.stdout, p.stdout
        # the skeleton grants sys only
        prog = tmp_path / "read.lua"
        prog.write_text('return fs.read("/etc/hostname")\n')
        p = subprocess.run([moonwire_bin, "send", "-c", alice_conf, "--to", agent_jid,
                            "--timeout", "30s", str(prog)],
                           capture_output=True, text=True, env=env, timeout=90)
        assert p.returncode == 1 and "capability denied" in p.stdout, (p.stdout, p.stderr)
        assert any("accepted job=" in l and "profile=status" in l for l in log), "".join(log)
