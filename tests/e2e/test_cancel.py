"""End to end (issue 11, item 4): signed cancellations through the real
Prosody to a real agent.

Why this exists: `moonwire cancel` promises that a running job is killed
and answers `cancelled`, that a job not yet started never runs (also
across a restart), that a finished job is answered `already_finished`
and nothing else, and that only the job's signer can do any of it.  Each
is checked the way an operator meets it: the answer a python-omemo chat
client receives (it sends the hand-made texts `moonwire sign --cancel`
writes), the agent's audit line, and side effects -- marker files a
killed job or its command would have written later never appear.

Waits are bounded (wait_log, peer expect timeouts); the "never written"
checks wait past the moment the killed work would have written.
"""

import json
import os
import re
import subprocess
import time

import pytest

from agentkit import run
from test_agent import peer_allowed, peer_result, result_body, write


def sign_cancel(d, agent, job_id, key=None, ttl=None):
    cmd = [d.kit.moonwire, "sign", "-k", key or d.alice.key, "--cancel", job_id,
           "--to", getattr(agent, "jid", agent)]
    if ttl:
        cmd += ["--ttl", ttl]
    return run(cmd).stdout


# An unusual duration, unique to this test process: pgrep finds only our
# command, also while another suite runs this file (make test's lanes).
SLOW = "3.2%06d" % (os.getpid() % 1000000)


def slow_job(d, name, seconds=3):
    """Sleeps, then runs the command `slow` (/usr/bin/sleep SLOW), then
    writes the marker `name`."""
    return d.program(name + ".lua", (
        "sleep(%d)\n" % seconds +
        'exec.run("slow")\n' +
        'fs.write("%s/%s", "ran\\n")\n' % (d.out, name) +
        "return 1\n"))


def with_slow_command(d):
    d.agent.policy_text = d.agent.policy_text.replace(
        "command true /bin/true\n",
        "command true /bin/true\ncommand slow timeout=8s /usr/bin/sleep %s\n" % SLOW).replace(
        "  exec hello\n", "  exec hello\n  exec slow\n")


def slow_running():
    p = subprocess.run(["pgrep", "-f", "^/usr/bin/sleep %s$" % re.escape(SLOW)],
                       capture_output=True, text=True)
    return p.stdout.split()


def answer(pat, agent, timeout=20):
    h, _ = result_body(peer_result(pat, agent, timeout=timeout))
    return h


def test_cancel_running_job_kills_it_and_its_command(deploy):
    d = deploy
    with_slow_command(d)
    pat = peer_allowed(d)
    d.agent.start()
    env = d.alice.sign(d.agent, slow_job(d, "long", seconds=1), extra=["--job-id", "long-1"])
    pat.send(d.agent.jid, env)
    d.agent.wait_log(r"accepted job=long-1 ")
    # inside the command (after the 1 s sleep of the Lua part)
    deadline = time.time() + 10
    while not slow_running() and time.time() < deadline:
        time.sleep(0.05)
    assert slow_running(), "the command never started"
    pat.send(d.agent.jid, sign_cancel(d, d.agent, "long-1"))
    h = answer(pat, d.agent)
    assert h["job-id"] == "long-1" and h["status"] == "cancelled", h
    assert "answer-to" not in h, h           # this is the job's own result
    assert "cancelled by alice@ops (while running)" in h["error"], h
    d.agent.wait_log(r"cancel-accepted job=long-1 from=%s " % re.escape(pat.jid))
    d.agent.wait_log(r"done job=long-1 .*status=cancelled")
    d.agent.wait_log(r"cancelled job=long-1 .*started=yes")
    # the command is gone with its job; the marker it would have let the
    # job write (after 3.2 s of command) never appears
    deadline = time.time() + 5
    while slow_running() and time.time() < deadline:
        time.sleep(0.05)
    assert slow_running() == []
    time.sleep(3.5)
    assert d.markers() == [], d.markers()
    # the supervisor serves on
    env = d.alice.sign(d.agent, d.marker_job("after"))
    pat.send(d.agent.jid, env)
    h = answer(pat, d.agent)
    assert h["status"] == "ok", h
    assert d.markers() == ["after"]


