"""Fleet jobs (issue 11, items 3 and 4): the summary of a fan-out, the job
table in the operator's database, and results that come back late.

Why this exists: what fleet users lose with other tools is the results of
targets that answer after the controller stopped waiting, or of a
controller that died, and the distinction between "failed" and "did not
return".  These tests drive `moonwire send`, `results` and `jobs` through
the real Prosody against real agents: a mix of ok / error / refused /
offline targets in one summary; a job that outlives `send --timeout` and
is collected later; two `send` of one account at once (they share one
OMEMO device, and the server hands each reply to both processes); and an
operator SIGKILLed in the middle of its wait.
"""

import json
import os
import pty
import re
import signal
import subprocess
import time

from agentkit import json_lines, run

WHO = 'local i = sys.info()\nprint("up " .. i.cpus)\nreturn i.cpus\n'


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def moonwire(kit, *args, timeout=120):
    return run([kit.moonwire] + [str(a) for a in args], check=False, timeout=timeout)


def sleeper_policy(agent):
    agent.policy_text = ("limits wall=30s\nprofile default\n  sys\n  kv\n  sleep 20s\n"
                         "profile nothing\n")


def sleeper_fleet(kit, n=2):
    """alice and n started agents (agent1..) that allow her sleepers."""
    alice = kit.operator("alice")
    agents = [kit.agent("agent%d" % i) for i in range(1, n + 1)]
    for a in agents:
        sleeper_policy(a)
        a.allow(alice)
        kit.trust(a, alice)
        a.start()
    return alice, agents


def job_of(stderr):
    m = re.search(r"collect the results later with: moonwire results -c (\S+) (\S+)\n",
                  stderr)
    assert m, stderr
    return m.group(1), m.group(2)


def wait_replied(agent, job, timeout=30):
    deadline = time.time() + timeout
    while not agent.grep(r"reply-sent job=%s " % job):
        assert time.time() < deadline, "\n".join(agent.log[-30:])
        time.sleep(0.1)


def table_line(stdout, jid):
    lines = [l for l in stdout.splitlines() if l.startswith(jid + " ")]
    assert len(lines) == 1, stdout
    return lines[0].split(None, 2)


def mixed_fleet(kit):
    """alice and four agents: ok (default profile), error (a profile
    without sys), refused (alice's key not in its allowed_signers) and
    offline (connected once to publish its keys, then stopped)."""
    alice = kit.operator("alice")
    ok, err, ref, off = (kit.agent(n) for n in ("okagent", "erragent", "refagent",
                                                 "offagent"))
    for a in (ok, err, ref, off):
        a.policy_text += "profile nothing\n"
        a.allow(alice, profile="nothing" if a is err else "default")
        kit.trust(a, alice)
    other = os.path.join(kit.workdir, "id_other")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other])
    with open(other + ".pub") as f:
        ref.signer_lines = ['%s namespaces="moonwire-job" %s' % (alice.principal,
                                                                   f.read().strip())]
    for a in (ok, err, ref, off):
        a.start()
    off.stop()
    return alice, ok, err, ref, off


