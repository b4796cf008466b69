"""End to end (issue 4): signed jobs through a real Prosody to real agent
processes, and back.

Why this exists: the agent's promise (design.md, "One job, end to end") is
about the whole path -- OMEMO, envelope, signature, allowed_signers,
policy, journal, sandbox, result message, `moonwire send` -- so it is
tested as an operator and an attacker meet it: with the real binary over a
real server, python-omemo playing an ordinary chat client.  Every refusal
is checked three ways: the typed error the sender sees (where a reply is
safe), the agent's audit line, and that nothing ran (the refused job would
have left a marker file in a granted write dir and bumped a kv counter);
then the agent must still serve a good job.

A representative subset (a good job, refusals, the untrusted device,
replays, restarts of the agent) runs twice through the `omemo` fixture:
`moonwire send --omemo legacy` and `--omemo 2`; the rest with the default
(OMEMO 2, which the agent offers).

Waits are bounded: the agent log is polled with wait_log, `moonwire send`
has a --timeout, python peer events have expect() timeouts.
"""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from agentkit import run

RESULT_FIELDS = {"from", "job_id", "status", "refusal", "values", "output",
                 "output_truncated", "error", "usage"}
USAGE_FIELDS = {"cpu_us", "wall_us", "instructions", "memory_peak"}


# ------------------------------------------------------------------ helpers

def one(results):
    assert len(results) == 1, results
    return results[0]


def send_ok(d, op, name, runs, **kw):
    """A good marker job from op: status ok, and it is run number `runs` of
    op's kv scope."""
    p, res = op.send(d.agent, d.marker_job(name), **kw)
    r = one(res)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert r["status"] == "ok" and r["values"] == [runs], r
    assert d.marker(name)
    d.agent.wait_log(r"reply-sent job=%s " % re.escape(r["job_id"]))
    return r


def assert_refused(p, res, code):
    r = one(res)
    assert p.returncode == 7, (p.returncode, p.stdout, p.stderr)
    assert r["status"] == "refused" and r["refusal"] == code, r
    assert r["values"] == [] and r["output"] == "" and r["error"], r
    return r


def audit(agent, code, extra=""):
    return agent.wait_log(r"moonwire-agent: refused code=%s %s" % (code, extra))


def still_serves(d, runs=1):
    """Nothing of the refused jobs ran (no marker, counter untouched) and the
    agent runs a good job."""
    assert d.markers() == [], d.markers()
    send_ok(d, d.alice, "good", runs)


def result_body(text):
    """Headers (dict) and output of a result message as a chat client sees it
    (spec/result.md, version 2: summary line, version line, headers, blank
    line, the output as a ``` block).  The summary is in h["summary"]."""
    head, _, block = text.partition("\n\n")
    lines = head.split("\n")
    assert lines[1] == "moonwire-result 2", text
    h = dict(l.split(": ", 1) for l in lines[2:])
    n = int(h["output-length"])
    if n == 0:
        assert block == "", text
        out = ""
    else:
        raw = block.encode()           # output-length counts bytes
        assert raw.startswith(b"```\n"), text
        out = raw[4:4 + n].decode()
        assert raw[4 + n:] == (b"```" if out.endswith("\n") else b"\n```"), text
    h["summary"] = lines[0]
    return h, out


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


# ------------------------------------------------------- 1. happy path

def test_capabilities_kv_and_result_formats(deploy):
    d, agent, alice = deploy, deploy.agent, deploy.alice
    agent.start()
    prog = d.program("caps.lua", """
local info = sys.info()
local motd = fs.read("%s/motd.txt")
local r = exec.run("hello")
print("host", info.hostname)
print("exec said", r.stdout)
return {host = info.hostname, cpus = info.cpus, motd = motd,
        exec_out = r.stdout, exec_code = r.code}
""" % d.read_dir)
    p, res = alice.send(agent, prog)
    r = one(res)
    assert p.returncode == 0, p.stderr
    assert set(r) == RESULT_FIELDS and set(r["usage"]) == USAGE_FIELDS, r
    assert r["from"] == agent.jid and re.fullmatch(r"[0-9a-f]{32}", r["job_id"]), r
    assert r["status"] == "ok" and r["refusal"] is None and r["error"] is None, r
    v = one(r["values"])
    assert v["host"] == socket.gethostname() and v["cpus"] >= 1, v
    assert v["motd"] == "granted file\n", v
    assert v["exec_out"] == "hello from exec\n" and v["exec_code"] == 0, v
    assert r["output"] == "host\t%s\nexec said\thello from exec\n\n" % v["host"], r
    assert r["output_truncated"] is False and r["usage"]["wall_us"] > 0, r
    jid = re.escape(r["job_id"])
    agent.wait_log(r"accepted job=%s from=%s device=\d+ signer=SHA256:\S+ profile=default"
                   % (jid, re.escape(alice.jid)))
    agent.wait_log(r"done job=%s from=%s device=\d+ status=ok" % (jid, re.escape(alice.jid)))
    agent.wait_log(r"reply-sent job=%s to=%s" % (jid, re.escape(alice.jid)))

    # kv persists across jobs: scripts/counter.lua counts 1, then 2
    p, res = alice.send(agent, "scripts/counter.lua")
    assert one(res)["status"] == "ok" and one(res)["values"] == [1], res
    assert one(res)["output"] == "run #1\n", res
    # human-readable output
    p, _ = alice.send(agent, "scripts/counter.lua", json_out=False)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "status: ok", p.stdout
    assert "returned: 2" in lines, p.stdout
    assert lines[lines.index("output:") + 1].startswith("run #2 (previous run at "), p.stdout
    assert lines[-1].startswith("usage: cpu "), p.stdout


