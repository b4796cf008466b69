"""The sandbox behaves the same under the shipped unit's credentials as
under root (issue 10).

Why this exists: every other suite runs as root, and root hides permission
bugs -- a root supervisor can signal any worker or command, and a command
run by root cannot show that it kept capabilities it should not have.
These tests run twice in `make test`: as root (`make pytest`) and as the
system user moonwire-test under exactly the AmbientCapabilities,
CapabilityBoundingSet and NoNewPrivileges of
runtime/dist/moonwire-agent.service (`make deployed`,
tests/lib/as-deployed.py; MW_AS_DEPLOYED=1 then).  They use the real
binary: `moonwire run`, and the agent (tests/e2e fixtures) where two jobs
must be in flight at once.

  a. the wall limit ends a job waiting in sleep(), in exec.run, and an
     fs.read of a FIFO is refused (typed error) instead of hanging;
  b. an allowlisted command has no capabilities, NoNewPrivs, a non-root
     uid, cannot become root and cannot read /etc/shadow;
  c. no process of a job (a detached grandchild included) outlives its
     result;
  d. a FIFO read does not hold up another job in the agent;
  e. output_limit, capability_limit and the kill after DONE each leave no
     worker behind, and the supervisor serves the next job.

Every wait is bounded: a hang fails the test, it never blocks the run.
Run: MOONWIRE=build/moonwire /usr/bin/python3 -m pytest tests/test_deployed.py
     make deployed DEPLOYED_TARGETS=tests/test_deployed.py   (as the unit)
"""

import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
AS_DEPLOYED = os.environ.get("MW_AS_DEPLOYED") == "1"
MARK = "%06d%04d" % (os.getpid() % 1000000, random.randint(0, 9999))
NOBODY = 65534
CAP_SETUID = 7
CAP_SETGID = 6
CAP_SETPCAP = 8

# The e2e fixtures (a Prosody, an agent, an operator) for the agent tests.
_spec = importlib.util.spec_from_file_location("mw_e2e_conftest",
                                               os.path.join(HERE, "e2e", "conftest.py"))
_e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_e2e)
kit = _e2e.kit
deploy = _e2e.deploy


# ------------------------------------------------------------ /proc helpers

