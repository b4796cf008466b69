#!/usr/bin/python3
"""Throwaway Prosody 0.12 server for moonwire's integration tests and demo.

Why this exists: every integration test, the OMEMO interop peers and the demo
script need a real XMPP server that is private to one run, listens only on
127.0.0.1 (never any other address), starts in well under a second, keeps its
data (accounts, offline messages, PEP nodes) in a temporary directory, can be
restarted on the same port mid-test, and is always torn down.

Library use:

    from prosody import Prosody
    with Prosody(tmpdir) as srv:          # start() on enter, stop() on exit
        srv.register("alice", "pw")
        srv.host, srv.port, srv.domain    # "127.0.0.1", 4xxxx, "localhost"
        srv.restart()                     # stop + start on the SAME port, data kept

CLI use (the demo shell script):

    /usr/bin/python3 tests/lib/prosody.py start DIR --user alice:pw --user bob:pw
        -> starts a detached server (it outlives the CLI), prints one JSON line
           {"host": "127.0.0.1", "port": N, "domain": "localhost", "pid": P}
    /usr/bin/python3 tests/lib/prosody.py stop DIR
    /usr/bin/python3 tests/lib/prosody.py register DIR user pw

Configuration choices (see _render_config): no TLS module at all, so the
stream offers no STARTTLS and clients log in over plaintext with SCRAM-SHA-1
(PLAIN is withheld on unencrypted streams); s2s, HTTP, components and the
admin socket are off; offline storage (auto-loaded mod_offline) and XEP-0198
stream management (mod_smacks, part of Prosody 0.12 core) are on; MAM and
carbons are off. Constructor knobs: port (default: a free one, then kept),
smacks=True, smacks_hibernation_time=60 (seconds a dropped SM session waits
for resumption; its unacked messages then go to offline storage only if no
other resource of the account is online), log_level, extra_config (raw Lua
lines for the global section, e.g. "c2s_stanza_size_limit = 65536"),
extra_modules (more names for modules_enabled, e.g. "admin_shell" for
`prosodyctl shell` through the admin socket).
tls=True instead generates a self-signed certificate for the domain with
openssl (certs/DOMAIN.crt and .key, SAN DNS:DOMAIN), enables mod_tls and
sets c2s_require_encryption = true: clients must STARTTLS before they can
log in; srv.cert_path and srv.cert_sha256 (SHA-256 of its DER form, 64
lowercase hex) are then set.
Other fixed choices: conflict_resolve = "kick_old" (a reconnect with the same
resource replaces the old session; its unacked stanzas go offline),
c2s_close_timeout = 1 (shutdown is bounded even with stuck clients).
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

PROSODY_BIN = "/usr/bin/prosody"
PROSODYCTL_BIN = "/usr/bin/prosodyctl"
LOOPBACK = "127.0.0.1"
STATE_FILE = "server.json"  # written by the CLI next to the config


class ProsodyError(RuntimeError):
    """The server could not be started, stopped or administered."""


def free_port(host=LOOPBACK):
    """A TCP port on `host` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port, host=LOOPBACK):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _lua_str(value):
    """A Lua string literal for an arbitrary Python string (bytes escaped)."""
    out = []
    for b in str(value).encode("utf-8"):
        c = chr(b)
        if 32 <= b < 127 and c not in '"\\':
            out.append(c)
        else:
            out.append("\\%03d" % b)
    return '"' + "".join(out) + '"'


def die_with_parent():
    """preexec_fn: SIGTERM this child when the process that spawned it dies,
    so a killed test run leaves no server behind (Linux prctl)."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _pid_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def stream_features_ok(host, port, domain, timeout):
    """True once a real stream header to domain on host:port gets
    <stream:features/> back: the server serves c2s, not only listens."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall((
                "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
                "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
                % domain).encode())
            buf = b""
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                buf += chunk
                if b"</stream:features>" in buf or b"<stream:features/>" in buf:
                    try:
                        s.sendall(b"</stream:stream>")
                    except OSError:
                        pass
                    return True
            return False
    except OSError:
        return False