def test_command_uids_one_per_running_job(deploy):
    """command_uids (agent.md): each running job's commands get a uid of the
    range no other running job holds, so two jobs at once run theirs as two
    uids; a later job takes the lowest free one again."""
    import threading
    d = deploy
    first = 2000000010
    d.agent.settings.update({"parallel": "2", "command_uids": "%d-%d" % (first, first + 1)})
    d.agent.policy_text = d.agent.policy_text.replace(
        "command true /bin/true\n",
        'command true /bin/true\ncommand uidwait /bin/sh -c "id -u; sleep 1"\n').replace(
        "  exec hello\n", "  exec hello uidwait\n")
    d.agent.start()
    prog = d.program("uid.lua", 'return exec.run("uidwait").stdout\n')
    out = {}

    def send(i):
        out[i] = d.alice.send(d.agent, prog)

    ts = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    uids = sorted(one(out[i][1])["values"][0] for i in range(2))
    assert uids == ["%d\n" % first, "%d\n" % (first + 1)], out
    p, res = d.alice.send(d.agent, prog)
    assert one(res)["values"] == ["%d\n" % first], res


def test_fleet_one_send_three_agents(kit):
    alice = kit.operator("alice")
    agents = [kit.agent("agent%d" % i) for i in (1, 2, 3)]
    for a in agents:
        a.allow(alice)
        kit.trust(a, alice)
    for a in agents:
        a.start()
    prog = write(os.path.join(kit.workdir, "who.lua"),
                 'local i = sys.info()\nprint("up")\nreturn i.cpus\n')
    p, res = alice.send(agents, prog)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert sorted(r["from"] for r in res) == sorted(a.jid for a in agents), res
    assert all(r["status"] == "ok" and r["output"] == "up\n" for r in res), res
    # one envelope per agent (each its own audience), one job id for the
    # fleet job: the id `moonwire results` and the job table know it by
    assert len({r["job_id"] for r in res}) == 1, res
    for a in agents:
        a.wait_log(r"reply-sent job=")
    # human-readable: one section per agent
    p, _ = alice.send(agents, prog, json_out=False)
    assert p.returncode == 0, p.stderr
    for a in agents:
        assert "== %s\nstatus: ok\nreturned: " % a.jid in p.stdout, p.stdout


@pytest.mark.usefixtures("omemo")
def test_ssh_keygen_signed_envelope_runs(deploy):
    d = deploy
    d.agent.start()
    now = time.time()
    env = d.alice.sign_with_ssh_keygen(d.agent, d.marker_job("keygen"), now, now + 300)
    p, res = d.alice.send(d.agent, envelope=write(os.path.join(d.programs, "env"), env))
    r = one(res)
    assert p.returncode == 0 and r["status"] == "ok" and r["values"] == [1], r
    assert d.marker("keygen")


# ------------------------------------------------------- 2. refusals

@pytest.mark.usefixtures("omemo")
def test_untrusted_device_gets_no_reply(deploy):
    d, kit = deploy, deploy.kit
    mallory = kit.operator("mallory")
    d.agent.allow(mallory)
    mallory.trust(d.agent)          # mallory verified the agent, not the other way
    d.agent.start()
    t0 = time.time()
    p, res = mallory.send(d.agent, d.marker_job("untrusted"), timeout="3s")
    assert p.returncode == 6, (p.stdout, p.stderr)
    assert one(res)["status"] == "no_answer", res
    assert time.time() - t0 < 15
    audit(d.agent, "untrusted_device", r"from=%s device=\d+ job=- reason=\".*not verified\""
          % re.escape(mallory.jid))
    assert not d.agent.grep(r"reply.*to=%s" % re.escape(mallory.jid))
    still_serves(d)