def test_summary_mix_ok_error_refused_offline(kit):
    alice, ok, err, ref, off = mixed_fleet(kit)
    prog = write(os.path.join(kit.workdir, "who.lua"), WHO)
    targets = [ok, err, ref, off]
    p, _ = alice.send(targets, prog, json_out=False, timeout="6s")
    # the exit status is the first non-ok target's, in --to order: erragent
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    jid, status, rest = table_line(p.stdout, ok.jid)
    assert status == "ok" and re.match(r"\d+ ms\s+up \d+$", rest), rest
    jid, status, rest = table_line(p.stdout, err.jid)
    assert status == "error" and "capability denied: sys" in rest, rest
    jid, status, rest = table_line(p.stdout, ref.jid)
    assert status == "refused" and re.match(r"-\s+unknown_signer: ", rest), rest
    jid, status, rest = table_line(p.stdout, off.jid)
    assert status == "offline" and "no available presence" in rest, rest
    m = re.search(r"^job (\S+): 4 targeted, 1 ok, 1 failed, 1 refused, 1 did not "
                  r"return \(1 offline, 0 online but silent\)$", p.stdout, re.M)
    assert m, p.stdout
    job = m.group(1)
    # the table comes after the results, in --to order
    order = [p.stdout.index("\n" + a.jid + " ") for a in targets]
    assert order == sorted(order) and order[0] > p.stdout.index("== " + ok.jid)
    # the wait ended with offagent out: the job id and how to collect it
    conf, hint_job = job_of(p.stderr)
    assert hint_job == job and conf == os.path.realpath(alice.conf), p.stderr
    assert "may still run" in p.stderr, p.stderr

    # --json: one object per target, then the summary object
    p, _ = alice.send(targets, prog, json_out=False, timeout="6s", extra=["--json"])
    assert p.returncode == 1, (p.stdout, p.stderr)
    objs = [json.loads(l) for l in p.stdout.splitlines()]
    res, summary = json_lines(p.stdout, summary=True)
    assert objs[-1] == summary and len(res) == 4, p.stdout
    by = {r["from"]: r for r in res}
    assert by[ok.jid]["status"] == "ok" and by[err.jid]["status"] == "error", res
    assert by[ref.jid]["status"] == "refused" and by[ref.jid]["refusal"] == "unknown_signer"
    assert by[off.jid] == {"from": off.jid, "job_id": summary["job_id"],
                           "status": "no_answer", "state": "offline"}, res
    assert {r["job_id"] for r in res} == {summary["job_id"]}, res
    assert summary == {"summary": True, "job_id": summary["job_id"], "targeted": 4,
                       "ok": 1, "failed": 1, "refused": 1, "did_not_return": 1,
                       "offline": 1, "silent": 0, "exit_status": 1}, summary

    # the offline agent comes back and runs both jobs; `results` collects
    # what the server kept for alice since, and the summary is complete
    off.start()
    wait_replied(off, summary["job_id"])
    wait_replied(off, job)
    p = moonwire(kit, "results", "-c", alice.conf, job)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert table_line(p.stdout, off.jid)[1] == "ok", p.stdout
    assert re.search(r"^job %s: 4 targeted, 2 ok, 1 failed, 1 refused, 0 did not return"
                     % job, p.stdout, re.M), p.stdout
    # the other job's late result was collected by that connection too
    p = moonwire(kit, "results", "-c", alice.conf, "--json", summary["job_id"])
    res, s2 = json_lines(p.stdout, summary=True)
    assert s2["ok"] == 2 and s2["did_not_return"] == 0, p.stdout
    assert [r["from"] for r in res] == [a.jid for a in targets], res

    # jobs: both, newest first, with their counts
    p = moonwire(kit, "jobs", "-c", alice.conf, "--json")
    assert p.returncode == 0, p.stderr
    jobs = json_lines(p.stdout)
    assert [j["job_id"] for j in jobs] == [summary["job_id"], job], jobs
    assert {k: jobs[1][k] for k in ("targeted", "ok", "failed", "refused",
                                    "did_not_return")} == \
        {"targeted": 4, "ok": 2, "failed": 1, "refused": 1, "did_not_return": 0}, jobs
    p = moonwire(kit, "jobs", "-c", alice.conf)
    assert p.returncode == 0 and p.stdout.splitlines()[0].startswith("JOB "), p.stdout
    assert re.search(r"^%s\s+\S+Z\s+4\s+2\s+1\s+1\s+0$" % job, p.stdout, re.M), p.stdout


