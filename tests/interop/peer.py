"""pytest-side handle on one omemo_peer.py process.

Why this exists: integration suites script an independent OMEMO client
(tests/interop/omemo_peer.py) as the human on the other side of moonwire.
This wrapper spawns it, reads its JSON-lines output on a background thread,
and turns the protocol into bounded, assertion-friendly calls:

    alice = OmemoPeer(prosody, "alice", "pw", tmp_path / "alice")   # spawns
    alice.wait_ready()                      # -> ready event; .device_id, .fingerprint
    alice.send("bob@localhost", "hi")       # -> "sent" event (AssertionError on error)
    ev = alice.expect("message", sender="bob@localhost", timeout=10)
    alice.restart()                         # same state dir: same device id
    alice.close()

Every wait has a timeout; failures raise AssertionError carrying the recent
output and the peer's stderr tail. expect() consumes the first matching
event; events that did not match stay queued for later expect() calls.
"""

import itertools
import json
import os
import signal
import subprocess
import threading
import time

PYTHON = "/usr/bin/python3"  # the Debian interpreter with slixmpp/omemo
PEER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "omemo_peer.py")

_req_counter = itertools.count(1)


def _die_with_parent():
    # The peer also quits on stdin EOF; PR_SET_PDEATHSIG makes it immediate.
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM, 0, 0, 0)
    except Exception:
        pass