def test_cancel_before_start_never_runs(deploy):
    d = deploy
    d.agent.settings["parallel"] = "1"
    pat = peer_allowed(d)
    d.agent.start()
    blocker = d.program("blocker.lua", "sleep(3)\nreturn 'slept'\n")
    pat.send(d.agent.jid, d.alice.sign(d.agent, blocker, extra=["--job-id", "blocker"]))
    d.agent.wait_log(r"accepted job=blocker ")
    queued = d.alice.sign(d.agent, d.marker_job("queued"), extra=["--job-id", "queued-1"])
    pat.send(d.agent.jid, queued)
    d.agent.wait_log(r"accepted job=queued-1 ")
    pat.send(d.agent.jid, sign_cancel(d, d.agent, "queued-1"))
    h = answer(pat, d.agent)
    assert h["job-id"] == "queued-1" and h["status"] == "cancelled", h
    assert "(before it started)" in h["error"], h
    d.agent.wait_log(r"cancelled job=queued-1 .*started=no")
    h = answer(pat, d.agent)
    assert h["job-id"] == "blocker" and h["status"] == "ok", h
    time.sleep(0.5)
    assert d.markers() == [], d.markers()

    # the same envelope again: the stored `cancelled` result, never a run
    pat.send(d.agent.jid, queued)
    h = answer(pat, d.agent)
    assert h["job-id"] == "queued-1" and h["status"] == "cancelled", h
    assert d.markers() == [], d.markers()


def test_cancel_survives_a_restart(deploy, monkeypatch):
    """The agent dies right after committing the cancellation, before the
    supervisor heard of it: after the restart the job is `cancelled`
    (not `interrupted`) and never runs."""
    d = deploy
    pat = peer_allowed(d)
    monkeypatch.setenv("MOONWIRE_TEST_CRASH", "after_cancel:1")
    d.agent.start()
    monkeypatch.delenv("MOONWIRE_TEST_CRASH")
    prog = d.program("late.lua", 'sleep(4)\nfs.write("%s/late", "ran\\n")\nreturn 1\n' % d.out)
    pat.send(d.agent.jid, d.alice.sign(d.agent, prog, extra=["--job-id", "late-1"]))
    d.agent.wait_log(r"accepted job=late-1 ")
    pat.send(d.agent.jid, sign_cancel(d, d.agent, "late-1"))
    d.agent.wait_log(r"test-crash point=after_cancel")
    assert d.agent.wait_exit() != 0
    d.agent.start()
    assert d.agent.grep(r"recovered interrupted=1")
    h = answer(pat, d.agent)
    assert h["job-id"] == "late-1" and h["status"] == "cancelled", h
    assert "the job was not run again" in h["error"], h
    time.sleep(4.5)
    assert d.markers() == [], d.markers()


def test_cancel_finished_and_unknown(deploy):
    d = deploy
    pat = peer_allowed(d)
    d.agent.start()
    pat.send(d.agent.jid, d.alice.sign(d.agent, d.marker_job("quick"),
                                       extra=["--job-id", "quick-1"]))
    h = answer(pat, d.agent)
    assert h["job-id"] == "quick-1" and h["status"] == "ok", h
    pat.send(d.agent.jid, sign_cancel(d, d.agent, "quick-1"))
    h = answer(pat, d.agent)
    assert h["job-id"] == "quick-1" and h["status"] == "refused", h
    assert h["refusal"] == "already_finished" and h["answer-to"] == "cancel", h
    assert "status ok" in h["error"], h
    d.agent.wait_log(r"refused code=already_finished from=%s device=\d+ job=quick-1 kind=cancel"
                     % re.escape(pat.jid))

    pat.send(d.agent.jid, sign_cancel(d, d.agent, "no-such-job"))
    h = answer(pat, d.agent)
    assert h["refusal"] == "unknown_job" and h["answer-to"] == "cancel", h
    assert h["job-id"] == "no-such-job", h
    d.agent.wait_log(r"refused code=unknown_job .*job=no-such-job kind=cancel")
    # nothing else arrives: the finished job's result is not sent again
    time.sleep(1)
    extra = [e for e in pat.events("message") if e.get("from") == d.agent.jid and
             e.get("encrypted")]
    assert extra == [], extra
    assert d.markers() == ["quick"]


