#!/usr/bin/python3
"""A complete moonwire deployment in a temporary directory, for the
end-to-end tests, the demo and the benchmarks.

Why this exists: every end-to-end scenario needs the same setup an owner
does by hand -- XMPP accounts for an agent and an operator, an SSH signing
key, an allowed_signers file, a policy, both account files, OMEMO identities
with fingerprints verified both ways -- and then an agent process whose log
can be watched.  Doing it in one place keeps the tests about behaviour.

    kit = Kit(moonwire, prosody, workdir)
    agent = kit.agent()                   # account, config, identity
    op = kit.operator("alice")            # account, ssh key, identity
    kit.trust(agent, op)                  # verified both ways
    agent.start(); agent.wait_log("connected")
    res = op.send(agent, "scripts/hello.lua", json=True)
"""

import base64
import itertools
import json
import os
import queue
import re
import signal
import subprocess
import threading
import time

TIMEOUT = 30.0


def run(cmd, check=True, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=kw.pop("timeout", 120), **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s -> %d\n%s%s" % (" ".join(map(str, cmd)), p.returncode,
                                               p.stdout, p.stderr))
    return p


def json_lines(out, summary=False):
    """`moonwire send --json` output: JSON Lines (spec/result.md), one
    compact object per line and nothing else on stdout.  The per-target
    objects; the final summary object (`"summary": true`) is checked to be
    last and exactly one, and returned too with summary=True."""
    results, summaries = [], []
    for line in out.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict) and line == line.strip(), line
        assert not re.search(r"\s", re.sub(r'"(?:[^"\\]|\\.)*"', '""', line)), line
        assert not summaries, "a line after the summary object: %r" % line
        (summaries if obj.get("summary") is True else results).append(obj)
    assert len(summaries) <= 1, summaries
    if summary:
        return results, (summaries[0] if summaries else None)
    return results


class Identity:
    """An XMPP account with an OMEMO identity database and an account file."""

    def __init__(self, kit, user, password="pw"):
        self.kit = kit
        self.user = user
        self.password = password
        self.jid = kit.prosody.register(user, password)
        # the server (node) this identity connects to: the kit's, or one
        # node of an ejabberd cluster
        self.server = kit.prosody
        self.dir = os.path.join(kit.workdir, user)
        os.makedirs(self.dir, exist_ok=True)
        self.db = os.path.join(self.dir, "identity.db")
        self.conf = os.path.join(self.dir, "account.conf")
        self.extra = {}

    def account_lines(self):
        return ("jid = %s\npassword = %s\nhost = %s\nport = %d\n"
                "allow_plaintext = yes\ndb = %s\n" % (
                    self.jid, self.password, self.server.host,
                    self.server.port, self.db))

    def write_conf(self):
        with open(self.conf, "w") as f:
            f.write(self.account_lines())
            for k, v in self.extra.items():
                f.write("%s = %s\n" % (k, v))

    def fingerprint(self):
        self.write_conf()
        out = run([self.kit.moonwire, "fingerprint", "-c", self.conf]).stdout
        m = re.search(r"\b([0-9a-f]{8}(?:[- ]?[0-9a-f]{8}){7})\b", out)
        assert m, out
        return m.group(1)

    def trust(self, other):
        self.fingerprint()      # creates the identity when it is new
        run([self.kit.moonwire, "trust", "-c", self.conf, other.jid, other.fingerprint()])