@pytest.mark.usefixtures("omemo")
def test_unknown_signer(deploy):
    d = deploy
    other = os.path.join(d.kit.workdir, "id_other")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other])
    d.agent.start()
    p, res = d.alice.send(d.agent, d.marker_job("unknown"), extra=["-k", other])
    r = assert_refused(p, res, "unknown_signer")
    assert "not in allowed_signers" in r["error"], r
    audit(d.agent, "unknown_signer", r"from=%s" % re.escape(d.alice.jid))
    # human-readable: the refusal and its reason, exit 7
    p, _ = d.alice.send(d.agent, d.marker_job("unknown2"), json_out=False, extra=["-k", other])
    assert p.returncode == 7, (p.stdout, p.stderr)
    assert p.stdout.startswith("refused: unknown_signer: key SHA256:"), p.stdout
    assert "usage:" not in p.stdout and "returned" not in p.stdout, p.stdout
    still_serves(d)


def test_signer_not_allowed_for_that_jid(deploy):
    d, kit = deploy, deploy.kit
    bob = kit.operator("bob")
    d.agent.allow(bob)
    kit.trust(d.agent, bob)
    d.agent.start()
    # alice's key, sent from bob's account: the allow line names alice's JID
    p, res = bob.send(d.agent, d.marker_job("notallowed"), extra=["-k", d.alice.key])
    r = assert_refused(p, res, "signer_not_allowed")
    assert "alice@ops" in r["error"] and bob.jid in r["error"], r
    audit(d.agent, "signer_not_allowed", r"from=%s" % re.escape(bob.jid))
    still_serves(d)


@pytest.mark.usefixtures("omemo")
def test_tampered_program(deploy):
    d = deploy
    d.agent.start()
    env = d.alice.sign(d.agent, d.marker_job("tamper"))
    assert "marker tamper" in env
    bad = write(os.path.join(d.programs, "tampered"), env.replace("marker tamper", "marker TAMPER"))
    p, res = d.alice.send(d.agent, envelope=bad)
    assert_refused(p, res, "bad_signature")
    audit(d.agent, "bad_signature")
    still_serves(d)


@pytest.mark.usefixtures("omemo")
def test_expired_and_future_dated(deploy):
    d = deploy
    d.agent.start()
    now = time.time()
    for name, issued, not_after, code in (
            ("expired", now - 7200, now - 3600, "expired"),
            ("future", now + 3600, now + 3900, "not_yet_valid")):
        env = d.alice.sign_with_ssh_keygen(d.agent, d.marker_job(name), issued, not_after)
        p, res = d.alice.send(d.agent, envelope=write(os.path.join(d.programs, name), env))
        assert_refused(p, res, code)
        audit(d.agent, code)
    still_serves(d)


def test_validity_too_long(deploy):
    d = deploy
    d.agent.start()
    env = d.alice.sign(d.agent, d.marker_job("long"), extra=["--ttl", "2h"])
    p, res = d.alice.send(d.agent, envelope=write(os.path.join(d.programs, "long"), env))
    r = assert_refused(p, res, "validity_too_long")
    assert "3600 s" in r["error"], r
    audit(d.agent, "validity_too_long")
    still_serves(d)


def peer_allowed(d, user="pat"):
    """A python-omemo chat client whose device the agent verified and whose
    JID the policy allows for alice's signatures."""
    pat = d.kit.peer(user)
    d.agent.allow_lines.append("allow %s %s default" % (d.alice.principal, pat.jid))
    d.kit.trust_peer(d.agent, pat)
    return pat


def peer_result(pat, agent, timeout=20):
    ev = pat.expect("message", sender=agent.jid, encrypted=True, timeout=timeout)
    return ev["body"]


def peer_refused(d, pat, text, code):
    """pat sends text: the answer is refusal `code`, the agent's audit line
    names pat's device, nothing ran and the agent still serves."""
    pat.send(d.agent.jid, text)
    h, _ = result_body(peer_result(pat, d.agent))
    assert h["status"] == "refused" and h["refusal"] == code, h
    audit(d.agent, code, r"from=%s device=\d+" % re.escape(pat.jid))
    still_serves(d)


def _shout(jid):
    local, domain = jid.split("@")
    return local.capitalize() + "@" + domain.upper()