def test_not_sent_target_in_the_summary(kit):
    """A target the operator never verified: not sent, its own line with
    the reason, the rest of the fleet unaffected."""
    alice = kit.operator("alice")
    ok = kit.agent("okagent")
    ok.allow(alice)
    kit.trust(ok, alice)
    ok.start()
    stranger = kit.agent("stranger")
    stranger.fingerprint()
    stranger.start()
    prog = write(os.path.join(kit.workdir, "who.lua"), WHO)
    p, _ = alice.send([stranger, ok], prog, json_out=False, timeout="20s")
    assert p.returncode == 6, (p.stdout, p.stderr)
    jid, status, rest = table_line(p.stdout, stranger.jid)
    assert status == "not_sent" and "no trusted device" in rest, p.stdout
    assert table_line(p.stdout, ok.jid)[1] == "ok", p.stdout
    assert re.search(r": 2 targeted, 1 ok, 1 failed, 0 refused, 0 did not return",
                     p.stdout), p.stdout
    assert "moonwire results" not in p.stderr, p.stderr    # nothing is still out


def test_late_result_collected_by_results(kit):
    alice = kit.operator("alice")
    agent = kit.agent()
    sleeper_policy(agent)
    agent.allow(alice)
    kit.trust(agent, alice)
    agent.start()
    prog = write(os.path.join(kit.workdir, "slow.lua"),
                 'sleep(4)\nprint("late but here")\nreturn "done"\n')
    # the agent says "composing" (running) once a job has run 1 s: the
    # send waits past that, not until the result
    p, res = alice.send(agent, prog, timeout="2s")
    assert p.returncode == 6 and res == [{"from": agent.jid, "job_id": res[0]["job_id"],
                                         "status": "no_answer", "state": "running"}], \
        (p.stdout, p.stderr)
    conf, job = job_of(p.stderr)
    assert job == res[0]["job_id"] and "may still run" in p.stderr, p.stderr
    assert "accepted the job and was still running it" in p.stderr, p.stderr
    wait_replied(agent, job)
    # the exact command printed
    p = run([kit.moonwire, "results", "-c", conf, job], check=False)
    assert p.returncode == 0, (p.stdout, p.stderr)
    jid, status, rest = table_line(p.stdout, agent.jid)
    assert status == "ok" and rest.endswith("late but here"), p.stdout
    assert re.search(r"^job %s: 1 targeted, 1 ok, 0 failed, 0 refused, 0 did not return"
                     % job, p.stdout, re.M), p.stdout
    # kept: a second look needs no server, and shows the same
    p2 = moonwire(kit, "results", "-c", alice.conf, job)
    assert p2.returncode == 0 and p2.stdout == p.stdout, (p2.stdout, p2.stderr)
    # bad input: an unknown job id, a malformed one
    p = moonwire(kit, "results", "-c", alice.conf, "0123456789abcdef0123456789abcdef")
    assert p.returncode == 2 and "no job 0123456789abcdef0123456789abcdef" in p.stderr
    p = moonwire(kit, "results", "-c", alice.conf, "not a job")
    assert p.returncode == 2 and "not a job id" in p.stderr, p.stderr


def test_two_concurrent_sends_of_one_account_both_get_results(kit):
    alice, agents = sleeper_fleet(kit)
    progs = [write(os.path.join(kit.workdir, "p%d.lua" % i),
                   'sleep(1.5)\nreturn "from send %d"\n' % i) for i in (1, 2)]
    for rnd in range(2):
        procs = [alice.send_async(a, prog, timeout="30s") for a, prog in zip(agents, progs)]
        out = [alice.collect(p) for p in procs]
        for i, (rc, res, err) in enumerate(out):
            assert rc == 0 and len(res) == 1, (rnd, i, res, err)
            assert res[0]["status"] == "ok" and res[0]["values"] == ["from send %d" % (i + 1)], res


def test_operator_killed_mid_wait_loses_nothing(kit):
    alice, agents = sleeper_fleet(kit)
    prog = write(os.path.join(kit.workdir, "slow.lua"), 'sleep(2)\nreturn "survived"\n')
    proc = alice.send_async(agents, prog, timeout="60s")
    for a in agents:
        a.wait_log(r"accepted job=")
    # the job was in the table before anything was sent
    p = moonwire(kit, "jobs", "-c", alice.conf, "--json")
    jobs = json_lines(p.stdout)
    assert len(jobs) == 1 and jobs[0]["targeted"] == 2, (p.stdout, p.stderr)
    job = jobs[0]["job_id"]
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    for a in agents:
        wait_replied(a, job)
    p = moonwire(kit, "results", "-c", alice.conf, "--json", job)
    res, summary = json_lines(p.stdout, summary=True)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert [(r["from"], r["status"], r["values"]) for r in res] == \
        [(a.jid, "ok", ["survived"]) for a in agents], res
    assert summary["ok"] == 2 and summary["exit_status"] == 0, summary


