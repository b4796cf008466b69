"""Crash consistency (issue 6): an operator sends MW_CRASH_JOBS jobs (500 in
CI) while the agent is SIGKILLed over and over -- by itself at every
MOONWIRE_TEST_CRASH point several times, and from outside at random moments
while jobs are in flight -- and restarted each time.

Every job appends one byte to a marker file named after its job id through
a granted capability (fs.write), so the test counts how often each job ran.
Envelopes are signed once and re-sent unchanged when no result came: the
agent must answer a re-sent envelope with the stored result, never run it
again.

Asserted: one terminal result per job id (ok or interrupted; identical
copies allowed, different ones not), no job ran twice, an ok job ran
exactly once, and OMEMO stays in step both ways (no decrypt failure but
explained duplicates; fresh jobs work after the storm).
"""

import os
import random
import re
import time

from kit2 import SIDE_EFFECT, Client, build_mwclient, deploy, marks_count, sign_envelopes

POINTS = ["after_decrypt", "after_commit", "mid_job", "after_result", "after_reply"]
N_JOBS = int(os.environ.get("MW_CRASH_JOBS", "500"))
N_KILLS = int(os.environ.get("MW_CRASH_KILLS", str(max(15, N_JOBS // 8))))
SEED = int(os.environ.get("MW_CRASH_SEED", "6"))

PROGRAM = (SIDE_EFFECT +
           'local n = tonumber(("@ID@"):match("(%d+)$"))\n'
           'if n % 3 == 0 then sleep(0.15) elseif n % 3 == 1 then sleep(0.02) end\n'
           'return "@ID@"\n')


def _schedule(rng, kills):
    """Crash-point rounds (two thirds, every point equally often) and
    external SIGKILL rounds, shuffled deterministically."""
    per_point = max(2, (kills * 2 // 3) // len(POINTS))
    rounds = [("point", p) for p in POINTS for _ in range(per_point)]
    rounds += [("kill", None)] * max(3, kills - len(rounds))
    rng.shuffle(rounds)
    return rounds


def _check_results(client, ids, marks):
    """The invariants; returns (ok, interrupted, duplicate copies)."""
    ok = interrupted = copies = 0
    problems = []
    for j in ids:
        rs = [r for _, r in client.results.get(j, [])]
        ran = marks_count(marks, j)
        if not rs:
            problems.append("%s: no result (ran %d)" % (j, ran))
            continue
        if any(r != rs[0] for r in rs[1:]):
            problems.append("%s: different results %r" % (j, rs))
        copies += len(rs) - 1
        st = rs[0]["status"]
        if ran > 1:
            problems.append("%s: ran %d times" % (j, ran))
        if st == "ok":
            ok += 1
            if ran != 1 or rs[0].get("values") != [j]:
                problems.append("%s: ok but ran %d times (%r)" % (j, ran, rs[0]))
        elif st == "interrupted":
            interrupted += 1
        else:
            problems.append("%s: status %s: %r" % (j, st, rs[0]))
    assert not problems, "\n".join(problems[:40])
    return ok, interrupted, copies


def test_crash_storm(prosody, moonwire_bin, tmp_path):
    exe = build_mwclient(moonwire_bin)
    kit, agent, (op,), marks = deploy(moonwire_bin, prosody, tmp_path,
                                      settings={"rate_limit": "0", "queue": "512"})
    rng = random.Random(SEED)
    jobs = sign_envelopes(exe, op, agent.jid, PROGRAM.replace("%s", marks), str(tmp_path / "env"), "crash", N_JOBS)
    path = dict(jobs)
    ids = [j for j, _ in jobs]
    fresh = list(ids)
    sent_at = {}
    rounds = _schedule(rng, N_KILLS)
    per_round = max(1, -(-N_JOBS // len(rounds)))
    kills = {"external": 0}
    for p in POINTS:
        kills[p] = 0
    agent.start()
    client = Client(exe, op, agent.jid)
    try:
        client.wait_connected()
        t0 = time.time()

        def send_round(n_new):
            now = time.time()
            batch = [fresh.pop(0) for _ in range(min(n_new, len(fresh)))]
            # re-send what has had no answer for a while (lost with a crash)
            stale = [j for j, t in sent_at.items() if now - t > 6 and not client.results.get(j)]
            for j in batch + stale[:40]:
                sent_at[j] = now
            client.send(*[path[j] for j in batch + stale[:40]])
            return batch

        for kind, point in rounds:
            if agent.alive():
                agent.stop()
            env = {}
            if kind == "point":
                env["MOONWIRE_TEST_CRASH"] = "%s:%d" % (point, rng.randint(1, 3))
            agent.start(env=env)
            send_round(per_round)
            if kind == "point":
                if agent.wait_exit(6):
                    kills[point] += 1
                    assert agent.grep("test-crash point=%s" % point), \
                        "exit %r without the crash point:\n%s" % (
                            agent.proc.returncode, "\n".join(agent.log[-30:]))
                    agent.reap()
                    continue
                # the point was not reached in time: kill from outside
            else:
                time.sleep(rng.uniform(0.05, 0.8))
            kills["external"] += 1
            agent.kill()
        # the storm is over: everything still missing is re-sent until
        # answered, in bounded batches (re-sending thousands at once only
        # buries the agent under stored results it must send again)
        agent.start()
        send_round(len(fresh))
        deadline = time.time() + max(90, N_JOBS * 0.06)
        while time.time() < deadline and not client.wait_results(ids, 8):
            missing = [j for j in ids if not client.results.get(j)][:300]
            for j in missing:
                sent_at[j] = time.time()
            client.send(*[path[j] for j in missing])
        storm_s = time.time() - t0
        # settle: resent copies still in flight arrive now
        time.sleep(2)
        ok, interrupted, copies = _check_results(client, ids, marks)
        # OMEMO in step both ways: fresh jobs after the storm
        after = sign_envelopes(exe, op, agent.jid, PROGRAM.replace("%s", marks),
                               str(tmp_path / "env"), "after", 5)
        client.send(*[p for _, p in after])
        assert client.wait_results([j for j, _ in after], 30), client.events[-10:]
        for j, _ in after:
            assert client.result(j)["status"] == "ok", client.result(j)
            assert marks_count(marks, j) == 1
        # decrypt failures on either side: only explained duplicates
        omemo = agent.grep(r"refused code=omemo")
        unexplained = [l for l in omemo if not re.search(r"duplicate|replay", l, re.I)]
        assert not unexplained, unexplained[:10]
        client_errors = [e for _, e in client.events if e.startswith("E decrypt-error")]
        assert all(re.search("duplicate|replay", e, re.I) for e in client_errors), client_errors
        assert agent.stop() == 0
        dup_lines = len(agent.grep(r"moonwire-agent: duplicate "))
        recovered = sum(int(m.group(1)) for m in (re.search(r"recovered interrupted=(\d+)", l)
                                                  for l in agent.log) if m)
        print("\ncrash storm: %d jobs, %d rounds, kills %r, %.1f s; results: ok=%d "
              "interrupted=%d identical-copies=%d; agent: duplicate-lines=%d "
              "recovered-interrupted=%d omemo-duplicates=%d; client decrypt-dups=%d"
              % (N_JOBS, len(rounds), kills, storm_s, ok, interrupted, copies, dup_lines,
                 recovered, len(omemo), len(client_errors)))
        assert sum(kills.values()) >= min(N_KILLS, 15)
        for p in POINTS:
            assert kills[p] >= 1, kills     # each point was really crashed at
    finally:
        client.close()
        kit.close()