def register_inband(host, port, domain, user, password, timeout=10.0):
    """XEP-0077 registration before authentication on a plaintext stream;
    returns the server's answer to the registration IQ (text).  For test
    servers that allow it from loopback only (ejabberd always, Prosody with
    ibr=True): thousands of accounts in seconds, where prosodyctl and
    ejabberdctl cost 0.3 s and 1.5 s an account."""
    esc = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "'": "&apos;", '"': "&quot;"}

    def q(s):
        return "".join(esc.get(c, c) for c in s)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall((
            "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
            % domain).encode())
        buf, end = b"", time.monotonic() + timeout
        while b"</stream:features>" not in buf:
            chunk = s.recv(4096)
            if not chunk or time.monotonic() > end:
                raise ProsodyError("no stream features before registration: %r" % buf)
            buf += chunk
        s.sendall(("<iq type='set' id='mwreg'><query xmlns='jabber:iq:register'>"
                   "<username>%s</username><password>%s</password></query></iq>"
                   % (q(user), q(password))).encode())
        buf = b""
        while True:
            chunk = s.recv(4096)
            if not chunk or time.monotonic() > end:
                raise ProsodyError("no answer to the registration of %s: %r" % (user, buf))
            buf += chunk
            m = re.search(rb"<iq[^>]*id=['\"]mwreg['\"][^>]*(?:/>|>.*?</iq>)", buf, re.S)
            if m:
                return m.group(0).decode(errors="replace")