def test_jids_in_any_ascii_case(deploy):
    """People type JIDs as they like -- Alice@LOCALHOST in a config, a
    policy line, --to -- while the server stamps them case-folded: the job
    runs all the same, also from an envelope whose audience was signed in
    capitals (ssh-keygen signs the bytes as written)."""
    d = deploy
    agent_jid, alice_jid = d.agent.jid, d.alice.jid
    d.agent.allow_lines = [l.replace(alice_jid, _shout(alice_jid)) for l in d.agent.allow_lines]
    d.agent.jid, d.alice.jid = _shout(agent_jid), _shout(alice_jid)
    try:
        d.agent.start()
        assert d.agent.grep(r"moonwire-agent: connected jid=%s " % re.escape(agent_jid))
        r = send_ok(d, d.alice, "shouted", 1)
        assert r["from"] == agent_jid, r
        part = run([d.kit.moonwire, "sign", "--prepare", "--to", d.agent.jid,
                    d.marker_job("audience-caps")]).stdout
        assert "\naudience: %s\n" % agent_jid in part, part
        prepared = write(os.path.join(d.programs, "caps.prepared"),
                         part.replace("\naudience: %s\n" % agent_jid,
                                      "\naudience: %s\n" % d.agent.jid))
        run(["ssh-keygen", "-q", "-Y", "sign", "-n", "moonwire-job", "-f", d.alice.key,
             prepared])
        env = write(prepared + ".env", run([d.kit.moonwire, "sign", "--signature",
                                            prepared + ".sig", prepared]).stdout)
        p, res = d.alice.send(d.agent, envelope=env)
        r = one(res)
        assert p.returncode == 0 and r["status"] == "ok" and r["values"] == [2], (r, p.stderr)
        assert d.marker("audience-caps")
    finally:
        d.agent.jid, d.alice.jid = agent_jid, alice_jid


def test_wrong_audience(deploy):
    d = deploy
    pat = peer_allowed(d)
    d.agent.start()
    env = d.alice.sign("someone-else@localhost", d.marker_job("audience"))
    pat.send(d.agent.jid, env)
    h, out = result_body(peer_result(pat, d.agent))
    assert h["status"] == "refused" and h["refusal"] == "wrong_audience", h
    assert "someone-else@localhost" in h["error"], h
    audit(d.agent, "wrong_audience", r"from=%s" % re.escape(pat.jid))
    still_serves(d)


@pytest.mark.usefixtures("omemo")
def test_replay_and_duplicate(deploy):
    d = deploy
    pat = peer_allowed(d)
    d.agent.start()
    e1 = d.alice.sign(d.agent, d.marker_job("first"), extra=["--job-id", "job-42"])
    pat.send(d.agent.jid, e1)
    first = peer_result(pat, d.agent)
    h, out = result_body(first)
    assert h["status"] == "ok" and h["values"] == "[1]" and h["job-id"] == "job-42", h
    # the same envelope again: the stored result, byte for byte, no second run
    pat.send(d.agent.jid, e1)
    assert peer_result(pat, d.agent) == first
    d.agent.wait_log(r"duplicate job=job-42 from=%s device=\d+ state=done" % re.escape(pat.jid))
    # the same id with other bytes: replay
    e2 = d.alice.sign(d.agent, d.marker_job("second"), extra=["--job-id", "job-42"])
    pat.send(d.agent.jid, e2)
    h, _ = result_body(peer_result(pat, d.agent))
    assert h["status"] == "refused" and h["refusal"] == "replay", h
    audit(d.agent, "replay", r"from=%s device=\d+ job=job-42" % re.escape(pat.jid))
    # the first envelope from another device (alice's, via `moonwire send
    # --envelope`): the stored result goes only to pat's device, the
    # journaled requester; alice gets nothing, and nothing runs
    p, res = d.alice.send(d.agent, envelope=write(os.path.join(d.programs, "e1"), e1),
                          timeout="3s")
    assert p.returncode == 6 and one(res)["status"] == "no_answer", (p.stdout, p.stderr)
    audit(d.agent, "replay", r"from=%s device=\d+ job=job-42 reason=\".*another device"
          % re.escape(d.alice.jid))
    assert d.markers() == ["first"]
    assert len(d.agent.grep(r"accepted job=job-42 ")) == 1
    os.unlink(os.path.join(d.out, "first"))
    still_serves(d, runs=2)


def test_ungranted_capability(deploy):
    d = deploy
    d.agent.start()
    target = os.path.join(d.elsewhere, "marker")
    prog = d.program("steal.lua", 'fs.write("%s", "x")\nreturn "wrote"\n' % target)
    p, res = d.alice.send(d.agent, prog)
    r = one(res)
    assert p.returncode == 1 and r["status"] == "error", r
    assert "capability denied: fs.write %s" % target in r["error"], r
    assert not os.path.exists(target)
    d.agent.wait_log(r"done job=%s .* status=error" % r["job_id"])
    # a command the policy defines but the profile does not grant
    prog = d.program("exec.lua", 'exec.run("true")\nfs.write("%s/exec", "x")\n' % d.out)
    p, res = d.alice.send(d.agent, prog)
    r = one(res)
    assert r["status"] == "error" and "capability denied: exec" in r["error"], r
    assert os.listdir(d.elsewhere) == []
    still_serves(d)


