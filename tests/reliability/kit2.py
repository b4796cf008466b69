"""Helpers of the reliability suites, on top of tests/lib/agentkit.py
(which is not edited here: subclassed and wrapped).

    RelAgent     an Agent started with extra environment (MOONWIRE_TEST_CRASH),
                 with its pid, VmRSS and log counters at hand
    build_mwclient(moonwire)  compiles tests/reliability/mwclient.c against the
                 build tree of that binary (build/ or build-asan/)
    Client       a long-lived mwclient: send(envelope_path), results by job id
    deploy(...)  prosody + agent + operator(s), verified both ways
"""

import collections
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from agentkit import Agent, Kit, Operator, run  # noqa: E402,F401
from mwbinary import interpose_ldflags  # noqa: E402

PKGS = ["libstrophe", "libomemo-c", "lua5.4", "libseccomp", "openssl",
        "sqlite3", "libcjson", "expat"]
_build_lock = threading.Lock()


def build_mwclient(moonwire):
    """mwclient next to the build tree of `moonwire`; rebuilt when older
    than its source or the libraries."""
    build = os.path.dirname(os.path.abspath(moonwire))
    libs = [os.path.join(build, "lib%s.a" % c) for c in ("runtime", "omemo", "sandbox", "wire")]
    src = os.path.join(HERE, "mwclient.c")
    exe = os.path.join(build, "reliability", "mwclient")
    with _build_lock:
        newest = max(os.path.getmtime(p) for p in libs + [src])
        if os.path.exists(exe) and os.path.getmtime(exe) >= newest:
            return exe
        os.makedirs(os.path.dirname(exe), exist_ok=True)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs"] + PKGS,
                               capture_output=True, text=True, check=True).stdout.split()
        san = (["-fsanitize=address,undefined"]
               if "asan" in os.path.basename(build) else [])
        cmd = (["cc", "-O1", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Werror",
                "-Wno-unused-parameter", "-I" + ROOT] + san + ["-o", exe, src] + libs + flags +
               ["-lm"] + interpose_ldflags())
        subprocess.run(cmd, check=True)
    return exe


class RelAgent(Agent):
    """An agent whose process gets extra environment and can be measured."""

    env = None
    wrapper = ()        # e.g. ("valgrind", "--leak-check=full", ...)
    port_override = None    # connect here (a FaultProxy) instead of Prosody

    def account_lines(self):
        text = super().account_lines()
        if self.port_override:
            text = text.replace("port = %d\n" % self.kit.prosody.port,
                                "port = %d\n" % self.port_override)
        return text

    def start(self, wait=True, env=None, timeout=30):
        self.write_conf()
        self.lines = queue.Queue()
        e = dict(os.environ)
        e.pop("MOONWIRE_TEST_CRASH", None)
        if "asan" in os.path.basename(os.path.dirname(self.kit.moonwire)):
            e.setdefault("LSAN_OPTIONS", "suppressions=" + os.path.join(HERE, "lsan.supp"))
        e.update(self.env or {})
        e.update(env or {})
        self.proc = subprocess.Popen(list(self.wrapper) + [self.kit.moonwire, "agent", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1, env=e)
        threading.Thread(target=self._read, args=(self.proc, self.lines), daemon=True).start()
        if wait:
            self.wait_log(r"moonwire-agent: connected", timeout=timeout)
            time.sleep(0.3)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout):
        """True once the process has exited and the reader thread has
        taken its last lines (wait() returns before the pipe is drained,
        so a grep right after it could miss the dying words)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                if self.lines.get(timeout=0.5) is None:
                    break
            except queue.Empty:
                pass
        return True

    def reap(self):
        """After the process died on its own (a crash point)."""
        if self.proc is not None:
            self.proc.wait()
            self.proc = None

    def rss_kb(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def count(self, pattern):
        rx = re.compile(pattern)
        return sum(1 for l in list(self.log) if rx.search(l))


class Client:
    """mwclient run: one connection for the whole test, reconnecting."""

    def __init__(self, exe, identity, to):
        self.identity = identity
        identity.write_conf()
        self.proc = subprocess.Popen([exe, "run", "-c", identity.conf, "--to", to],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.results = collections.defaultdict(list)    # job id -> [(time, dict)]
        self.events = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self.cond:
                if line.startswith("R "):
                    r = json.loads(line[2:])
                    self.results[r.get("job_id")].append((time.time(), r))
                else:
                    self.events.append((time.time(), line))
                    if line == "E connected":
                        self.connected.set()
                    elif line.startswith("E disconnected"):
                        self.connected.clear()
                self.cond.notify_all()

    def wait_connected(self, timeout=30):
        assert self.connected.wait(timeout), "client not connected: %r" % self.events[-5:]

    def send(self, *paths):
        self.proc.stdin.write("".join("send %s\n" % p for p in paths))
        self.proc.stdin.flush()

    def wait_results(self, job_ids, timeout):
        """True when every job id has at least one result."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                if all(self.results.get(j) for j in job_ids):
                    return True
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))

    def result(self, job_id):
        with self.cond:
            r = self.results.get(job_id)
            return r[0][1] if r else None

    def event_count(self, prefix):
        with self.cond:
            return sum(1 for _, e in self.events if e.startswith(prefix))

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def sign_envelopes(exe, op, agent_jid, program, outdir, prefix, count, ttl=3000):
    """count envelopes (job ids PREFIX-00000..) of `program` text ("@ID@"
    becomes the job id); returns [(job_id, path)]."""
    os.makedirs(outdir, exist_ok=True)
    prog = os.path.join(outdir, prefix + ".lua.in")
    with open(prog, "w") as f:
        f.write(program)
    run([exe, "sign", "-k", op.key, "--to", agent_jid, "--prefix", prefix, "--count",
         str(count), "--program", prog, "--outdir", outdir, "--ttl", str(ttl)], timeout=600)
    ids = ["%s-%05d" % (prefix, i) for i in range(count)]
    return [(j, os.path.join(outdir, j + ".job")) for j in ids]


def deploy(moonwire, prosody, workdir, operators=("alice",), profile_extra="",
           settings=None):
    """A kit with one RelAgent and verified operators allowed to run the
    `default` profile (sys, kv, write WORKDIR/marks, sleep 2s)."""
    kit = Kit(moonwire, prosody, workdir)
    agent = RelAgent(kit, "agent")
    kit.agents.append(agent)
    marks = os.path.join(str(workdir), "marks")
    os.makedirs(marks, exist_ok=True)
    os.chmod(marks, 0o777)      # workers run as nobody
    os.chmod(str(workdir), 0o755)
    agent.policy_text = ("limits wall=10s\nprofile default\n  sys\n  kv\n  write %s\n"
                         "  sleep 2s\n%s" % (marks, profile_extra))
    agent.settings.update(settings or {})
    ops = []
    for name in operators:
        op = kit.operator(name)
        agent.allow(op)
        ops.append(op)
    agent.write_conf()
    for op in ops:
        kit.trust(agent, op)
    return kit, agent, ops, marks


def marks_count(marks, job_id):
    """How often job job_id ran: one byte appended per run."""
    try:
        return os.path.getsize(os.path.join(marks, job_id))
    except FileNotFoundError:
        return 0


SIDE_EFFECT = 'fs.write("%s/@ID@", "x", "a")\n'