class Prosody:
    """One private Prosody instance rooted in `workdir`.

    Attributes: domain ("localhost"), host ("127.0.0.1"), port (c2s, picked
    on first start and kept across restart()), workdir, config_path,
    log_path, data_dir, pid (None when stopped).
    """

    def __init__(self, workdir, domain="localhost", port=None, smacks=True,
                 smacks_hibernation_time=60, log_level="debug",
                 extra_config="", tls=False, extra_modules=(), ibr=False,
                 limits="{ }"):
        self.tls = tls
        # mod_limits' table (Lua text); it takes effect with "limits" in
        # extra_modules, e.g. '{ c2s = { rate = "3kb/s"; burst = "2kb" } }'
        self.limits = limits
        # in-band registration from loopback only (register() uses it):
        # for fleets of test accounts
        self.ibr = ibr and not tls
        self.extra_modules = list(extra_modules)
        self.cert_path = None
        self.cert_sha256 = None
        self.workdir = os.path.abspath(str(workdir))
        self.domain = domain
        self.host = LOOPBACK
        self.port = port
        self._port_fixed = port is not None
        self.smacks = smacks
        self.smacks_hibernation_time = int(smacks_hibernation_time)
        self.log_level = log_level
        self.extra_config = extra_config
        self.config_path = os.path.join(self.workdir, "prosody.cfg.lua")
        self.log_path = os.path.join(self.workdir, "prosody.log")
        self.stdout_path = os.path.join(self.workdir, "prosody.stdout")
        self.pidfile = os.path.join(self.workdir, "prosody.pid")
        self.data_dir = os.path.join(self.workdir, "data")
        self.certs_dir = os.path.join(self.workdir, "certs")
        self.proc = None          # Popen when started by this object
        self.pid = None
        self.startup_seconds = None
        self.users = {}

    # ------------------------------------------------------------ config

    def _render_config(self):
        modules = ["roster", "saslauth", "disco", "pep", "ping", "posix"]
        if self.smacks:
            modules.append("smacks")
        modules += self.extra_modules
        if self.ibr:
            modules.append("register")
        disabled = ["s2s", "s2s_auth_certs", "dialback"]
        if self.tls:
            modules.append("tls")
        else:
            disabled.append("tls")
        q = _lua_str
        lines = [
            "-- Generated by tests/lib/prosody.py for one test run. Loopback only.",
            # As root (the usual test run) Prosody must be told to stay root;
            # as a plain user (make deployed) the setting is meaningless.
            "run_as_root = %s" % ("true" if os.geteuid() == 0 else "false"),
            "pidfile = " + q(self.pidfile),
            "data_path = " + q(self.data_dir),
            "certificates = " + q(self.certs_dir),
            "plugin_paths = { }",
            "log = { { levels = { min = %s }, to = \"file\", filename = %s } }"
            % (q(self.log_level), q(self.log_path)),
            # Listen on loopback only; every network service but c2s is off.
            "interfaces = { %s }" % q(LOOPBACK),
            "local_interfaces = { %s }" % q(LOOPBACK),
            "c2s_interfaces = { %s }" % q(LOOPBACK),
            "c2s_ports = { %d }" % self.port,
            "c2s_direct_tls_ports = { }",
            "legacy_ssl_ports = { }",
            "s2s_ports = { }",
            "s2s_interfaces = { }",
            "http_ports = { }",
            "https_ports = { }",
            "http_interfaces = { }",
            "https_interfaces = { }",
            "component_ports = { }",
            "component_interface = %s" % q(LOOPBACK),
            "admin_socket = %s" % q(os.path.join(self.workdir, "admin.sock")),
            "modules_enabled = { %s }" % ", ".join(q(m) for m in modules),
            # offline (auto-loaded) stays on: the agent relies on it.
            "modules_disabled = { %s }" % ", ".join(q(m) for m in disabled),
            "authentication = \"internal_hashed\"",
            "storage = \"internal\"",
            # Without tls: no TLS module, plaintext streams; SCRAM works,
            # PLAIN is refused.  With tls: STARTTLS before any login.
            "c2s_require_encryption = %s" % ("true" if self.tls else "false"),
            ("ssl = { certificate = %s, key = %s }"
             % (q(self.cert_path), q(self.cert_path[:-4] + ".key"))) if self.tls else "",
            "s2s_require_encryption = false",
            "allow_unencrypted_plain_auth = false",
            "allow_registration = %s" % ("true" if self.ibr else "false"),
            ("registration_whitelist = { %s }\nwhitelist_registration_only = true\n"
             "min_seconds_between_registrations = 0" % q(LOOPBACK)) if self.ibr else "",
            "limits = %s" % self.limits,
            "smacks_hibernation_time = %d" % self.smacks_hibernation_time,
            "conflict_resolve = \"kick_old\"",
            # Shutdown waits at most this (+1 s) for clients to close streams.
            "c2s_close_timeout = 1",
            self.extra_config,
            "VirtualHost %s" % q(self.domain),
            "",
        ]
        return "\n".join(lines)

    def _make_cert(self):
        """Self-signed P-256 certificate for the domain, valid 2 days."""
        import hashlib
        import ssl
        crt = os.path.join(self.certs_dir, self.domain + ".crt")
        key = os.path.join(self.certs_dir, self.domain + ".key")
        r = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", "/CN=" + self.domain, "-addext", "subjectAltName=DNS:" + self.domain,
             "-keyout", key, "-out", crt],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=30)
        if r.returncode != 0:
            raise ProsodyError("openssl req failed: " + r.stdout.decode(errors="replace"))
        with open(crt) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        self.cert_path = crt
        self.cert_sha256 = hashlib.sha256(der).hexdigest()

    def _write_config(self):
        os.makedirs(self.workdir, exist_ok=True)
        os.makedirs(self.data_dir, mode=0o750, exist_ok=True)
        # prosodyctl refuses to run without a certs directory (even empty).
        os.makedirs(self.certs_dir, exist_ok=True)
        if self.tls and self.cert_path is None:
            self._make_cert()
        if self.port is None:
            self.port = free_port()
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(self._render_config())
        os.replace(tmp, self.config_path)

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout=10.0, detach=False):
        """Start the server and wait (bounded) until c2s serves streams.

        detach=True (the CLI) lets the server outlive this process; otherwise
        it gets SIGTERM when its parent dies, so killed test runs leave no
        server behind."""
        if self.running():
            return self
        attempts = 1 if self._port_fixed else 3
        last = None
        for attempt in range(attempts):
            if attempt and not self._port_fixed:
                self.port = None  # the picked port was taken meanwhile
            t0 = time.monotonic()
            self._write_config()
            self._spawn(detach)
            try:
                self._wait_ready(timeout)
            except ProsodyError as e:
                last = e
                self._kill()
                if "bind_failed" not in str(e):
                    raise
                continue
            self._port_fixed = True  # restarts reuse this port
            self.startup_seconds = time.monotonic() - t0
            return self
        raise last

    def _spawn(self, detach):
        # Logs are appended across restarts; _log_offset marks this run's start.
        out = open(self.stdout_path, "ab")
        try:
            self._log_offset = os.path.getsize(self.log_path)
        except OSError:
            self._log_offset = 0
        try:
            self.proc = subprocess.Popen(
                [PROSODY_BIN, "-F", "--config", self.config_path],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.workdir, close_fds=True,
                # Own session: a detached server outlives the CLI and never
                # receives the terminal's signals.
                start_new_session=True,
                preexec_fn=None if detach else die_with_parent,
                env=dict(os.environ, PROSODY_CONFIG=self.config_path))
        finally:
            out.close()
        self.pid = self.proc.pid

    def _new_log(self):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise ProsodyError("prosody exited with status %s during startup\n%s"
                                   % (self.proc.returncode, self.diagnostics()))
            log = self._new_log()
            if "Failed to open server port" in log or "Address already in use" in log:
                raise ProsodyError("bind_failed: could not listen on %s:%d (port in use?)\n%s"
                                   % (self.host, self.port, self.diagnostics()))
            if self._stream_features_ok(min(0.5, max(0.05, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                raise ProsodyError("prosody did not serve c2s on %s:%d within %.1fs\n%s"
                                   % (self.host, self.port, timeout, self.diagnostics()))
            time.sleep(0.02)

    def _stream_features_ok(self, timeout):
        return stream_features_ok(self.host, self.port, self.domain, timeout)

    def running(self):
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and _pid_alive(self.pid)

    def stop(self, timeout=5.0):
        """SIGTERM, then SIGKILL after `timeout` s. Idempotent."""
        if self.proc is None and self.pid is None:
            return
        pid = self.pid
        if self.running():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not self._wait_exit(timeout):
                self._kill()
        elif self.proc is not None:
            self.proc.wait(timeout=1)
        self.proc = None
        self.pid = None

    def _wait_exit(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None:
                if self.proc.poll() is not None:
                    return True
            elif not _pid_alive(self.pid):
                return True
            time.sleep(0.01)
        return False

    def _kill(self):
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            else:
                self._wait_exit(5)
        self.proc = None
        self.pid = None

    def restart(self, timeout=10.0):
        """Stop and start again on the same port; accounts and data stay."""
        self.stop()
        self.start(timeout=timeout)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def __del__(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
        except Exception:
            pass

    # ------------------------------------------------------------ accounts

    def jid(self, user):
        return "%s@%s" % (user, self.domain)

    def _ctl(self, *args, timeout=30.0):
        if not os.path.exists(self.config_path):
            self._write_config()
        try:
            return subprocess.run(
                [PROSODYCTL_BIN, "--config", self.config_path] + list(args),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, cwd=self.workdir, timeout=timeout,
                env=dict(os.environ, PROSODY_CONFIG=self.config_path))
        except subprocess.TimeoutExpired as e:
            raise ProsodyError("prosodyctl %s timed out after %.0fs" % (args[0], timeout)) from e

    def register(self, user, password):
        """Create (or reset the password of) user@domain. Works running or not."""
        if not user or any(c in user for c in "@/ \t\n") or "\n" in password:
            raise ValueError("bad user name or password: %r" % user)
        if self.ibr and self.running():
            answer = register_inband(self.host, self.port, self.domain, user, password)
            if "type='result'" not in answer and 'type="result"' not in answer:
                raise ProsodyError("in-band registration of %s refused: %s" % (user, answer))
            self.users[user] = password
            return self.jid(user)
        r = self._ctl("register", user, self.domain, password)
        if r.returncode != 0:
            raise ProsodyError("prosodyctl register %s failed (%d): %s"
                               % (user, r.returncode, r.stdout.decode(errors="replace")))
        self.users[user] = password
        return self.jid(user)

    def unregister(self, user):
        r = self._ctl("deluser", self.jid(user))
        if r.returncode != 0:
            raise ProsodyError("prosodyctl deluser %s failed: %s"
                               % (user, r.stdout.decode(errors="replace")))
        self.users.pop(user, None)

    # ------------------------------------------------------------ diagnostics

    def log_tail(self, lines=40):
        out = []
        for path in (self.log_path, self.stdout_path):
            try:
                with open(path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    size = f.tell()
                    f.seek(max(0, size - 16384))
                    text = f.read().decode("utf-8", "replace").splitlines()[-lines:]
                out.append("--- %s (last %d lines)\n%s" % (path, len(text), "\n".join(text)))
            except OSError:
                pass
        return "\n".join(out)

    def diagnostics(self):
        return self.log_tail()

    def info(self):
        return {"host": self.host, "port": self.port, "domain": self.domain, "pid": self.pid}


# ---------------------------------------------------------------- CLI

def _cli_start(args):
    srv = Prosody(args.dir, domain=args.domain, port=args.port)
    state = os.path.join(srv.workdir, STATE_FILE)
    if os.path.exists(state):
        with open(state) as f:
            old = json.load(f)
        if old.get("pid") and _pid_alive(old["pid"]) and \
                srv.config_path.encode() in _pid_cmdline(old["pid"]):
            print("prosody.py: a server from %s is already running (pid %d)"
                  % (srv.workdir, old["pid"]), file=sys.stderr)
            return 1
    srv.start(timeout=args.timeout, detach=True)
    try:
        for spec in args.user:
            user, sep, pw = spec.partition(":")
            if not sep:
                raise ValueError("--user wants USER:PASSWORD, got %r" % spec)
            srv.register(user, pw)
    except Exception:
        srv.stop()
        raise
    info = srv.info()
    with open(state + ".tmp", "w") as f:
        json.dump(dict(info, config=srv.config_path), f)
    os.replace(state + ".tmp", state)
    with open(os.path.join(srv.workdir, "pid"), "w") as f:
        f.write("%d\n" % srv.pid)
    # Forget the Popen object so nothing reaps or kills the server on exit.
    srv.proc = None
    print(json.dumps(info), flush=True)
    return 0


def _cli_load(directory):
    workdir = os.path.abspath(directory)
    state = os.path.join(workdir, STATE_FILE)
    try:
        with open(state) as f:
            info = json.load(f)
    except FileNotFoundError:
        return None, None
    srv = Prosody(workdir, domain=info["domain"], port=info["port"])
    return srv, info


def _cli_stop(args):
    srv, info = _cli_load(args.dir)
    if srv is None:
        return 0  # nothing started there: stopping is idempotent
    pid = info.get("pid")
    if pid and _pid_alive(pid) and srv.config_path.encode() in _pid_cmdline(pid):
        srv.pid = pid
        srv.stop(timeout=args.timeout)
    for name in (STATE_FILE, "pid"):
        try:
            os.unlink(os.path.join(srv.workdir, name))
        except FileNotFoundError:
            pass
    return 0


def _cli_register(args):
    srv, info = _cli_load(args.dir)
    if srv is None:
        print("prosody.py: no server state in %s" % args.dir, file=sys.stderr)
        return 1
    srv.register(args.user, args.password)
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="throwaway loopback Prosody")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start a detached server rooted in DIR")
    s.add_argument("dir")
    s.add_argument("--user", action="append", default=[], metavar="USER:PASSWORD")
    s.add_argument("--domain", default="localhost")
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--timeout", type=float, default=10.0)
    s.set_defaults(func=_cli_start)
    t = sub.add_parser("stop", help="stop the server rooted in DIR")
    t.add_argument("dir")
    t.add_argument("--timeout", type=float, default=5.0)
    t.set_defaults(func=_cli_stop)
    r = sub.add_parser("register", help="create an account on the server in DIR")
    r.add_argument("dir")
    r.add_argument("user")
    r.add_argument("password")
    r.set_defaults(func=_cli_register)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (ProsodyError, ValueError) as e:
        print("prosody.py: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