def test_oversized_program(deploy):
    d = deploy
    d.agent.start()
    prog = d.marker_job("big", pad=20000)        # policy: program=16K
    p, res = d.alice.send(d.agent, prog)
    r = assert_refused(p, res, "oversized")
    assert "limit 16384" in r["error"], r
    audit(d.agent, "oversized")
    still_serves(d)


def test_malformed_envelope(deploy):
    d = deploy
    pat = peer_allowed(d)
    d.agent.start()
    peer_refused(d, pat, "moonwire-job 1\naudience: %s\nthis is not an envelope\n" % d.agent.jid,
                 "malformed")


def test_unencrypted_message(deploy):
    d = deploy
    pat = peer_allowed(d)
    d.agent.start()
    pat.send_plain(d.agent.jid, 'fs.write("%s/plain", "x")' % d.out)
    audit(d.agent, "not_a_job", r"from=%s/\S+ reason=\"unencrypted message ignored\""
          % re.escape(pat.jid))
    still_serves(d)
    assert not pat.events("message")


def test_sender_not_in_policy_is_not_decrypted(deploy):
    d = deploy
    stranger = d.kit.peer("stranger")
    d.kit.trust_peer(d.agent, stranger)     # verified, but no policy line
    d.agent.start()
    env = d.alice.sign(d.agent, d.marker_job("stranger"))
    stranger.send(d.agent.jid, env)
    audit(d.agent, "untrusted_device", r"from=%s reason=\"JID not in the policy; not decrypted\""
          % re.escape(stranger.jid))
    assert not d.agent.grep(r"key-transport|accepted.*%s" % re.escape(stranger.jid))
    still_serves(d)
    assert not stranger.events("message")


def test_rsa_signer_unsupported_key(deploy):
    d = deploy
    rsa = os.path.join(d.kit.workdir, "id_rsa")
    run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "alice@ops", "-f", rsa])
    with open(rsa + ".pub") as f:
        d.agent.signer_lines.append('alice@ops namespaces="moonwire-job" ' + f.read().strip())
    d.agent.start()
    now = time.time()
    env = d.alice.sign_with_ssh_keygen(d.agent, d.marker_job("rsa"), now, now + 300, key=rsa,
                                       wrap=False)
    p, res = d.alice.send(d.agent, envelope=write(os.path.join(d.programs, "rsa"), env))
    r = assert_refused(p, res, "unsupported_key")
    assert "ssh-rsa" in r["error"] or "ed25519" in r["error"].lower(), r
    audit(d.agent, "unsupported_key")
    still_serves(d)



def test_rate_limited(deploy):
    d = deploy
    d.agent.settings.update({"rate_limit": "1", "rate_burst": "1"})
    d.agent.start()
    send_ok(d, d.alice, "within", 1)
    p, res = d.alice.send(d.agent, d.marker_job("over"), timeout="10s")
    r = assert_refused(p, res, "rate_limited")
    assert "1 jobs a minute" in r["error"], r
    audit(d.agent, "rate_limited", r"from=%s device=\d+ job=%s" % (re.escape(d.alice.jid),
                                                                  r["job_id"]))
    assert d.markers() == ["within"]

# ------------------------------------------------------- 3. journal and crash