class Operator(Identity):
    """Someone who signs and sends jobs."""

    def __init__(self, kit, user, principal=None, key_type="ed25519"):
        super().__init__(kit, user)
        self.principal = principal or ("%s@ops" % user)
        self.key = os.path.join(self.dir, "id_" + key_type)
        run(["ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", self.principal,
             "-f", self.key])
        self.extra["signing_key"] = self.key
        self.write_conf()

    @property
    def pubkey(self):
        with open(self.key + ".pub") as f:
            return f.read().strip()

    def send(self, agents, program=None, envelope=None, json_out=True, timeout="30s",
             extra=(), check=False):
        if not isinstance(agents, (list, tuple)):
            agents = [agents]
        cmd = [self.kit.moonwire, "send", "-c", self.conf, "--timeout", timeout]
        for a in agents:
            cmd += ["--to", a.jid if hasattr(a, "jid") else a]
        if self.kit.omemo:
            cmd += ["--omemo", self.kit.omemo]
        if json_out:
            cmd.append("--json")
        cmd += list(extra)
        if envelope is not None:
            cmd += ["--envelope", envelope]
        else:
            cmd.append(program)
        p = run(cmd, check=check, timeout=300)
        results = json_lines(p.stdout) if json_out else []
        return p, results

    def send_async(self, agents, program=None, envelope=None, timeout="30s", extra=()):
        """`moonwire send --json` in the background; finish with collect()."""
        if not isinstance(agents, (list, tuple)):
            agents = [agents]
        cmd = [self.kit.moonwire, "send", "-c", self.conf, "--timeout", timeout, "--json"]
        for a in agents:
            cmd += ["--to", a.jid if hasattr(a, "jid") else a]
        if self.kit.omemo:
            cmd += ["--omemo", self.kit.omemo]
        cmd += list(extra)
        cmd += ["--envelope", envelope] if envelope is not None else [program]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def collect(proc, timeout=60):
        out, err = proc.communicate(timeout=timeout)
        results = json_lines(out)
        return proc.returncode, results, err

    def sign(self, agent, program, extra=()):
        """An envelope signed with moonwire sign, as text."""
        return run([self.kit.moonwire, "sign", "-k", self.key, "--to",
                    agent.jid if hasattr(agent, "jid") else agent] + list(extra) +
                   [program]).stdout

    def sign_with_ssh_keygen(self, agent, program, issued_at=None, not_after=None,
                             job_id=None, key=None, wrap=True):
        """An envelope whose signed part is `moonwire sign --prepare`'s with
        issued-at/not-after replaced (Unix seconds; None keeps them), signed
        by `ssh-keygen -Y sign -n moonwire-job` and wrapped by `moonwire sign
        --signature` (wrap=False: armored by hand, for keys moonwire refuses
        to wrap).  Returns the envelope text."""
        jid = agent.jid if hasattr(agent, "jid") else agent
        cmd = [self.kit.moonwire, "sign", "--prepare", "--to", jid]
        if job_id:
            cmd += ["--job-id", job_id]
        part = run(cmd + [program]).stdout
        head, sep, body = part.partition("\n\n")
        lines = head.split("\n")
        for i, l in enumerate(lines):
            if l.startswith("issued-at: ") and issued_at is not None:
                lines[i] = "issued-at: " + rfc3339(issued_at)
            if l.startswith("not-after: ") and not_after is not None:
                lines[i] = "not-after: " + rfc3339(not_after)
        part = "\n".join(lines) + sep + body
        n = next(self.kit.counter)
        prepared = os.path.join(self.dir, "prepared-%d" % n)
        with open(prepared, "w") as f:
            f.write(part)
        run(["ssh-keygen", "-q", "-Y", "sign", "-n", "moonwire-job", "-f", key or self.key,
             prepared])
        if wrap:
            return run([self.kit.moonwire, "sign", "--signature", prepared + ".sig",
                        prepared]).stdout
        with open(prepared + ".sig") as f:
            armored = f.read()
        b64 = "".join(l for l in armored.splitlines() if not l.startswith("-----"))
        return part + "\n" + armor_sshsig(base64.b64decode(b64))


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(t)))


def armor_sshsig(blob):
    """SSHSIG armor as moonwire writes it: base64 in 76-column lines."""
    b64 = base64.b64encode(blob).decode()
    return ("-----BEGIN SSH SIGNATURE-----\n" +
            "".join(b64[i:i + 76] + "\n" for i in range(0, len(b64), 76)) +
            "-----END SSH SIGNATURE-----\n")


