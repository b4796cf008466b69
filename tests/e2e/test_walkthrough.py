"""The README's walk-through for a real server, run as written.

Why this exists: the section "Running the agent against a real server" is
what a new user types; it must work.  This test takes its ```sh blocks from
README.md and runs them with bash against a TLS Prosody whose certificate
is its own private CA, changing only what a test cannot do: no root, no
service user (`sudo -u moonwire ` and `-o/-g` owners are dropped, `chgrp`
and `useradd` skipped), no systemd (the agent is started in the
foreground instead), /etc/moonwire and /var/lib/moonwire moved under
tmp_path, HOME is a temporary home, example.org is the test domain and
xmpp.example.org:5222 the test server.  Alice's block runs before the
device's so that her public key can replace the `AAAA...alice`
placeholder; the fingerprints printed replace ROUTER7_FINGERPRINT and
ALICE_FINGERPRINT.

Fixtures: moonwire_bin (tests/conftest.py); the TLS Prosody is tests/conftest.py's tls_prosody.
"""

import os
import re
import subprocess

from agentkit import ForegroundAgent



ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def walkthrough_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    start = text.index("## Running the agent against a real server")
    end = text.index("\n## ", start + 10)
    section = text[start:end]
    end_sub = section.find("\n### ")
    if end_sub >= 0:
        section = section[:end_sub]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_readme_walkthrough_on_a_tls_server(moonwire_bin, tls_prosody, tmp_path):
    blocks = walkthrough_blocks()
    assert len(blocks) == 5, blocks          # device, alice, trust, start, send
    device, alice, trust, start, send = blocks
    assert "systemctl" in start and "moonwire send" in send

    srv = tls_prosody
    srv.register("router7", "router7-password")
    srv.register("alice", "alice-password")
    etc, var, home, cwd, bindir = (tmp_path / d for d in ("etc", "var", "home", "cwd", "bin"))
    for d in (etc, var, home, cwd, bindir):
        d.mkdir()
    os.symlink(moonwire_bin, bindir / "moonwire")
    os.symlink(os.path.join(ROOT, "scripts"), cwd / "scripts")
    with open(srv.cert_path) as f, open(cwd / "ca.pem", "w") as out:
        out.write(f.read())
    env = dict(os.environ, HOME=str(home), PATH="%s:%s" % (bindir, os.environ["PATH"]))
    env.pop("JOURNAL_STREAM", None)
    subst = {}

    def adapt(block):
        lines = []
        for line in block.splitlines():
            if line.startswith(("make ", "useradd ", "chgrp ", "systemctl ")) or \
                    "moonwire-agent.service" in line:
                continue
            line = line.replace("sudo -u moonwire ", "")
            line = re.sub(r"-o \S+ -g \S+ ", "", line)
            line = line.replace("/etc/moonwire", str(etc / "moonwire"))
            line = line.replace("/var/lib/moonwire", str(var / "lib" / "moonwire"))
            line = line.replace("xmpp.example.org", srv.host)
            line = line.replace("port = 5222", "port = %d" % srv.port)
            line = line.replace("example.org", srv.domain)
            for k, v in subst.items():
                line = line.replace(k, v)
            lines.append(line)
        return "\n".join(lines) + "\n"

    def sh(block):
        p = subprocess.run(["bash", "-euo", "pipefail", "-c", adapt(block)], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (adapt(block), p.stdout, p.stderr)
        return p

    (var / "lib").mkdir()
    out = sh(alice).stdout
    subst["ALICE_FINGERPRINT"] = re.search(r"^fingerprint: (\S+)$", out, re.M).group(1)
    with open(home / ".ssh" / "id_ed25519.pub") as f:
        subst["ssh-ed25519 AAAA...alice"] = " ".join(f.read().split()[:2]) + " alice"
    out = sh(device).stdout
    assert "configuration ok" in out, out
    assert "WARNING" not in out, out              # the password file is private
    subst["ROUTER7_FINGERPRINT"] = re.search(r"^fingerprint: (\S+)$", out, re.M).group(1)
    assert (os.stat(var / "lib" / "moonwire" / "identity.db").st_mode & 0o077) == 0
    sh(trust)

    # "systemctl enable --now moonwire-agent": the same command in the foreground
    conf = str(etc / "moonwire" / "agent.conf")
    with ForegroundAgent(["moonwire", "agent", "-c", conf], env=env) as agent:
        log = agent.log
        p = sh(send)
        assert "status: ok" in p.stdout, (p.stdout, p.stderr, "".join(log))
        assert "returned: {" in p.stdout, p.stdout