def test_sigint_stops_the_wait_with_the_job_id(kit):
    alice = kit.operator("alice")
    agent = kit.agent()
    sleeper_policy(agent)
    agent.allow(alice)
    kit.trust(agent, alice)
    agent.start()
    prog = write(os.path.join(kit.workdir, "slow.lua"), 'sleep(3)\nreturn 1\n')
    proc = subprocess.Popen([kit.moonwire, "send", "-c", alice.conf, "--to", agent.jid,
                             "--timeout", "60s", prog], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = agent.wait_log(r"accepted job=")
    job = re.search(r"job=(\S+)", line).group(1)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 6, (out, err)
    assert job_of(err)[1] == job and "before the wait was interrupted" in err, err
    assert time.time() - t0 < 10
    wait_replied(agent, job)
    p = moonwire(kit, "results", "-c", alice.conf, job)
    assert p.returncode == 0 and table_line(p.stdout, agent.jid)[1] == "ok", p.stdout


def test_retention_prunes_old_jobs(kit):
    alice = kit.operator("alice")
    agent = kit.agent()
    agent.allow(alice)
    kit.trust(agent, alice)
    agent.start()
    prog = write(os.path.join(kit.workdir, "who.lua"), WHO)
    p, res = alice.send(agent, prog)
    assert p.returncode == 0, p.stderr
    job = res[0]["job_id"]
    assert [j["job_id"] for j in json_lines(moonwire(kit, "jobs", "-c", alice.conf,
                                                     "--json").stdout)] == [job]
    # age the job by hand, as if sent 40 days ago: the default 30 days prune it
    import sqlite3
    db = sqlite3.connect(alice.db)
    db.execute("UPDATE fleet_jobs SET created_ms = created_ms - 40 * 86400000")
    db.commit()
    db.close()
    alice.extra["job_retention_days"] = "60"
    alice.write_conf()
    assert len(json_lines(moonwire(kit, "jobs", "-c", alice.conf, "--json").stdout)) == 1
    alice.extra["job_retention_days"] = "bad"
    alice.write_conf()
    p = moonwire(kit, "jobs", "-c", alice.conf)
    assert p.returncode == 2 and "job_retention_days" in p.stderr, p.stderr
    del alice.extra["job_retention_days"]
    alice.write_conf()
    assert json_lines(moonwire(kit, "jobs", "-c", alice.conf, "--json").stdout) == []
    p = moonwire(kit, "results", "-c", alice.conf, job)
    assert p.returncode == 2 and "no job" in p.stderr, p.stderr


def test_progress_line_on_a_terminal_only(kit):
    alice, agents = sleeper_fleet(kit)
    prog = write(os.path.join(kit.workdir, "slow.lua"), 'sleep(2.5)\nreturn 1\n')
    cmd = [kit.moonwire, "send", "-c", alice.conf, "--timeout", "30s",
           "--to", agents[0].jid, "--to", agents[1].jid, prog]
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:         # EIO: the child closed its end
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    out, _ = proc.communicate(timeout=30)
    err = err.decode()
    assert proc.returncode == 0, (out, err)
    # drawn in place, then erased: the terminal is left clean
    assert re.search(r"\r\x1b\[Kmoonwire send: 2 targeted, 0 ok, 0 error, 0 refused, "
                     r"2 pending \(\d running\), 1 s", err), repr(err)
    assert "(2 running)" in err, repr(err)
    assert err.endswith("\r\x1b[K"), repr(err)
    assert re.search(r"^job \S+: 2 targeted, 2 ok, 0 failed", out, re.M), out
    # on a pipe: nothing of it
    p = run(cmd, check=False)
    assert p.returncode == 0 and p.stderr == "", repr(p.stderr)