def _children(pid):
    out = []
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        for c in _children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def _stat(pid):
    """(state, starttime) of a process, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return rest[0], int(rest[19])
    except (OSError, IndexError, ValueError):
        return None


def _status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()
    return fields


def _parse_status(text):
    fields = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        fields[k] = v.split()
    return fields


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _uid(pid):
    try:
        return int(_status(pid)["Uid"][0])
    except (OSError, KeyError, IndexError, ValueError):
        return None


def _alive(pid, start=None):
    """Exists, is not a zombie, and (given start) is the same process."""
    st = _stat(pid)
    if st is None or st[0] in ("Z", "X"):
        return False
    return start is None or st[1] == start


def _describe(pid):
    st = _stat(pid)
    return "pid %d uid %s state %s: %s" % (pid, _uid(pid), st[0] if st else "?", _cmdline(pid))


def _with_marker(marker):
    found = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != os.getpid() and marker in _cmdline(int(d)) \
                and _alive(int(d)):
            found.append(int(d))
    return found


def _kill_pids(pids):
    # cleanup of processes this test made a job start (by pid only)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def _can_change_uid():
    """Whether our commands are expected to run as nobody: root, or a
    caller holding CAP_SETUID and CAP_SETGID (the unit's user)."""
    if os.geteuid() == 0:
        return True
    eff = int(_status(os.getpid())["CapEff"][0], 16)
    return bool(eff & (1 << CAP_SETUID)) and bool(eff & (1 << CAP_SETGID))


def _has_cap(bit):
    return bool(int(_status(os.getpid())["CapEff"][0], 16) & (1 << bit))


def _command_uid():
    return NOBODY if _can_change_uid() else os.getuid()


def _wait(cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def _unblock_fifo(path):
    """Releases any reader stuck in open() on the FIFO (cleanup)."""
    for _ in range(20):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return          # ENXIO: no reader waits
        os.close(fd)
        time.sleep(0.05)


# ------------------------------------------------------------ moonwire run

class Run:
    """`moonwire run --json ARGS` with its process tree sampled while it runs."""

    def __init__(self, moonwire, args, timeout):
        self.seen = {}          # pid -> (starttime, cmdline, uid)
        self._first, self._latest = {}, {}
        self.timed_out = False
        t0 = time.monotonic()
        self.proc = subprocess.Popen([moonwire, "run", "--json"] + list(args),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        stop = threading.Event()
        th = threading.Thread(target=self._sample, args=(stop,), daemon=True)
        th.start()
        try:
            self.out, self.err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.timed_out = True
            self._sample_once()
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.out, self.err = self.proc.communicate()
        self.secs = time.monotonic() - t0
        stop.set()
        th.join(5)
        self.rc = self.proc.returncode
        try:
            self.res = json.loads(self.out)
        except ValueError:
            self.res = None

    def _sample_once(self):
        # depth 1 supervisor, 2 zygote, 3 workers (spec/sandbox.md)
        todo = [(self.proc.pid, 0)]
        while todo:
            pid, depth = todo.pop()
            for c in _children(pid):
                todo.append((c, depth + 1))
                st = _stat(c)
                if st and c not in self.seen:
                    self.seen[c] = (st[1], _cmdline(c), _uid(c))
                if st and depth + 1 == 3:
                    # the latest status: a worker confines itself just
                    # after fork, so the first look may be too early
                    try:
                        now = time.monotonic()
                        first = self._first.setdefault(c, now)
                        self._latest[c] = (now - first, _status(c))
                    except OSError:
                        pass

    def _sample(self, stop):
        while not stop.is_set() and self.proc.poll() is None:
            self._sample_once()
            time.sleep(0.01)

    @property
    def workers(self):
        """pid -> /proc status of workers watched for at least 0.3 s."""
        return {p: st for p, (age, st) in self._latest.items() if age >= 0.3}

    def survivors(self):
        return [p for p, (start, _, _) in self.seen.items() if _alive(p, start)]

    def why(self):
        return "exit %s after %.2f s%s\nstdout: %s\nstderr: %s" % (
            self.rc, self.secs, " (KILLED: did not exit in time)" if self.timed_out else "",
            self.out, self.err)


def mw_run(moonwire, args, timeout=20):
    return Run(moonwire, args, timeout)


def assert_tree_gone(run, grace=1.0):
    """Every process seen below `moonwire run` is gone shortly after it exits."""
    _wait(lambda: not run.survivors(), grace)
    left = run.survivors()
    assert not left, "processes of the run still alive after its result:\n" + \
        "\n".join(_describe(p) for p in left)


@pytest.fixture
def work(tmp_path):
    d = tmp_path / "work"
    rd = d / "granted"
    rd.mkdir(parents=True)
    (rd / "plain.txt").write_text("plain\n")
    os.mkfifo(str(rd / "fifo"))
    policy = d / "policy"
    policy.write_text(
        "command nap timeout=60s /bin/sleep 30.%s\n" % MARK +
        "command status /bin/cat /proc/self/status\n"
        "command su /usr/bin/setpriv --reuid=0 /usr/bin/id -u\n"
        "command shadow /bin/cat /etc/shadow\n"
        'command detach timeout=10s /bin/sh -c "setsid sleep 300.%s >/dev/null 2>&1 & '
        'echo started"\n' % MARK)
    progs = {}
    for name, text in {
        "sleepy": "while true do sleep(5) end\n",
        "nap": 'return exec.run("nap")\n',
        "fifo": 'return fs.read("%s")\n' % (rd / "fifo"),
        "status": 'local r = exec.run("status") return r.stdout, r.code\n',
        "su": 'return exec.run("su")\n',
        "shadow": 'return exec.run("shadow")\n',
        "detach": 'return exec.run("detach")\n',
        "trivial": "return 6 * 7\n",
    }.items():
        p = d / (name + ".lua")
        p.write_text(text)
        progs[name] = str(p)
    yield {"dir": d, "read": str(rd), "fifo": str(rd / "fifo"), "policy": str(policy),
           "p": progs}
    _unblock_fifo(str(rd / "fifo"))
    _kill_pids(_with_marker(MARK))


def assert_still_runs(moonwire_bin, work):
    r = mw_run(moonwire_bin, [work["p"]["trivial"]])
    assert r.res and r.res["status"] == "ok" and r.res["values"] == [42], r.why()


# ---- the harness itself: the deployed pass has exactly the unit's credentials

CAP_NAMES = ("chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap "
             "linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock "
             "ipc_owner sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin "
             "sys_boot sys_nice sys_resource sys_time sys_tty_config mknod lease audit_write "
             "audit_control setfcap mac_override mac_admin syslog wake_alarm block_suspend "
             "audit_read perfmon bpf checkpoint_restore").split()


def _mask(names):
    m = 0
    for n in filter(None, names.split(",")):
        m |= 1 << CAP_NAMES.index(n)
    return m


def _harness():
    spec = importlib.util.spec_from_file_location(
        "mw_as_deployed", os.path.join(HERE, "lib", "as-deployed.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_harness_parses_the_unit(tmp_path):
    h = _harness()
    unit = h.parse_unit(os.path.join(os.path.dirname(HERE), "runtime", "dist",
                                     "moonwire-agent.service"))
    assert unit["ambient"] and unit["nnp"] is True, unit
    assert set(unit["ambient"]) <= set(unit["bounding"]), unit
    f = tmp_path / "x.service"
    f.write_text("[Unit]\nAmbientCapabilities=CAP_SYS_ADMIN\n[Service]\n"
                 "AmbientCapabilities=CAP_SETUID\nAmbientCapabilities=CAP_KILL CAP_SETUID\n"
                 "CapabilityBoundingSet=CAP_NET_RAW\nCapabilityBoundingSet=\n"
                 "CapabilityBoundingSet=CAP_SETUID CAP_KILL\nNoNewPrivileges=true\n")
    u = h.parse_unit(str(f))
    assert u == {"ambient": ["setuid", "kill"], "bounding": ["setuid", "kill"], "nnp": True}, u
    assert h.setpriv_prefix(u, 5, 6) == [
        "setpriv", "--reuid=5", "--regid=6", "--clear-groups",
        "--inh-caps=-all,+setuid,+kill", "--ambient-caps=-all,+setuid,+kill",
        "--bounding-set=-all,+setuid,+kill", "--no-new-privs"]
    f.write_text("[Service]\nCapabilityBoundingSet=~CAP_SYS_ADMIN\n")
    with pytest.raises(h.UnitError):
        h.parse_unit(str(f))


@pytest.mark.skipif(not AS_DEPLOYED, reason="only in the deployed pass (make deployed)")
def test_harness_runs_with_the_units_credentials():
    st = _status(os.getpid())
    amb = _mask(os.environ["MW_DEPLOYED_AMBIENT"])
    bnd = _mask(os.environ["MW_DEPLOYED_BOUNDING"])
    assert os.getuid() != 0 and os.geteuid() != 0 and st["Groups"] == [], st
    assert int(st["CapAmb"][0], 16) == amb, st["CapAmb"]
    assert int(st["CapEff"][0], 16) == amb and int(st["CapPrm"][0], 16) == amb, st
    assert int(st["CapBnd"][0], 16) == bnd, st["CapBnd"]
    assert st["NoNewPrivs"] == [os.environ["MW_DEPLOYED_NNP"]], st["NoNewPrivs"]


# ---- a. the wall limit ends every kind of wait

WALL = 1.0


def test_wall_limit_ends_sleep(moonwire_bin, work):
    r = mw_run(moonwire_bin, ["--sleep", "10s", "--wall", "1s", work["p"]["sleepy"]])
    assert not r.timed_out and r.res is not None, r.why()
    assert r.res["status"] == "wall_limit", r.why()
    assert r.res["error"] == "wall-clock limit exceeded (1000 ms)", r.why()
    assert r.rc == 4, r.why()
    assert r.secs < WALL + 1, r.why()
    assert_tree_gone(r)


def test_wall_limit_ends_exec_run(moonwire_bin, work):
    r = mw_run(moonwire_bin, ["--policy", work["policy"], "--exec", "nap", "--wall", "1s",
                              work["p"]["nap"]])
    try:
        assert not r.timed_out and r.res is not None, r.why()
        assert r.res["status"] == "wall_limit", r.why()
        assert r.res["error"] == "wall-clock limit exceeded (1000 ms)", r.why()
        assert r.rc == 4, r.why()
        assert r.secs < WALL + 1, r.why()
        assert_tree_gone(r)
        _wait(lambda: not _with_marker("30." + MARK), 1.0)
        left = _with_marker("30." + MARK)
        assert not left, "the command outlived the job:\n" + \
            "\n".join(_describe(p) for p in left)
    finally:
        _kill_pids(_with_marker("30." + MARK))


def test_wall_limit_fifo_read_is_refused(moonwire_bin, work):
    # Opening a FIFO blocks until a writer comes: fs.read must refuse
    # anything but a regular file (a typed error), well within the limit.
    r = mw_run(moonwire_bin, ["--read", work["read"], "--wall", "1s", work["p"]["fifo"]],
               timeout=15)
    _unblock_fifo(work["fifo"])
    assert not r.timed_out and r.res is not None, r.why()
    assert r.res["status"] == "error", r.why()
    assert "not a regular file" in (r.res["error"] or ""), r.why()
    assert r.rc == 1, r.why()
    assert r.secs < WALL + 1, r.why()
    assert_tree_gone(r)
    assert_still_runs(moonwire_bin, work)


# ---- b. an allowlisted command holds nothing

def test_command_has_no_capabilities(moonwire_bin, work):
    r = mw_run(moonwire_bin, ["--policy", work["policy"], "--exec", "status",
                              work["p"]["status"]])
    assert r.res and r.res["status"] == "ok", r.why()
    text, code = r.res["values"]
    assert code == 0, r.why()
    st = _parse_status(text)
    brief = "command's /proc/self/status: " + "; ".join(
        "%s %s" % (k, " ".join(st.get(k, ["?"]))) for k in
        ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
         "NoNewPrivs", "Seccomp"))
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(st[cap][0], 16) == 0, "%s not empty; %s" % (cap, brief)
    assert st["NoNewPrivs"] == ["1"], "NoNewPrivs not set; " + brief
    if _can_change_uid():
        assert all(u != "0" for u in st["Uid"]), "command runs with uid 0; " + brief
        assert all(g != "0" for g in st["Gid"]), "command runs with gid 0; " + brief


def test_command_bounding_set_empty(moonwire_bin, work):
    # The unit's own promise for CAP_SETPCAP: "workers and commands lose the
    # bounding set"; possible whenever the caller holds CAP_SETPCAP.
    r = mw_run(moonwire_bin, ["--policy", work["policy"], "--exec", "status",
                              work["p"]["status"]])
    assert r.res and r.res["status"] == "ok", r.why()
    st = _parse_status(r.res["values"][0])
    if _has_cap(CAP_SETPCAP):
        assert int(st["CapBnd"][0], 16) == 0, "command's CapBnd %s" % st["CapBnd"][0]


def _nap_run(moonwire_bin, work):
    prog = work["dir"] / "nap.lua"
    prog.write_text("sleep(1)\nreturn 1\n")
    r = mw_run(moonwire_bin, ["--sleep", "2s", str(prog)])
    assert r.res and r.res["status"] == "ok", r.why()
    assert r.workers, "no worker seen below moonwire run: %r" % r.seen
    return r


def _brief(pid, st):
    return "worker %d: %s" % (pid, "; ".join(
        "%s %s" % (k, " ".join(st.get(k, ["?"]))) for k in
        ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
         "NoNewPrivs", "Seccomp")))


def test_worker_identity(moonwire_bin, work):
    # Workers as seen in /proc (spec/sandbox.md, "Processes").
    r = _nap_run(moonwire_bin, work)
    want = NOBODY if _can_change_uid() else os.getuid()
    for pid, st in r.workers.items():
        brief = _brief(pid, st)
        assert st["Uid"] == [str(want)] * 4, brief
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(st[cap][0], 16) == 0, brief
        assert st["NoNewPrivs"] == ["1"] and st["Seccomp"] == ["2"], brief


def test_worker_bounding_set_empty(moonwire_bin, work):
    r = _nap_run(moonwire_bin, work)
    if _has_cap(CAP_SETPCAP):
        for pid, st in r.workers.items():
            assert int(st["CapBnd"][0], 16) == 0, _brief(pid, st)


def test_command_cannot_become_root(moonwire_bin, work):
    r = mw_run(moonwire_bin, ["--policy", work["policy"], "--exec", "su", work["p"]["su"]])
    assert r.res and r.res["status"] == "ok", r.why()
    v = r.res["values"][0]
    assert v.get("code") != 0, "setpriv --reuid=0 worked: %r" % v
    assert "0" not in v.get("stdout", "").split(), "the command became root: %r" % v


def test_command_cannot_read_shadow(moonwire_bin, work):
    r = mw_run(moonwire_bin, ["--policy", work["policy"], "--exec", "shadow",
                              work["p"]["shadow"]])
    assert r.res and r.res["status"] == "ok", r.why()
    v = r.res["values"][0]
    assert v.get("code") != 0, "cat /etc/shadow worked (exit code %r, %d bytes)" % (
        v.get("code"), len(v.get("stdout", "")))
    assert "root:" not in v.get("stdout", ""), "the command read /etc/shadow"


# ---- c. nothing of a job outlives its result

def test_detached_child_does_not_outlive_the_job(moonwire_bin, work):
    marker = "300." + MARK
    uid = _command_uid()
    try:
        r = mw_run(moonwire_bin, ["--policy", work["policy"], "--exec", "detach",
                                  work["p"]["detach"]])
        assert r.res and r.res["status"] == "ok", r.why()
        v = r.res["values"][0]
        assert v.get("stdout") == "started\n", v
        # by marker (the detached sleep has left the tree) and by uid
        _wait(lambda: not _with_marker(marker), 1.0)
        left = _with_marker(marker)
        assert not left, "detached processes of the job are alive after its result:\n" + \
            "\n".join(_describe(p) for p in left)
        mine = [p for p, (start, cmd, u) in r.seen.items()
                if u == uid and p != r.proc.pid and _alive(p, start)]
        assert not mine, "processes of uid %d from the run are alive:\n%s" % (
            uid, "\n".join(_describe(p) for p in mine))
        # by process tree
        assert_tree_gone(r)
    finally:
        _kill_pids(_with_marker(marker))


# ------------------------------------------------------------ the agent

def _one(results):
    assert len(results) == 1, results
    return results[0]


def _sandbox(agent):
    """(supervisor pid, zygote pid or None) of a running agent."""
    sup = None
    for line in agent.grep(r"supervisor=\d+"):
        sup = int(re.search(r"supervisor=(\d+)", line).group(1))
    if sup is None:
        for c in _children(agent.proc.pid):
            if "__supervisor" in _cmdline(c):
                sup = c
    assert sup is not None, "no supervisor pid in the agent log:\n" + "\n".join(agent.log)
    zyg = None
    for c in _children(sup):
        if _children(c):
            zyg = c
    if zyg is None:
        kids = _children(sup)
        zyg = kids[0] if kids else None
    return sup, zyg


def _workers(agent):
    sup, zyg = _sandbox(agent)
    return {p: _stat(p)[1] for p in (_children(zyg) if zyg else []) if _alive(p)}


def _settled_workers(agent, timeout=5.0):
    """The worker pool once it stopped changing (two equal samples)."""
    prev = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur = _workers(agent)
        if cur and cur == prev:
            return cur
        prev = cur
        time.sleep(0.2)
    return prev or {}


def _start(deploy, policy=None):
    if policy is not None:
        deploy.agent.policy_text = policy
    deploy.agent.start()
    return deploy


def _send_ok(d, name="one", value=1):
    prog = d.program(name + ".lua", "return %d\n" % value)
    t0 = time.monotonic()
    p, res = d.alice.send(d.agent, prog, timeout="20s")
    r = _one(res)
    assert r["status"] == "ok" and r["values"] == [value], (r, p.stderr)
    return time.monotonic() - t0


def test_agent_fifo_read_does_not_hold_up_another_job(deploy):
    d = _start(deploy)
    fifo = os.path.join(d.read_dir, "fifo")
    os.mkfifo(fifo)
    try:
        _send_ok(d, "warm")
        seen = len(d.agent.log)
        stuck = d.alice.send_async(d.agent, d.program("fifo.lua", 'return fs.read("%s")\n' % fifo),
                                   timeout="25s")
        assert _wait(lambda: any("accepted job=" in l for l in d.agent.log[seen:]), 20), \
            "the FIFO job was not accepted:\n" + "\n".join(d.agent.log[seen:])
        time.sleep(0.3)         # the FIFO job is in the sandbox now
        t0 = time.monotonic()
        quick = d.alice.send_async(d.agent, d.program("quick.lua", "return 42\n"), timeout="25s")
        rc2, res2, err2 = d.alice.collect(quick, timeout=40)
        quick_secs = time.monotonic() - t0
        rc1, res1, err1 = d.alice.collect(stuck, timeout=40)
    finally:
        _unblock_fifo(fifo)
    assert res2, "no result for the second job (exit %d): %s" % (rc2, err2)
    r2 = _one(res2)
    assert r2["status"] == "ok" and r2["values"] == [42], \
        "second job, %.1f s after it was sent, while a FIFO read was pending: %r" % (quick_secs, r2)
    assert quick_secs < 5, "the second job took %.1f s while a FIFO read was pending" % quick_secs
    assert res1, "no result for the FIFO job (exit %d): %s" % (rc1, err1)
    r1 = _one(res1)
    assert r1["status"] == "error" and "not a regular file" in (r1["error"] or ""), r1
    assert r1["usage"]["wall_us"] < 10 * 1000000, r1
    _send_ok(d, "after")


@pytest.mark.parametrize("case", ["output_limit", "capability_limit", "done"])
def test_agent_kill_paths_leave_no_worker(deploy, case):
    d = _start(deploy)
    _send_ok(d, "warm")
    sup, _ = _sandbox(d.agent)
    before = _settled_workers(d.agent)
    assert before, "no idle worker found below supervisor %d" % sup
    if case == "output_limit":
        prog = d.program("flood.lua", 'while true do print(("x"):rep(100)) end\n')
        extra = ["--limit", "output=1K"]
    elif case == "capability_limit":
        prog = d.program("calls.lua", "for i = 1, 100 do sys.info() end\nreturn 1\n")
        extra = ["--limit", "calls=5"]
    else:
        prog = d.program("done.lua", "return 7\n")
        extra = []
    p, res = d.alice.send(d.agent, prog, timeout="20s", extra=extra)
    r = _one(res)
    want = {"output_limit": "output_limit", "capability_limit": "capability_limit",
            "done": "ok"}[case]
    assert r["status"] == want, (r, p.stderr)

    def served_worker_gone():
        now = _workers(d.agent)
        gone = [w for w, start in before.items() if now.get(w) != start]
        return gone and len(now) <= len(before)
    ok = _wait(served_worker_gone, 3.0)
    now = _workers(d.agent)
    assert ok, ("the worker that ran the job is still there: workers before %s, now:\n%s"
                % (sorted(before), "\n".join(_describe(w) for w in now)))
    # the same supervisor serves the next job
    assert _alive(sup), "the supervisor %d died" % sup
    _send_ok(d, "next")
    assert _sandbox(d.agent)[0] == sup and _alive(sup), "the supervisor was replaced"