class Agent(Identity):
    """An agent: config, policy, allowed_signers, and its process."""

    def __init__(self, kit, user="agent"):
        super().__init__(kit, user)
        self.policy = os.path.join(self.dir, "policy")
        self.allowed_signers = os.path.join(self.dir, "allowed_signers")
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state, exist_ok=True)
        self.settings = {"allowed_signers": self.allowed_signers,
                         "policy": self.policy, "state_dir": self.state,
                         "shutdown_grace": "5s"}
        self.signer_lines = []
        self.policy_text = ("limits wall=10s\n"
                            "profile default\n  sys\n  kv\n")
        self.allow_lines = []
        self.interactive_lines = []
        self.proc = None
        self.log = []
        self.lines = queue.Queue()

    def interactive(self, jid, profile="default"):
        self.interactive_lines.append("interactive %s %s" % (getattr(jid, "jid", jid), profile))

    def allow(self, op, profile="default", jid=None, extra=""):
        """op's key in allowed_signers, and a policy allow line for it."""
        self.signer_lines.append('%s namespaces="moonwire-job" %s' % (op.principal, op.pubkey))
        self.allow_lines.append("allow %s %s %s%s" % (op.principal, jid or op.jid, profile,
                                                      " " + extra if extra else ""))

    def write_conf(self):
        with open(self.allowed_signers, "w") as f:
            f.write("\n".join(self.signer_lines) + "\n")
        with open(self.policy, "w") as f:
            f.write(self.policy_text + "\n" + "\n".join(self.allow_lines +
                                                         self.interactive_lines) + "\n")
        self.extra = dict(self.settings)
        super().write_conf()

    def start(self, wait=True):
        self.write_conf()
        self.lines = queue.Queue()
        self.proc = subprocess.Popen([self.kit.moonwire, "agent", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        if wait:
            self.wait_log("connected")
            # the bundle and device list reach the server
            time.sleep(0.3)
        return self

    def _read(self, proc, q):
        for line in proc.stdout:
            self.log.append(line.rstrip("\n"))
            q.put(line.rstrip("\n"))
        q.put(None)

    def wait_log(self, pattern, timeout=TIMEOUT):
        """The first new log line matching pattern (a regex)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                break
            if line is None:
                raise AssertionError("agent exited while waiting for %r:\n%s" % (
                    pattern, "\n".join(self.log[-30:])))
            if re.search(pattern, line):
                return line
        raise AssertionError("no %r in the agent log:\n%s" % (pattern, "\n".join(self.log[-30:])))

    def wait_exit(self, timeout=TIMEOUT):
        """The exit status of the agent process (it must exit by itself)."""
        rc = self.proc.wait(timeout=timeout)
        deadline = time.time() + 5
        while time.time() < deadline:     # the reader thread drains the pipe
            try:
                if self.lines.get(timeout=0.5) is None:
                    break
            except queue.Empty:
                pass
        self.proc = None
        return rc

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def grep(self, pattern):
        return [l for l in self.log if re.search(pattern, l)]

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL)


class Kit:
    def __init__(self, moonwire, prosody, workdir):
        self.moonwire = moonwire
        self.prosody = prosody
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.agents = []
        self.peers = []
        self.counter = itertools.count(1)
        # `moonwire send --omemo` of every operator (None: the default,
        # OMEMO 2 where offered); the e2e `omemo` fixture sets it
        self.omemo = None

    def agent(self, user="agent"):
        a = Agent(self, user)
        self.agents.append(a)
        return a

    def operator(self, user="alice", **kw):
        return Operator(self, user, **kw)

    def trust(self, agent, op):
        agent.write_conf()
        agent.trust(op)
        op.trust(agent)

    def peer(self, user, trust="blind", omemo="legacy"):
        """A python-omemo chat client (tests/interop/peer.py), ready; omemo="2"
        makes it speak OMEMO 2 (twomemo) only."""
        from peer import OmemoPeer
        self.prosody.register(user, "pw")
        p = OmemoPeer(self.prosody, user, "pw", os.path.join(self.workdir, "peer-" + user),
                      trust=trust, omemo=omemo)
        self.peers.append(p)
        return p

    def trust_peer(self, ident, peer):
        """ident (an agent or operator) verifies the python peer's device."""
        ident.write_conf()
        ident.fingerprint()
        run([self.moonwire, "trust", "-c", ident.conf, peer.jid, peer.fingerprint])

    def close(self):
        for p in self.peers:
            p.close()
        for a in self.agents:
            a.stop()


class ForegroundAgent:
    """`moonwire agent` started by a command line as a user types it (the
    README walk-through, `moonwire init`), its output collected in .log;
    the constructor returns once it logged `connected`.  A context manager:
    the agent is terminated when the block ends."""

    def __init__(self, argv, env=None, cwd="/", timeout=30):
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.log = []
        lines = queue.Queue()

        def reader():
            for line in self.proc.stdout:
                self.log.append(line)
                lines.put(line)
        threading.Thread(target=reader, daemon=True).start()
        try:
            while "moonwire-agent: connected" not in lines.get(timeout=timeout):
                pass
        except BaseException:
            self.close()
            raise

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