def sleeper(d, name, seconds):
    """A job that marks its start, sleeps, then marks its end."""
    return d.program(name + ".lua", (
        'fs.write("%s/%s.started", "x")\n'
        'sleep(%s)\n'
        'fs.write("%s/%s.finished", "x")\n'
        'return "slept"\n') % (d.out, name, seconds, d.out, name))


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def wait_for(cond, timeout=15.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


@pytest.mark.usefixtures("omemo")
def test_sigkill_during_job_then_interrupted_once(deploy):
    d = deploy
    d.agent.start()
    t0 = time.time()
    proc = d.alice.send_async(d.agent, sleeper(d, "crash", 3), timeout="40s")
    line = d.agent.wait_log(r"accepted job=")
    job = re.search(r"job=(\S+)", line).group(1)
    wait_for(lambda: d.marker("crash.started"), what="the job to start")
    sup = int(re.search(r"supervisor=(\d+)", d.agent.grep(r" started ")[0]).group(1))
    assert d.agent.kill() == -signal.SIGKILL
    # the sandbox does not outlive the agent (its socket closed)
    wait_for(lambda: not pid_alive(sup), timeout=10, what="the supervisor to exit")
    d.agent.start()
    d.agent.wait_log(r"reply-sent job=%s to=%s device=\d+ stored=yes" % (job, re.escape(d.alice.jid)))
    assert d.agent.grep(r"recovered interrupted=1")
    rc, res, err = d.alice.collect(proc)
    r = one(res)
    assert r["job_id"] == job and r["status"] == "interrupted", r
    assert "not run again" in r["error"] and rc == 6, (r, err)
    # the sleep would have ended by now: the job never finished nor re-ran
    time.sleep(max(0.0, t0 + 4.5 - time.time()))
    assert not d.marker("crash.finished")
    assert len(d.agent.grep(r"accepted job=%s " % job)) == 1
    os.unlink(os.path.join(d.out, "crash.started"))
    still_serves(d)     # the OMEMO sessions are still in step


def test_sigterm_job_finishes_within_grace(deploy):
    d = deploy
    d.agent.settings["shutdown_grace"] = "8s"
    d.agent.start()
    proc = d.alice.send_async(d.agent, sleeper(d, "short", 1))
    d.agent.wait_log(r"accepted job=")
    wait_for(lambda: d.marker("short.started"), what="the job to start")
    d.agent.proc.send_signal(signal.SIGTERM)
    d.agent.wait_log(r"stopping running=1 grace_ms=8000")
    d.agent.wait_log(r"done job=\S+ .*status=ok")
    d.agent.wait_log(r"reply-sent job=")
    assert d.agent.wait_exit() == 0
    rc, res, err = d.alice.collect(proc)
    assert rc == 0 and one(res)["status"] == "ok" and one(res)["values"] == ["slept"], (res, err)
    assert d.marker("short.finished")


def test_sigterm_job_longer_than_grace_is_interrupted(deploy):
    d = deploy
    d.agent.settings["shutdown_grace"] = "1s"
    d.agent.start()
    proc = d.alice.send_async(d.agent, sleeper(d, "long", 8))
    d.agent.wait_log(r"accepted job=")
    wait_for(lambda: d.marker("long.started"), what="the job to start")
    t0 = time.time()
    d.agent.proc.send_signal(signal.SIGTERM)
    d.agent.wait_log(r"done job=\S+ .*status=interrupted")
    assert d.agent.wait_exit() == 0
    assert time.time() - t0 < 6
    rc, res, err = d.alice.collect(proc)
    r = one(res)
    assert rc == 6 and r["status"] == "interrupted", (r, err)
    assert "stopped while the job ran" in r["error"], r
    assert not d.marker("long.finished")



def test_duplicate_while_running_runs_once(deploy):
    d = deploy
    pat = peer_allowed(d)
    d.agent.start()
    env = d.alice.sign(d.agent, sleeper(d, "dup", 1), extra=["--job-id", "dup-1"])
    pat.send(d.agent.jid, env)
    d.agent.wait_log(r"accepted job=dup-1 ")
    pat.send(d.agent.jid, env)
    d.agent.wait_log(r"duplicate job=dup-1 .*state=running")
    h, _ = result_body(peer_result(pat, d.agent))
    assert h["status"] == "ok" and h["values"] == '["slept"]', h
    d.agent.wait_log(r"reply-sent job=dup-1 ")
    assert len(d.agent.grep(r"accepted job=dup-1 ")) == 1
    assert len(d.agent.grep(r"done job=dup-1 ")) == 1

# ------------------------------------------------------- 4. interactive mode

def test_interactive_plain_lua_from_a_chat_client(deploy):
    d = deploy
    pat = d.kit.peer("pat")
    d.agent.interactive(pat)
    d.kit.trust_peer(d.agent, pat)
    d.agent.start()
    pat.send(d.agent.jid, 'print("hello from chat")\nreturn 6 * 7')
    body = peer_result(pat, d.agent)
    # a person sees the answer first, then the headers, then the output block
    assert body.startswith("ok: 42 ("), body
    assert "\nmoonwire-result 2\n" in body and body.endswith("\n```\nhello from chat\n```"), body
    assert "hello from chat" in body, body
    h, out = result_body(body)
    assert h["status"] == "ok" and h["values"] == "[42]" and out == "hello from chat\n", h
    d.agent.wait_log(r"accepted job=chat-[0-9a-f]{16} from=%s .*interactive=yes"
                     % re.escape(pat.jid))


def test_interactive_off_is_not_a_job(deploy):
    d = deploy
    pat = peer_allowed(d)           # in the policy, but no interactive line
    d.agent.start()
    peer_refused(d, pat, 'fs.write("%s/chat", "x")\nreturn 1' % d.out, "not_a_job")


def test_other_envelope_version_is_refused_not_chat(deploy):
    """An envelope of another version is refused `version` (envelope.md),
    never taken for interactive Lua, even where the sender has
    interactive mode."""
    d = deploy
    pat = peer_allowed(d)
    d.agent.interactive(pat)
    d.agent.start()
    peer_refused(d, pat, "moonwire-job 2\naudience: %s\n" % d.agent.jid, "version")


# ------------------------------------------------------- 5. config errors

def config_case(agent, edit):
    """Writes the agent's files, lets edit(agent) break one, runs the agent:
    it must exit 2 at once without connecting.  Returns its output."""
    agent.write_conf()
    agent.fingerprint()
    edit(agent)
    p = subprocess.run([agent.kit.moonwire, "agent", "-c", agent.conf], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=20)
    assert p.returncode == 2, p.stdout
    assert "connecting" not in p.stdout and "connected" not in p.stdout, p.stdout
    return p.stdout


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


def line_of(path, needle):
    with open(path) as f:
        for i, l in enumerate(f, 1):
            if needle in l:
                return i
    raise AssertionError(needle)


def test_config_errors_name_file_and_line(kit):
    agent = kit.agent()
    alice = kit.operator("alice")
    agent.allow(alice)

    def unknown_key(a):
        append(a.conf, "colour = blue\n")
    out = config_case(agent, unknown_key)
    assert "%s:%d: unknown setting 'colour'" % (agent.conf, line_of(agent.conf, "colour")) in out, out

    def bad_value(a):
        append(a.conf, "parallel = lots\n")
    out = config_case(agent, bad_value)
    assert "%s:%d: 'lots' is not a number" % (agent.conf, line_of(agent.conf, "parallel")) in out, out

    def missing(a):
        with open(a.conf) as f:
            text = f.read()
        with open(a.conf, "w") as f:
            f.write("".join(l for l in text.splitlines(True) if not l.startswith("policy")))
    out = config_case(agent, missing)
    assert "%s: allowed_signers and policy are required" % agent.conf in out, out

    def bad_policy(a):
        append(a.policy, "profile extra\n  frobnicate now\n")
    out = config_case(agent, bad_policy)
    assert "%s:%d:" % (agent.policy, line_of(agent.policy, "frobnicate")) in out, out

    def bad_allow(a):
        append(a.policy, "allow alice@ops alice@localhost no-such-profile\n")
    out = config_case(agent, bad_allow)
    assert "%s:%d:" % (agent.policy, line_of(agent.policy, "no-such-profile")) in out, out

    def bad_signers(a):
        append(a.allowed_signers, "bob@ops ssh-ed25519 not-base64!\n")
    out = config_case(agent, bad_signers)
    assert "%s:%d:" % (agent.allowed_signers, line_of(agent.allowed_signers, "bob@ops")) in out, out

    # and the unbroken files start
    agent.start()


# ------------------------------------------------------- 6. XMPP behaviour

def test_ping_unknown_iq_and_subscriptions(deploy):
    d = deploy
    pat = peer_allowed(d)
    stranger = d.kit.peer("stranger")
    d.agent.start()
    pat.send_raw('<presence to="%s" type="subscribe"/>' % d.agent.jid)
    d.agent.wait_log(r"subscription from=%s approved" % re.escape(pat.jid))
    # approved: the server passes on the agent's presence, with its full JID
    # (Prosody 0.12 sends the "subscribed" itself only to a resource that
    # fetched the roster, which the python peer does not)
    ev = pat.expect("presence", predicate=lambda e: e["from"].startswith(d.agent.jid + "/") and
                    e["type"] == "available", timeout=10)
    full = ev["from"]
    pat.send_raw('<iq type="get" id="raw-ping-1" to="%s"><ping xmlns="urn:xmpp:ping"/></iq>' % full)
    ev = pat.expect("iq", id="raw-ping-1", timeout=10)
    assert ev["type"] == "result" and ev["from"] == full, ev
    pat.send_raw('<iq type="get" id="raw-odd-1" to="%s"><query xmlns="urn:example:nothing"/></iq>'
                 % full)
    ev = pat.expect("iq", id="raw-odd-1", timeout=10)
    assert ev["type"] == "error" and ev["condition"] == "service-unavailable", ev

    stranger.send_raw('<presence to="%s" type="subscribe"/>' % d.agent.jid)
    d.agent.wait_log(r"subscription from=%s refused" % re.escape(stranger.jid))
    # refused: after a round trip through the server, no available presence
    # of the agent reached the stranger (Prosody answers "unsubscribed" with
    # an unavailable presence of the bare JID)
    stranger.send_raw('<iq type="get" id="raw-srv-1" to="localhost"><ping xmlns="urn:xmpp:ping"/>'
                      '</iq>')
    stranger.expect("iq", id="raw-srv-1", timeout=10)
    seen = [e for e in stranger.events("presence") if e["from"].startswith(d.agent.jid)]
    assert all(e["type"] in ("unavailable", "unsubscribed") for e in seen), seen


@pytest.mark.usefixtures("omemo")
def test_offline_job_runs_when_the_agent_returns(deploy):
    d = deploy
    d.agent.start()
    d.agent.stop()
    env = write(os.path.join(d.programs, "offline"), d.alice.sign(d.agent, d.marker_job("offline")))
    p, res = d.alice.send(d.agent, envelope=env, timeout="2s")
    assert p.returncode == 6 and one(res)["status"] == "no_answer", (p.stdout, p.stderr)
    assert not d.marker("offline")
    d.agent.start()
    d.agent.wait_log(r"done job=\S+ .*status=ok")
    assert d.marker("offline")
    # the same envelope again: the stored result (nothing runs twice)
    p, res = d.alice.send(d.agent, envelope=env)
    r = one(res)
    assert p.returncode == 0 and r["status"] == "ok" and r["values"] == [1], r
    assert len(d.agent.grep(r"accepted job=")) == 1


# ------------------------------------------------------- 5. signs of life (XEP-0085)

def test_chat_states_composing_then_result_then_active(deploy):
    """A chat client sees <composing/> once a job has run for a second (spec/
    agent.md: COMPOSING_AFTER_MS), then the result carrying <active/>; the
    composing state is a plain, body-less, no-store message."""
    d = deploy
    pat = peer_allowed(d)
    d.agent.start()
    pat.send(d.agent.jid, d.alice.sign(d.agent, sleeper(d, "life", 3)))
    composing = pat.expect("chat_state", sender=d.agent.jid, state="composing", timeout=20)
    assert composing["type"] == "chat" and not composing["body"] and composing["no_store"]
    # still running when composing came: the sign of life precedes the end
    assert not os.path.exists(os.path.join(d.out, "life.finished"))
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok" and h["values"] == '["slept"]', h
    active = pat.expect("chat_state", sender=d.agent.jid, state="active", timeout=10)
    # in arrival order: composing, then the result, which carries active
    seq = [(e["event"], e.get("state"), e.get("id")) for e in pat.history
           if e.get("from") == d.agent.jid and e["event"] in ("chat_state", "message")]
    assert [x[:2] for x in seq] == [("chat_state", "composing"), ("chat_state", "active"),
                                    ("message", None)], seq
    assert active["body"] and active["id"] is not None and active["id"] == seq[2][2], seq
    assert os.path.exists(os.path.join(d.out, "life.finished"))


def test_chat_states_short_job_no_composing(deploy):
    """A job that ends within the threshold sends no <composing/> stanza of
    its own: its result, carrying <active/>, is the first thing seen."""
    d = deploy
    pat = peer_allowed(d)
    d.agent.start()
    pat.send(d.agent.jid, d.alice.sign(d.agent, d.program("quick.lua", "return 1")))
    h, _ = result_body(peer_result(pat, d.agent, timeout=30))
    assert h["status"] == "ok", h
    pat.expect("chat_state", sender=d.agent.jid, state="active", timeout=10)
    # on a loaded machine the job may legitimately pass the threshold: the
    # agent's own sandbox time (submit to result) says whether it did
    line = d.agent.wait_log(r"reply-sent job=.* sandbox_us=")
    sandbox_us = int(re.search(r"sandbox_us=(\d+)", line).group(1))
    seq = [(e["event"], e.get("state")) for e in pat.history
           if e.get("from") == d.agent.jid and e["event"] in ("chat_state", "message")]
    if sandbox_us < 990000:
        assert seq == [("chat_state", "active"), ("message", None)], (seq, sandbox_us)
    else:
        assert seq[-2:] == [("chat_state", "active"), ("message", None)], (seq, sandbox_us)


def send_on_a_pty(d, program):
    """`moonwire send` (text output) with stderr on a pseudo-terminal and
    stdout on a pipe; returns (exit status, stdout, what the terminal got)."""
    import pty
    import select
    master, slave = pty.openpty()
    cmd = [d.kit.moonwire, "send", "-c", d.alice.conf, "--timeout", "30s",
           "--to", d.agent.jid, program]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    term = b""
    try:
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:     # EIO: the slave side is closed
                    break
                if not chunk:
                    break
                term += chunk
            elif p.poll() is not None:
                break
        out = p.stdout.read().decode()
        rc = p.wait(timeout=60)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
    return rc, out, term.decode("utf-8", "replace")


def test_send_shows_running_on_a_terminal_only(deploy):
    d = deploy
    d.agent.start()
    rc, out, term = send_on_a_pty(d, sleeper(d, "tty", 3))
    assert rc == 0 and "status: ok" in out and "returned: slept" in out, (out, term)
    assert "%s: accepted, running 1 s" % d.agent.jid in term, repr(term)
    assert "accepted, running 2 s" in term, repr(term)
    assert "\r\x1b[K" in term, repr(term)            # updated in place, cleared at the end
    assert "running" not in out, out                  # never on stdout
    # on a pipe: nothing of it
    p, _ = d.alice.send(d.agent, sleeper(d, "pipe", 1.5), json_out=False)
    assert p.returncode == 0 and "status: ok" in p.stdout, (p.stdout, p.stderr)
    assert "running" not in p.stderr and "\r" not in p.stderr, repr(p.stderr)
