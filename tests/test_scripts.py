"""The everyday programs in scripts/ run through `moonwire run` with the
grants their headers name, and return real content.

Run: /usr/bin/python3 -m pytest tests/test_scripts.py
Binary: $MOONWIRE, default build/moonwire of this repository.
"""

import json
from pathlib import Path
import os
import socket
import subprocess

import pytest

from mwbinary import moonwire_path  # tests/lib, on sys.path via conftest.py

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.join(os.path.dirname(HERE), "scripts")
MOONWIRE = moonwire_path()


def run_json(args, timeout=30):
    p = subprocess.run([MOONWIRE, "run", "--json"] + list(args), capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    try:
        res = json.loads(p.stdout)
    except ValueError:
        raise AssertionError("no JSON (exit %d): %s %s" % (p.returncode, p.stdout, p.stderr))
    assert res["status"] == "ok", (res, p.stderr)
    assert p.returncode == 0
    return res


def script(name):
    return os.path.join(SCRIPTS, name)


@pytest.mark.parametrize("name", ["hello.lua", "system-status.lua", "disk-report.lua",
                                  "log-tail.lua", "service-check.lua", "counter.lua"])
def test_header_names_grants(name):
    with open(script(name)) as f:
        head = f.read(800)
    assert head.startswith("-- " + name + ":")
    assert "Grants needed:" in head


def test_hello():
    res = run_json([script("hello.lua")])
    assert res["values"] == ["hello, moonwire"]
    assert res["output"].startswith("hello from moonwire at ")


def test_hello_needs_no_grant_and_system_status_does():
    p = subprocess.run([MOONWIRE, "run", "--json", script("system-status.lua")],
                       capture_output=True, text=True, timeout=30)
    res = json.loads(p.stdout)
    assert res["status"] == "error" and "capability denied: sys.info" in res["error"]


def test_system_status():
    res = run_json(["--sys", script("system-status.lua")])
    s = res["values"][0]
    assert s["hostname"] == socket.gethostname()
    assert s["kernel"] == os.uname().release
    assert s["cpus"] == os.cpu_count()
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    assert abs(s["uptime_seconds"] - up) < 60
    assert 0 <= s["memory_used_percent"] <= 100
    assert s["memory_available"] <= s["memory_total"]
    assert socket.gethostname() in res["output"] and "uptime: " in res["output"]


def test_disk_report_flags_by_threshold(tmp_path):
    res = run_json(["--sys", script("disk-report.lua")])
    r = res["values"][0]
    mounts = {fs["mount"]: fs for fs in r["filesystems"]}
    assert "/" in mounts
    st = os.statvfs("/")
    root = mounts["/"]
    assert root["total"] == st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    assert abs(root["used"] - used) < 0.01 * root["total"] + 64 * 2**20
    assert 0 <= root["percent"] <= 100
    assert r["threshold"] == 90
    assert r["flagged"] == [fs["mount"] for fs in r["filesystems"] if fs["percent"] >= 90]
    # Threshold 0: every filesystem is flagged, and printed as such.
    low = run_json(["--sys", "--arg", "threshold=0", script("disk-report.lua")])
    lr = low["values"][0]
    assert set(lr["flagged"]) == set(mounts)  # a mount may be listed twice
    assert "<-- above 0%" in low["output"]


def test_log_tail(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    lines = ["line %03d %s" % (i, "ERROR disk" if i % 10 == 0 else "ok") for i in range(1, 101)]
    (logdir / "app.log").write_text("\n".join(lines) + "\n")
    res = run_json(["--read", str(logdir), "--arg", "path=%s/app.log" % logdir,
                    "--arg", "lines=15", script("log-tail.lua")])
    r = res["values"][0]
    assert r["lines"] == lines[-15:]
    assert r["errors"] == 2  # lines 90 and 100
    assert r["size"] == os.path.getsize(logdir / "app.log")
    assert res["output"].splitlines()[1:] == lines[-15:]


def test_log_tail_defaults_to_a_log_debian_12_has(tmp_path):
    # Without arguments: /var/log/dpkg.log, present on every Debian 12
    assert os.path.exists("/var/log/dpkg.log")
    res = run_json(["--read", "/var/log", script("log-tail.lua")])
    assert res["status"] == "ok", res
    assert res["values"][0]["path"] == "/var/log/dpkg.log"


def test_log_tail_bad_lines_argument(tmp_path):
    p = subprocess.run([MOONWIRE, "run", "--json", "--read", "/var/log", "--arg", "lines=ten",
                        script("log-tail.lua")], capture_output=True, text=True, timeout=30)
    res = json.loads(p.stdout)
    assert res["status"] == "error"
    assert "argument lines must be a whole number from 1 to 10000, not ten" in res["error"]


def test_log_tail_refused_outside_grant(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    p = subprocess.run([MOONWIRE, "run", "--json", "--read", str(other),
                        "--arg", "path=%s/app.log" % tmp_path, script("log-tail.lua")],
                       capture_output=True, text=True, timeout=30)
    res = json.loads(p.stdout)
    assert res["status"] == "error" and "capability denied: fs.stat" in res["error"]


def test_service_check(tmp_path):
    # A stand-in for `systemctl is-active`: exits 0 and prints "active" for
    # ssh, exits 3 and prints "inactive" for anything else.
    # commands run as nobody: the stand-in lives where every user may
    # execute it, as a real command would
    import tempfile
    pub = tempfile.mkdtemp(prefix="mw-scripts-", dir="/tmp")
    os.chmod(pub, 0o755)
    fake = Path(pub) / "is-active"
    fake.write_text('#!/bin/sh\nif [ "$1" = ssh ]; then echo active; exit 0; fi\n'
                    'echo inactive; exit 3\n')
    fake.chmod(0o755)
    policy = tmp_path / "policy"
    policy.write_text("command is-active args=1 timeout=2s %s\n" % fake)
    res = run_json(["--policy", str(policy), "--exec", "is-active", script("service-check.lua")])
    r = res["values"][0]
    by = {s["service"]: s for s in r["services"]}
    assert by["ssh"]["code"] == 0 and by["ssh"]["up"] is True and by["ssh"]["state"] == "active"
    assert by["cron"]["code"] == 3 and by["cron"]["up"] is False and by["cron"]["state"] == "inactive"
    import shutil
    shutil.rmtree(pub, ignore_errors=True)
    assert r["down"] == 1
    assert "cron" in res["output"] and "DOWN" in res["output"] and "exit 3" in res["output"]


def test_service_check_services_argument(tmp_path):
    # One signed program, other services: the list comes from args.services
    pol = tmp_path / "policy"
    pol.write_text("command st args=1 timeout=2s /bin/echo\n")
    res = run_json(["--policy", str(pol), "--exec", "st", "--arg", "command=st",
                    "--arg", "services=nginx, postgresql", script("service-check.lua")])
    r = res["values"][0]
    assert [x["service"] for x in r["services"]] == ["nginx", "postgresql"]
    assert r["down"] == 0


def test_service_check_with_true(tmp_path):
    policy = tmp_path / "policy"
    policy.write_text("command is-active args=1 /bin/true\n")
    res = run_json(["--policy", str(policy), "--exec", "is-active", script("service-check.lua")])
    r = res["values"][0]
    assert r["down"] == 0 and all(s["code"] == 0 for s in r["services"])


def test_counter_persists(tmp_path):
    state = tmp_path / "state"
    args = ["--kv", "--state", str(state), script("counter.lua")]
    assert [run_json(args)["values"][0] for _ in range(3)] == [1, 2, 3]
    assert "previous run at" in run_json(args)["output"]
    # Another scope has its own counter; another state dir starts over.
    assert run_json(["--kv-scope", "other"] + args)["values"] == [1]
    assert run_json(["--kv", "--state", str(tmp_path / "fresh"), script("counter.lua")])["values"] == [1]


def test_small_job_instruction_count_is_not_zero_in_text():
    # The count hook adds 1,000 at a time: a small job says "under 1000",
    # a bigger one the range its count lies in, never a bare "0 instructions".
    p = subprocess.run([MOONWIRE, "run", script("hello.lua")], capture_output=True, text=True,
                       timeout=30)
    assert "under 1000 instructions" in p.stdout, p.stdout
    assert " 0 instructions" not in p.stdout