class OmemoPeer:
    """One OMEMO peer account. `prosody` is a tests/lib/prosody.Prosody (or
    anything with host, port, domain). The account must exist already
    (prosody.register(user, password)) unless register=True is passed."""

    def __init__(self, prosody, user, password, state_dir, trust="blind",
                 start=True, register=False, ready_timeout=30.0, debug=False,
                 omemo="legacy"):
        if trust not in ("blind", "manual"):
            raise ValueError("trust must be 'blind' or 'manual'")
        if omemo not in ("legacy", "2"):
            raise ValueError("omemo must be 'legacy' or '2'")
        self.omemo = omemo       # "2": an OMEMO 2 (twomemo) peer
        self.prosody = prosody
        self.user = user
        self.password = password
        self.jid = "%s@%s" % (user, prosody.domain)
        self.state_dir = os.path.abspath(str(state_dir))
        self.trust_mode = trust
        self.debug = debug
        self.stderr_path = os.path.join(self.state_dir, "omemo_peer.stderr")
        self.proc = None
        self.device_id = None
        self.fingerprint = None
        self.history = []        # every event ever read, for diagnostics
        self._pending = []       # events not consumed by expect() yet
        self._cond = threading.Condition()
        self._reader = None
        self._eof = False
        os.makedirs(self.state_dir, exist_ok=True)
        if register:
            prosody.register(user, password)
        if start:
            self.start()
            try:
                self.wait_ready(ready_timeout)
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------ process

    def start(self):
        """Spawn the peer process (does not wait for ready)."""
        if self.proc is not None and self.proc.poll() is None:
            raise AssertionError("%s: peer already running" % self.jid)
        cmd = [PYTHON, PEER_SCRIPT, "--jid", self.jid, "--password", self.password,
               "--host", self.prosody.host, "--port", str(self.prosody.port),
               "--state", self.state_dir, "--trust", self.trust_mode,
               "--omemo", self.omemo]
        if self.debug:
            cmd.append("--debug")
        with self._cond:
            # A stale "ready" of a previous process must not satisfy wait_ready().
            self._pending = [e for e in self._pending if e.get("event") != "ready"]
            self._eof = False
        err = open(self.stderr_path, "ab")
        try:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                close_fds=True, start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            err.close()
        self._reader = threading.Thread(target=self._read_loop, args=(self.proc,),
                                        name="omemo-peer-" + self.user, daemon=True)
        self._reader.start()
        return self

    def _read_loop(self, proc):
        try:
            self._read_lines(proc)
        except (OSError, ValueError):
            pass  # stdout closed under us: treat as EOF
        with self._cond:
            if self.proc is proc:
                self._eof = True
            self._cond.notify_all()

    def _read_lines(self, proc):
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "unparsed", "line": line}
            ev.setdefault("_t", round(time.monotonic(), 3))
            with self._cond:
                self.history.append(ev)
                self._pending.append(ev)
                self._cond.notify_all()

    def _alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=30.0):
        ev = self.expect("ready", timeout=timeout)
        self.device_id = ev["device_id"]
        self.fingerprint = ev["fingerprint"]
        return ev

    def close(self, timeout=5.0):
        """Quit politely, then SIGTERM/SIGKILL. Idempotent."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                proc.stdin.write(b'{"cmd":"quit"}\n')
                proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self._finish(proc)

    def kill(self):
        """SIGKILL the peer (crash simulation). State on disk stays."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        self._finish(proc)

    def _finish(self, proc):
        try:
            proc.stdin.close()
        except Exception:
            pass
        # The process is gone: the reader sees EOF after the last line. Join
        # it before closing stdout, or it would read from a closed buffer.
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._reader is None or not self._reader.is_alive():
            try:
                proc.stdout.close()
            except Exception:
                pass
        self.proc = None

    def restart(self, timeout=30.0):
        """Stop and start again on the same state dir; returns the ready event."""
        self.close()
        self.start()
        return self.wait_ready(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # ------------------------------------------------------------ protocol

    def command(self, cmd, **fields):
        """Write one command line; returns its req tag (echoed in the reply)."""
        req = "r%d" % next(_req_counter)
        obj = dict(fields, cmd=cmd, req=req)
        if not self._alive():
            raise AssertionError("%s: peer is not running\n%s" % (self.jid, self.diagnostics()))
        try:
            self.proc.stdin.write((json.dumps(obj) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise AssertionError("%s: cannot write to peer (%s)\n%s"
                                 % (self.jid, e, self.diagnostics())) from e
        return req

    def _reply(self, req, ok_event, timeout, check):
        ev = self.expect(predicate=lambda e: e.get("req") == req, timeout=timeout,
                         what="reply to %s" % req)
        if check and ev.get("event") != ok_event:
            raise AssertionError("%s: expected %r, got %r\n%s"
                                 % (self.jid, ok_event, ev, self.diagnostics()))
        return ev

    def send(self, to, body, timeout=15.0, check=True):
        """Encrypted send. Returns the "sent" event, or with check=False the
        "error" event too (e.g. StillUndecided under manual trust)."""
        return self._reply(self.command("send", to=to, body=body), "sent", timeout, check)

    def send_empty(self, to, build=False, timeout=15.0):
        """An empty OMEMO message (keys, no payload) to every device of `to`
        with a session (build=True: building missing sessions first, so the
        message carries the key exchange); returns the "sent_empty" event."""
        return self._reply(self.command("send_empty", to=to, build=build), "sent_empty",
                           timeout, True)

    def send_plain(self, to, body, timeout=10.0):
        return self._reply(self.command("send_plain", to=to, body=body), "sent_plain", timeout, True)

    def send_raw(self, xml, timeout=10.0):
        return self._reply(self.command("send_raw", xml=xml), "sent_raw", timeout, True)

    def trust(self, jid, fingerprint, level="trusted", timeout=15.0):
        return self._reply(self.command("trust", jid=jid, fingerprint=fingerprint, level=level),
                           "trusted", timeout, True)

    def devices(self, jid, timeout=15.0):
        """List of {"device_id","fingerprint","trust","active"} for jid."""
        return self._reply(self.command("devices", jid=jid), "devices", timeout, True)["devices"]

    def bundle(self, jid, device_id, timeout=15.0):
        """The bundle of jid/device_id as the server serves it now: dict with
        prekey_ids (list, published order), signed_prekey_id, identity_key,
        item_id."""
        return self._reply(self.command("bundle", jid=jid, device_id=device_id),
                           "bundle", timeout, True)

    def sync(self, timeout=10.0):
        """Barrier: returns once every earlier command has been processed."""
        req = self.command("ping", token="sync")
        return self._reply(req, "pong", timeout, True)

    # ------------------------------------------------------------ events

    def expect(self, event=None, predicate=None, timeout=15.0, what=None, **fields):
        """Wait (bounded) for the first unconsumed event matching `event`
        (name), every `fields` item (key "sender" matches "from"), and
        `predicate(ev)`. Consumes and returns it; AssertionError otherwise."""
        if "sender" in fields:
            fields["from"] = fields.pop("sender")

        def matches(ev):
            if event is not None and ev.get("event") != event:
                return False
            for k, v in fields.items():
                if ev.get(k) != v:
                    return False
            return predicate is None or bool(predicate(ev))

        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, ev in enumerate(self._pending):
                    if matches(ev):
                        del self._pending[i]
                        return ev
                if event != "fatal":
                    for ev in self._pending:
                        if ev.get("event") == "fatal":
                            raise AssertionError("%s: peer failed: %s\n%s"
                                                 % (self.jid, ev.get("reason"), self._diag_locked()))
                left = deadline - time.monotonic()
                if self._eof and (self.proc is None or self.proc.poll() is not None):
                    break
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.5))
            desc = what or "event=%r fields=%r%s" % (event, fields, " +predicate" if predicate else "")
            state = "peer exited" if self._eof else "timeout %.1fs" % timeout
            raise AssertionError("%s: no %s (%s)\n%s" % (self.jid, desc, state, self._diag_locked()))

    def expect_message(self, sender, body=None, encrypted=True, timeout=15.0):
        """The next message event from `sender` (with that body, if given)."""
        return self.expect("message", sender=sender, encrypted=encrypted, timeout=timeout,
                           predicate=(lambda e: e.get("body") == body) if body is not None else None)

    def events(self, event=None):
        """Unconsumed events (optionally of one kind), without consuming them."""
        with self._cond:
            return [e for e in self._pending if event is None or e.get("event") == event]

    def drain(self):
        with self._cond:
            out, self._pending = self._pending, []
            return out

    # ------------------------------------------------------------ diagnostics

    def stderr_tail(self, lines=30):
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _diag_locked(self):
        recent = "\n".join("  " + json.dumps(e, sort_keys=True)[:400] for e in self.history[-15:])
        rc = None if self.proc is None else self.proc.poll()
        return ("--- %s: exit status %s, last events:\n%s\n--- stderr tail (%s):\n%s"
                % (self.jid, rc, recent or "  (none)", self.stderr_path, self.stderr_tail()))

    def diagnostics(self):
        with self._cond:
            return self._diag_locked()

    def __repr__(self):
        return "<OmemoPeer %s device=%s>" % (self.jid, self.device_id)