def test_forged_cancellations_refused(deploy):
    d = deploy
    pat = peer_allowed(d)
    # mallory's key is no signer here; bob's is, but bob did not sign the job
    mallory = os.path.join(d.kit.workdir, "mallory")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", mallory])
    bob = d.kit.operator("bob")
    d.agent.allow(bob, jid=pat.jid)
    d.agent.start()
    prog = d.program("target.lua", 'sleep(3)\nfs.write("%s/target", "ran\\n")\nreturn 7\n' % d.out)
    env = d.alice.sign(d.agent, prog, extra=["--job-id", "target"])
    pat.send(d.agent.jid, env)
    d.agent.wait_log(r"accepted job=target ")
    good = sign_cancel(d, d.agent, "target")
    header, _, armor = good.partition("\n-----BEGIN SSH SIGNATURE-----\n")

    cases = []
    cases.append(("unknown_signer", sign_cancel(d, d.agent, "target", key=mallory)))
    cases.append(("unknown_job", sign_cancel(d, d.agent, "target", key=bob.key)))
    # the job envelope's own signature under the cancellation header
    job_armor = env[env.index("-----BEGIN SSH SIGNATURE-----"):]
    cases.append(("wrong_namespace", header + "\n" + job_armor))
    # the header signed by ssh-keygen in the job namespace
    hpath = write(os.path.join(d.programs, "cancel-header"), header + "\n")
    run(["ssh-keygen", "-Y", "sign", "-q", "-f", d.alice.key, "-n", "moonwire-job", hpath])
    with open(hpath + ".sig") as f:
        cases.append(("wrong_namespace", header + "\n" + f.read()))
    # unsigned, and tampered
    cases.append(("malformed", header + "\n"))
    cases.append(("bad_signature", good.replace("job-id: target", "job-id: targez")))
    cases.append(("wrong_audience", sign_cancel(d, "other@localhost", "target")))
    # a cancellation is no job either way round
    cases.append(("malformed", good.replace("moonwire-cancel 1", "moonwire-job 1", 1)))
    cases.append(("version", good.replace("moonwire-cancel 1", "moonwire-cancel 2", 1)))

    # the job's own result may come between the refusals (the cases take
    # longer than its sleep on a loaded machine): it is set aside
    job_result = None
    for code, text in cases:
        pat.send(d.agent.jid, text)
        h = answer(pat, d.agent)
        if job_result is None and h.get("job-id") == "target" and "answer-to" not in h:
            job_result, h = h, answer(pat, d.agent)
        assert h["status"] == "refused" and h["refusal"] == code, (code, h)
        if code != "malformed" or "moonwire-job" not in text.split("\n", 1)[0]:
            assert h.get("answer-to") == "cancel", (code, h)
        d.agent.wait_log(r"refused code=%s from=%s " % (code, re.escape(pat.jid)))
    # the job was never touched, and the supervisor is alive
    h = job_result or answer(pat, d.agent)
    assert h["job-id"] == "target" and h["status"] == "ok" and h["values"] == "[7]", h
    assert d.markers() == ["target"], d.markers()
    assert d.agent.running()


def test_expired_cancellation_refused(deploy):
    d = deploy
    pat = peer_allowed(d)
    d.agent.start()
    prog = d.program("t.lua", 'sleep(2)\nreturn 1\n')
    pat.send(d.agent.jid, d.alice.sign(d.agent, prog, extra=["--job-id", "t-1"]))
    d.agent.wait_log(r"accepted job=t-1 ")
    text = sign_cancel(d, d.agent, "t-1", ttl="1s")
    time.sleep(2.2)
    pat.send(d.agent.jid, text)
    answers = [answer(pat, d.agent), answer(pat, d.agent)]
    codes = sorted(h.get("refusal") or h["status"] for h in answers)
    assert codes == ["expired", "ok"], answers
    d.agent.wait_log(r"refused code=expired .*job=t-1 kind=cancel")


def test_moonwire_cancel_command(deploy):
    """`moonwire cancel JOB` from the operator's CLI: a job that outlived
    `send --timeout` is cancelled through the job table (its target still
    pending), the agent kills it, and the `cancelled` result lands in the
    job table; a second cancel finds nothing pending; an unknown job and a
    JID that is not a target are usage errors."""
    d = deploy
    d.agent.start()
    prog = d.program("sleepy.lua", 'sleep(8)\nfs.write("%s/sleepy", "ran\\n")\nreturn 1\n'
                     % d.out)
    p, res = d.alice.send(d.agent, prog, timeout="1s")
    assert p.returncode == 6, (p.stdout, p.stderr)
    m = re.search(r"moonwire results -c \S+ ([0-9a-f]{32})", p.stderr)
    assert m, p.stderr
    job = m.group(1)
    d.agent.wait_log(r"accepted job=%s " % job)
    c = run([d.kit.moonwire, "cancel", "-c", d.alice.conf, "--timeout", "20s", job],
            check=False)
    assert c.returncode == 0, (c.stdout, c.stderr)
    assert re.search(r"^%s\s+cancelled\s+cancelled$" % re.escape(d.agent.jid), c.stdout,
                     re.M), c.stdout
    assert "cancel of job %s: 1 cancelled, 0 already finished, 0 refused, 0 no answer" \
        % job in c.stdout, c.stdout
    d.agent.wait_log(r"cancelled job=%s .*started=yes" % job)
    # the job table has the job's own result now: status cancelled
    r = run([d.kit.moonwire, "results", "-c", d.alice.conf, "--json", job], check=False)
    objs = [json.loads(x) for x in r.stdout.splitlines()]
    assert objs[0]["status"] == "cancelled" and objs[0]["from"] == d.agent.jid, objs
    # its own exit status (8), not "did not return" (6): nothing runs any more
    assert r.returncode == 8, (r.returncode, r.stderr)
    assert objs[-1]["summary"] is True and objs[-1]["exit_status"] == 8, objs[-1]
    time.sleep(8.5)         # past the moment the killed job would have written
    assert not os.path.exists(os.path.join(d.out, "sleepy"))
    # nothing pending any more: nothing is sent, exit 0
    again = run([d.kit.moonwire, "cancel", "-c", d.alice.conf, job], check=False)
    assert again.returncode == 0 and "nothing to cancel" in again.stderr, again.stderr
    # bad input: unknown job, a JID that is not a target
    u = run([d.kit.moonwire, "cancel", "-c", d.alice.conf, "f" * 32], check=False)
    assert u.returncode == 2 and "no job " + "f" * 32 in u.stderr, u.stderr
    t = run([d.kit.moonwire, "cancel", "-c", d.alice.conf, "--to", "nobody@localhost",
             job], check=False)
    assert t.returncode == 2 and "is not a target of job" in t.stderr, t.stderr


