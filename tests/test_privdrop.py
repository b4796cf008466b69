"""Workers run as nobody with no capabilities whenever moonwire can make
them so, and never hold more than the caller otherwise.

Why this exists: the shipped systemd unit runs the agent as a service user
with only CAP_SETUID/CAP_SETGID, so that its workers can drop to nobody.
A uid change between two non-zero uids keeps capabilities, so the worker
must clear them itself; this test looks at real worker processes in /proc
while a job runs, for root, for a service user with those capabilities
(ambient, as systemd grants them), and for a plain unprivileged user.
"""

import os
import shutil
import subprocess
import tempfile
import time

import pytest

SERVICE_UID = 4242      # no passwd entry needed: setpriv takes numbers

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
    exe = os.path.join(top, "moonwire")
    shutil.copy2(moonwire_bin, exe)
    os.chmod(exe, 0o755)
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
        cmd = ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}", "--clear-groups",
               "--inh-caps=+setuid,+setgid", "--ambient-caps=+setuid,+setgid"] + cmd
    elif who == "plain-user":
        cmd = ["setpriv", f"--reuid={SERVICE_UID}", f"--regid={SERVICE_UID}",
               "--clear-groups"] + cmd
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    try:
        workers = _workers(proc.pid)
        assert workers, "no worker process found"
        for w in workers:
            st = _status(w)
            uids = st["Uid"]
            want = SERVICE_UID if who == "plain-user" else 65534
            assert uids == [str(want)] * 4, (who, uids)
            assert st["Groups"] == [] or who == "plain-user", st["Groups"]
            for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                assert int(st[cap][0], 16) == 0, (who, cap, st[cap])
            assert st["NoNewPrivs"] == ["1"]
            assert st["Seccomp"] == ["2"]
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "status: ok" in out
