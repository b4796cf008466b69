"""Workers run as nobody with no capabilities whenever moonwire can make
them so, and never hold more than the caller otherwise; every kill lands.

Why this exists: the shipped systemd unit runs the agent as a service user
with the capabilities its AmbientCapabilities line names (read from
runtime/dist/moonwire-agent.service, so this tests what ships), so that
workers and commands can drop to nobody and still be killed.  A uid change
between two non-zero uids keeps capabilities, so the worker must clear
them itself; this test looks at real worker processes in /proc while a job
runs, for root, for a service user with the unit's capabilities (ambient,
as systemd grants them), and for a plain unprivileged user; and it stops
the supervisor to show that a worker ends itself at its wall limit.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

SERVICE_UID = 4242      # no passwd entry needed: setpriv takes numbers
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unit_caps():
    """The capability names the shipped unit grants, e.g. ["setuid", ...]."""
    with open(os.path.join(TOP, "runtime", "dist", "moonwire-agent.service")) as f:
        for line in f:
            if line.startswith("AmbientCapabilities="):
                return [c.strip().lower().removeprefix("cap_")
                        for c in line.split("=", 1)[1].split()]
    raise AssertionError("the unit has no AmbientCapabilities line")


def as_unit_user(cmd, caps=None):
    caps = unit_caps() if caps is None else caps
    spec = ",".join(["-all"] + ["+" + c for c in caps])
    return ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups",
            f"--inh-caps={spec}", f"--ambient-caps={spec}", f"--bounding-set={spec}",
            "--no-new-privs"] + cmd

# It sets up the three identities itself with setpriv: root only (the
# deployed pass, tests/lib/as-deployed.py, does not run it).
pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: sets up its identities with setpriv")


def _children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()
    return fields


def _workers(run_pid, timeout=10.0):
    """Pids of workers: moonwire run -> supervisor -> zygote -> workers."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = []
        for sup in _children(run_pid):
            for zyg in _children(sup):
                found += _children(zyg)
        if found:
            return found
        time.sleep(0.05)
    return []


def _settled_workers(run_pid, workers, want_uid, timeout=5.0):
    """[(pid, status)] of the workers once each has changed its identity.
    A worker the zygote has just forked (a spare, made while the job runs)
    still has the zygote's uid until its confinement reaches the uid
    change, microseconds later, longer on a loaded machine.  Waits until
    every worker found has want_uid, then returns their statuses; after
    timeout returns them as they are, for the caller's assertions to show
    which worker kept what."""
    deadline = time.time() + timeout
    last = []
    while True:
        found = []
        for w in workers:
            try:
                found.append((w, _status(w)))
            except FileNotFoundError:       # a spare retired meanwhile
                pass
        last = found or last                # the run may end while we wait
        if (found and all(st["Uid"] == [str(want_uid)] * 4 for _, st in found)) \
                or time.time() >= deadline:
            return last
        time.sleep(0.05)
        workers = _workers(run_pid, timeout=0.5) or workers


@pytest.mark.parametrize("who", ["root", "service-user-with-caps", "plain-user"])
def test_worker_identity_and_capabilities(moonwire_bin, who):
    # pytest's tmp_path is private to root: the other users need a path
    # they can reach
    top = tempfile.mkdtemp(prefix="mw-privdrop-")
    try:
        _check(moonwire_bin, who, top)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _check(moonwire_bin, who, top):
    from pathlib import Path
    tmp_path = Path(top)
    os.chmod(top, 0o755)
    # the checkout may live where other users cannot reach (e.g. /root):
    # run a copy of the binary from the shared directory
    exe = _copy_binaries(moonwire_bin, top)
    moonwire_bin = exe
    prog = tmp_path / "nap.lua"
    prog.write_text("sleep(2)\nreturn 1\n")
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(state, 0o777)
    os.chmod(prog, 0o644)
    cmd = [moonwire_bin, "run", "--sleep", "3s", "--state", str(state), str(prog)]
    if who == "service-user-with-caps":
        cmd = as_unit_user(cmd)
    elif who == "plain-user":
        cmd = ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}",
               "--clear-groups"] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    try:
        workers = _workers(proc.pid)
        assert workers, "no worker process found"
        # the zygote is moonwire-zygote, exec'd with the supervisor's
        # capabilities (kept: it forks the workers that drop), confined
        # by its own filter, with nothing in its ambient set
        zyg = _zygote(proc.pid)
        with open(f"/proc/{zyg}/comm") as f:
            assert f.read().strip() == "moonwire-zygote", who
        zst = _status(zyg)
        assert zst["NoNewPrivs"] == ["1"] and zst["Seccomp"] == ["2"], (who, zst)
        assert int(zst["CapAmb"][0], 16) == 0, (who, zst["CapAmb"])
        sup_caps = int(_status(_children(proc.pid)[0])["CapPrm"][0], 16)
        assert int(zst["CapPrm"][0], 16) == sup_caps, (who, zst["CapPrm"], hex(sup_caps))
        want = SERVICE_UID if who == "plain-user" else 65534
        settled = _settled_workers(proc.pid, workers, want)
        assert settled, "every worker found has gone"
        for w, st in settled:
            uids = st["Uid"]
            assert uids == [str(want)] * 4, (who, uids)
            assert st["Groups"] == [] or who == "plain-user", st["Groups"]
            for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                assert int(st[cap][0], 16) == 0, (who, cap, st[cap])
            if who != "plain-user":
                assert int(st["CapBnd"][0], 16) == 0, (who, st["CapBnd"])
            assert st["NoNewPrivs"] == ["1"]
            assert st["Seccomp"] == ["2"]
            # namespaces: private net/ipc/uts as root; the host's under the
            # unit and for a plain user, as spec/sandbox.md says
            for ns in ("net", "ipc", "uts"):
                same = os.readlink(f"/proc/{w}/ns/{ns}") == os.readlink(f"/proc/self/ns/{ns}")
                assert same == (who != "root"), (who, ns)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "status: ok" in out