def test_moonwire_cancel_forced_to_omemo2(deploy):
    """`moonwire cancel --omemo 2` of a job sent over legacy OMEMO: the
    agent reads the cancellation over OMEMO 2 (the version it last read
    from alice, omemo_devices.reply_version, goes from 3 to 4) and kills
    the job."""
    from test_operator_omemo2 import read_version
    d = deploy
    d.agent.start()
    prog = d.program("sleepy2.lua", 'sleep(8)\nfs.write("%s/sleepy2", "ran\\n")\nreturn 1\n'
                     % d.out)
    p, _ = d.alice.send(d.agent, prog, timeout="1s", extra=["--omemo", "legacy"])
    assert p.returncode == 6, (p.stdout, p.stderr)
    job = re.search(r"moonwire results -c \S+ ([0-9a-f]{32})", p.stderr).group(1)
    d.agent.wait_log(r"accepted job=%s " % job)
    assert read_version(d.agent, d.alice.jid) == 3
    c = run([d.kit.moonwire, "cancel", "-c", d.alice.conf, "--timeout", "20s",
             "--omemo", "2", job], check=False)
    assert c.returncode == 0, (c.stdout, c.stderr)
    assert re.search(r"^%s\s+cancelled\s+cancelled$" % re.escape(d.agent.jid), c.stdout,
                     re.M), c.stdout
    d.agent.wait_log(r"cancelled job=%s .*started=yes" % job)
    assert read_version(d.agent, d.alice.jid) == 4
    assert read_version(d.alice, d.agent.jid) == 4     # the answer came in OMEMO 2
    bad = run([d.kit.moonwire, "cancel", "-c", d.alice.conf, "--omemo", "3", job],
              check=False)
    assert bad.returncode == 2 and "--omemo: legacy or 2" in bad.stderr, bad.stderr


@pytest.mark.prosody_only("on ejabberd 23.01 the python-omemo peer does not find the "
                          "operator's device (SenderNotFound), as in test_operator_omemo2")
def test_cancel_not_offered_version_is_not_sent_and_job_stays(kit):
    """A cancellation that cannot be sent (here: --omemo 2 to a recipient
    with legacy OMEMO only) is reported `not_sent`, exit 6, and leaves the
    job's own row alone: the job was sent and still waits for its result
    (it is not turned into "not sent", nor the cancel into
    "already_finished")."""
    alice = kit.operator("alice")
    old = kit.peer("pat")
    kit.trust_peer(alice, old)
    prog = kit.workdir + "/p.lua"
    with open(prog, "w") as f:
        f.write("return 1\n")
    p, _ = alice.send(old.jid, prog, timeout="2s")
    assert p.returncode == 6, (p.stdout, p.stderr)
    old.expect_message(alice.jid, timeout=20)
    job = re.search(r"moonwire results -c \S+ ([0-9a-f]{32})", p.stderr).group(1)
    c = run([kit.moonwire, "cancel", "-c", alice.conf, "--timeout", "10s", "--omemo", "2",
             job], check=False)
    assert c.returncode == 6, (c.stdout, c.stderr)
    assert re.search(r"^%s\s+not_sent\s" % re.escape(old.jid), c.stdout, re.M), c.stdout
    assert "0 no answer, 1 not sent" in c.stdout, c.stdout
    assert re.search(r"%s: the recipient does not offer the OMEMO version asked for"
                     % re.escape(old.jid), c.stderr), c.stderr
    r = run([kit.moonwire, "results", "-c", alice.conf, "--json", job], check=False)
    objs = [json.loads(x) for x in r.stdout.splitlines()]
    assert objs[0]["from"] == old.jid and objs[0]["status"] == "no_answer", objs
    # the same cancel without --omemo goes out (legacy) and waits for an answer
    c = run([kit.moonwire, "cancel", "-c", alice.conf, "--timeout", "2s", job], check=False)
    assert c.returncode == 6 and "1 no answer, 0 not sent" in c.stdout, (c.stdout, c.stderr)
    assert "moonwire-cancel" in old.expect_message(alice.jid, timeout=20)["body"]
