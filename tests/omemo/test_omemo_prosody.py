"""Two moonwire OMEMO endpoints against a real Prosody on loopback.

Why this exists: the unit tests prove the protocol logic against a fake PEP
server; this proves it against Prosody 0.12 itself (publish-options, PEP
answers, offline delivery, restarts).  Each endpoint is
`moonwire __omemo_client -c ACCOUNT` (runtime/cli/cmd_omemo.c), a line-oriented
chat client: commands on stdin, one event per line on stdout.

Uses the fixtures of tests/conftest.py: `prosody` (fresh server per test)
and `moonwire_bin`.
"""

import os
import queue
import subprocess
import threading
import time

TIMEOUT = 20.0


class Endpoint:
    def __init__(self, moonwire, prosody, workdir, user, password="pw", env=None):
        self.moonwire = moonwire
        self.env = dict(os.environ, **env) if env else None
        self.jid = prosody.register(user, password) if hasattr(prosody, "register") else None
        if not self.jid or "@" not in str(self.jid):
            self.jid = prosody.jid(user)
        os.makedirs(workdir, exist_ok=True)
        self.conf = os.path.join(workdir, "%s.conf" % user)
        with open(self.conf, "w") as f:
            f.write("jid = %s\npassword = %s\nhost = %s\nport = %d\n"
                    "allow_plaintext = yes\ndb = %s\n" % (
                        self.jid, password, prosody.host, prosody.port,
                        os.path.join(workdir, "%s.db" % user)))
        self.proc = None
        self.events = queue.Queue()

    def start(self):
        self.events = queue.Queue()     # nothing from a previous run
        self.proc = subprocess.Popen(
            [self.moonwire, "__omemo_client", "-c", self.conf],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, env=self.env)
        threading.Thread(target=self._read, args=(self.proc, self.events),
                         daemon=True).start()
        ev = self.expect("ready")
        self.device, self.fp = int(ev[1]), ev[2]
        # let the bundle and device list reach the server
        time.sleep(0.5)
        return self

    @staticmethod
    def _read(proc, events):
        for line in proc.stdout:
            events.put(line.rstrip("\n").split(" ", 4))
        events.put(["eof"])

    def expect(self, kind, timeout=TIMEOUT):
        deadline = time.time() + timeout
        seen = []
        while time.time() < deadline:
            try:
                ev = self.events.get(timeout=max(0.05, deadline - time.time()))
            except queue.Empty:
                break
            if ev[0] == kind:
                return ev
            seen.append(ev)
            if ev[0] == "eof":
                break
        err = self.proc.stderr.read() if self.proc.poll() is not None else ""
        raise AssertionError("%s: no %r event; saw %r %s" % (self.jid, kind, seen, err))

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def send(self, to, text):
        self.cmd("send %s %s" % (to.jid, text))
        ev = self.expect("sent")
        assert ev[1] == "0", ev

    def trust_fp(self, jid, fp):
        self.cmd("trust %s %s" % (jid, fp))
        assert self.expect("trusted")[1] == "0"

    def send_to(self, jid, text):
        self.cmd("send %s %s" % (jid, text))
        ev = self.expect("sent")
        assert ev[1] == "0", ev

    def trust(self, other):
        self.cmd("trust %s %s" % (other.jid, other.fp))
        assert self.expect("trusted")[1] == "0"

    def recv(self, timeout=TIMEOUT):
        ev = self.expect("recv", timeout)
        # recv JID DEVICE TRUST TEXT
        return ev[1], int(ev[2]), ev[3], ev[4] if len(ev) > 4 else ""

    def stop(self):
        if self.proc is None:
            return
        try:
            self.cmd("quit")
            self.proc.wait(timeout=5)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _pair(moonwire_bin, prosody, tmp_path):
    a = Endpoint(moonwire_bin, prosody, str(tmp_path / "a"), "alice")
    b = Endpoint(moonwire_bin, prosody, str(tmp_path / "b"), "bob")
    return a, b


def test_both_ways_first_contact_and_restart(moonwire_bin, prosody, tmp_path):
    a, b = _pair(moonwire_bin, prosody, tmp_path)
    try:
        a.start()
        b.start()
        a.trust(b)
        b.trust(a)
        a.send(b, "hello bob")
        assert b.recv() == (a.jid, a.device, "verified", "hello bob")
        b.send(a, "hello alice")
        assert a.recv() == (b.jid, b.device, "verified", "hello alice")
        for i in range(10):
            a.send(b, "a%d" % i)
            assert b.recv()[3] == "a%d" % i
            b.send(a, "b%d" % i)
            assert a.recv()[3] == "b%d" % i
        # bob restarts mid-conversation; both directions still decrypt
        b.stop()
        b.start()
        a.send(b, "after restart")
        assert b.recv()[3] == "after restart"
        b.send(a, "back")
        assert a.recv()[3] == "back"
    finally:
        a.stop()
        b.stop()


def test_first_contact_from_the_other_side(moonwire_bin, prosody, tmp_path):
    a, b = _pair(moonwire_bin, prosody, tmp_path)
    try:
        a.start()
        b.start()
        a.trust(b)
        b.trust(a)
        b.send(a, "bob first")
        assert a.recv()[3] == "bob first"
        a.send(b, "ok")
        assert b.recv()[3] == "ok"
    finally:
        a.stop()
        b.stop()


def test_untrusted_is_not_encrypted_to(moonwire_bin, prosody, tmp_path):
    a, b = _pair(moonwire_bin, prosody, tmp_path)
    try:
        a.start()
        b.start()
        # alice has not verified bob: nothing leaves
        a.cmd("send %s secret" % b.jid)
        ev = a.expect("sent")
        assert ev[1] == "-24", ev      # MW_OMEMO_E_NO_DEVICES
        # bob trusts alice and writes; alice sees an undecided sender
        b.trust(a)
        b.send(a, "hi")
        jid, dev, trust, text = a.recv()
        assert (jid, trust, text) == (b.jid, "undecided", "hi")
    finally:
        a.stop()
        b.stop()