def _shared_copy(moonwire_bin):
    top = tempfile.mkdtemp(prefix="mw-privdrop-")
    os.chmod(top, 0o755)
    return top, _copy_binaries(moonwire_bin, top)


def _copy_binaries(moonwire_bin, top, zygote=True):
    """moonwire (and moonwire-zygote, which the supervisor finds next to
    it) copied to top; returns the path of the copy of moonwire."""
    exe = os.path.join(top, "moonwire")
    shutil.copy2(moonwire_bin, exe)
    os.chmod(exe, 0o755)
    zyg = os.path.join(os.path.dirname(moonwire_bin), "moonwire-zygote")
    if zygote:
        assert os.access(zyg, os.X_OK), "no moonwire-zygote next to " + moonwire_bin
        shutil.copy2(zyg, os.path.join(top, "moonwire-zygote"))
        os.chmod(os.path.join(top, "moonwire-zygote"), 0o755)
    return exe


def _zygote(run_pid, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for sup in _children(run_pid):
            for zyg in _children(sup):
                return zyg
        time.sleep(0.05)
    raise AssertionError("no zygote process found")


def test_without_moonwire_zygote_workers_fork_from_the_supervisor(moonwire_bin):
    # moonwire-zygote missing next to the binary: the supervisor says so
    # and serves from a zygote forked from its own image, confined alike
    top = tempfile.mkdtemp(prefix="mw-privdrop-")
    try:
        os.chmod(top, 0o755)
        exe = _copy_binaries(moonwire_bin, top, zygote=False)
        prog = _program(top, "one.lua", "return 1\n")
        p = subprocess.run([exe, "run", prog], capture_output=True, text=True, timeout=60,
                           env={"PATH": os.environ["PATH"], "HOME": top})
        assert p.returncode == 0 and "status: ok" in p.stdout, p.stdout + p.stderr
        assert ("moonwire-zygote: not found next to the moonwire binary; workers are "
                "forked from the supervisor's image") in p.stderr, p.stderr
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _program(top, name, text):
    path = os.path.join(top, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def test_setuid_without_kill_is_refused(moonwire_bin):
    # Workers would run as nobody and no kill could reach them: the
    # supervisor refuses to start rather than run jobs no limit can end.
    top, exe = _shared_copy(moonwire_bin)
    try:
        prog = _program(top, "one.lua", "return 1\n")
        p = subprocess.run(as_unit_user([exe, "run", prog], caps=["setuid", "setgid"]),
                           capture_output=True, text=True, timeout=30)
        assert p.returncode != 0
        assert "refusing to start: CAP_SETUID without CAP_KILL" in p.stderr, p.stderr
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.mark.parametrize("who", ["root", "service-user-with-caps"])
def test_worker_ends_itself_when_the_supervisor_is_stuck(moonwire_bin, who):
    # The supervisor is stopped (SIGSTOP) while a job spins: the worker's
    # own wall deadline ends it although nobody kills it; once resumed,
    # the supervisor reports wall_limit.
    top, exe = _shared_copy(moonwire_bin)
    try:
        prog = _program(top, "spin.lua", "while true do end\n")
        cmd = [exe, "run", "--json", "--wall", "1s", "--cpu", "60s",
               "--instructions", "100000000000", prog]
        if who != "root":
            cmd = as_unit_user(cmd)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 10
            sup = None
            busy = []
            while time.time() < deadline and not busy:
                sups = _children(proc.pid)
                for sv in sups:
                    for zyg in _children(sv):
                        for w in _children(zyg):
                            try:
                                if _cpu_ticks(w) > 5:
                                    busy.append(w)
                                    sup = sv
                            except OSError:
                                pass
                time.sleep(0.05)
            assert busy, "no busy worker found"
            os.kill(sup, signal.SIGSTOP)
            try:
                time.sleep(2.0)     # wall 1 s + the worker's 250 ms grace, with margin
                for w in busy:
                    assert not os.path.exists(f"/proc/{w}") or \
                        _status(w).get("State", ["Z"])[0] == "Z", "worker outlived its wall limit"
            finally:
                os.kill(sup, signal.SIGCONT)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        import json
        res = json.loads(out)
        assert res["status"] == "wall_limit", (res, err)
    finally:
        shutil.rmtree(top, ignore_errors=True)
