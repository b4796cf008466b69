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


class Identity:
    """An XMPP account with an OMEMO identity database and an account file."""

    def __init__(self, kit, user, password="pw"):
        self.kit = kit
        self.user = user
        self.password = password
        self.jid = kit.prosody.register(user, password)
        self.dir = os.path.join(kit.workdir, user)
        os.makedirs(self.dir, exist_ok=True)
        self.db = os.path.join(self.dir, "identity.db")
        self.conf = os.path.join(self.dir, "account.conf")
        self.extra = {}

    def account_lines(self):
        return ("jid = %s\npassword = %s\nhost = %s\nport = %d\n"
                "allow_plaintext = yes\ndb = %s\n" % (
                    self.jid, self.password, self.kit.prosody.host,
                    self.kit.prosody.port, self.db))

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
        if json_out:
            cmd.append("--json")
        cmd += list(extra)
        if envelope is not None:
            cmd += ["--envelope", envelope]
        else:
            cmd.append(program)
        p = run(cmd, check=check, timeout=300)
        results = []
        if json_out:
            for line in p.stdout.splitlines():
                line = line.strip()
                if line.startswith("{"):
                    results.append(json.loads(line))
        return p, results

    def sign(self, agent, program, extra=()):
        """An envelope signed with moonwire sign, as text."""
        return run([self.kit.moonwire, "sign", "-k", self.key, "--to",
                    agent.jid if hasattr(agent, "jid") else agent] + list(extra) +
                   [program]).stdout


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
        self.proc = None
        self.log = []
        self.lines = queue.Queue()

    def allow(self, op, profile="default", jid=None, extra=""):
        """op's key in allowed_signers, and a policy allow line for it."""
        self.signer_lines.append('%s namespaces="moonwire-job" %s' % (op.principal, op.pubkey))
        self.allow_lines.append("allow %s %s %s%s" % (op.principal, jid or op.jid, profile,
                                                      " " + extra if extra else ""))

    def write_conf(self):
        with open(self.allowed_signers, "w") as f:
            f.write("\n".join(self.signer_lines) + "\n")
        with open(self.policy, "w") as f:
            f.write(self.policy_text + "\n" + "\n".join(self.allow_lines) + "\n")
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

    def close(self):
        for a in self.agents:
            a.stop()
