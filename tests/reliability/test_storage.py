"""Storage faults (issue 6): the agent's identity database locked by another
connection, on a full file system (a tiny tmpfs mounted for it), and with
bytes overwritten.

The agent must refuse jobs with a clear audit line or refuse to start with
a clear message, never run a job it could not record, and never damage the
ratchet state it has: once the fault is gone, jobs work again in both
directions over the same sessions (no new session, no decrypt failure).
"""

import os
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from kit2 import SIDE_EFFECT, Client, build_mwclient, deploy, marks_count, sign_envelopes


def _prog(marks):
    return SIDE_EFFECT.replace("%s", marks) + 'return "@ID@"\n'


def _roundtrip(client, exe, op, agent, marks, tmp_path, prefix, n=3, timeout=30):
    jobs = sign_envelopes(exe, op, agent.jid, _prog(marks), str(tmp_path / "e"), prefix, n)
    client.send(*[p for _, p in jobs])
    assert client.wait_results([j for j, _ in jobs], timeout), (agent.log[-20:], client.events[-10:])
    for j, _ in jobs:
        assert client.result(j)["status"] == "ok", client.result(j)
        assert marks_count(marks, j) == 1
    return jobs


def _sessions(db):
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT count(*) FROM omemo_sessions").fetchone()[0]
    except sqlite3.Error:
        return None
    finally:
        c.close()


def _no_omemo_failures(agent, client, since=0, since_ev=0):
    """No decrypt failure on either side after the fault was removed.  A
    message the server delivers again after a restart (stream-management
    redelivery of what the agent had already processed) is reported as a
    duplicate and changes nothing: that one is explained, not a failure."""
    bad = [l for l in agent.log[since:] if "refused code=omemo" in l and
           'reason="duplicate or replayed message"' not in l]
    assert not bad, bad
    assert not [e for _, e in client.events[since_ev:] if e.startswith("E decrypt-error")]


def test_locked_database(prosody, moonwire_bin, tmp_path):
    exe = build_mwclient(moonwire_bin)
    kit, agent, (op,), marks = deploy(moonwire_bin, prosody, tmp_path)
    agent.start()
    client = Client(exe, op, agent.jid)
    try:
        client.wait_connected()
        _roundtrip(client, exe, op, agent, marks, tmp_path, "before")
        # another process holds the write lock for 8 s (longer than the
        # agent's 5 s busy timeout) while a job arrives
        locker = sqlite3.connect(agent.db, timeout=10, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        jobs = sign_envelopes(exe, op, agent.jid, _prog(marks), str(tmp_path / "e"), "locked", 1)
        client.send(jobs[0][1])
        line = agent.wait_log(r"refused code=(omemo|storage)", timeout=20)
        time.sleep(8 - 5)
        locker.execute("ROLLBACK")
        locker.close()
        assert agent.alive()
        assert marks_count(marks, jobs[0][0]) == 0     # never ran without a record
        # the operator re-sends after its timeout: now it runs, once
        if not client.wait_results([jobs[0][0]], 3):
            client.send(jobs[0][1])
        assert client.wait_results([jobs[0][0]], 30), agent.log[-10:]
        res = client.result(jobs[0][0])
        assert res["status"] in ("ok", "refused"), res
        _roundtrip(client, exe, op, agent, marks, tmp_path, "after")
        print("\nlocked database: audit line: %s; then %s" % (line, res["status"]))
        assert agent.stop() == 0
    finally:
        client.close()
        kit.close()


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "dbfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("cannot mount a tmpfs here (%s): run as root in a container that "
                    "allows mount" % r.stderr.strip())
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_full_disk(prosody, moonwire_bin, tmp_path, tiny_tmpfs):
    exe = build_mwclient(moonwire_bin)
    kit, agent, (op,), marks = deploy(moonwire_bin, prosody, tmp_path)
    # the identity (already verified both ways) moves to a 2 MB tmpfs
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(agent.db + suffix):
            shutil.copy2(agent.db + suffix, os.path.join(tiny_tmpfs, "identity.db" + suffix))
    agent.db = os.path.join(tiny_tmpfs, "identity.db")
    agent.start()
    client = Client(exe, op, agent.jid)
    filler = os.path.join(tiny_tmpfs, "filler")
    try:
        client.wait_connected()
        _roundtrip(client, exe, op, agent, marks, tmp_path, "before")
        sessions = _sessions(agent.db)
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        jobs = sign_envelopes(exe, op, agent.jid, _prog(marks), str(tmp_path / "e"), "full", 4)
        client.send(*[p for _, p in jobs])
        time.sleep(4)
        assert agent.alive(), agent.log[-20:]
        ran = [j for j, _ in jobs if marks_count(marks, j)]
        got = {j: client.result(j) for j, _ in jobs if client.result(j)}
        refusals = agent.grep(r"refused code=(storage|omemo)|journal-error")
        # nothing ran without being recorded: a job that ran was accepted
        for j in ran:
            assert agent.grep("accepted job=%s" % j)
        os.unlink(filler)
        since, since_ev = len(agent.log), len(client.events)
        # the operator re-sends what got no answer; everything completes once
        missing = [p for j, p in jobs if j not in got or got[j]["status"] == "refused"]
        client.send(*missing)
        assert client.wait_results([j for j, _ in jobs], 30)
        time.sleep(1)
        for j, _ in jobs:
            assert marks_count(marks, j) <= 1
        _roundtrip(client, exe, op, agent, marks, tmp_path, "after")
        assert _sessions(agent.db) == sessions      # same sessions: nothing rebuilt
        _no_omemo_failures(agent, client, since, since_ev)
        print("\nfull disk: during the fault %d of %d jobs ran, %d answered; audit lines: %s"
              % (len(ran), len(jobs), len(got), refusals[:3]))
        assert refusals or len(ran) == len(jobs)
        assert agent.stop() == 0
    finally:
        if os.path.exists(filler):
            os.unlink(filler)
        since, since_ev = len(agent.log), len(client.events)
        client.close()
        kit.close()


@pytest.mark.parametrize("where", ["header", "middle"])
def test_corrupt_database(prosody, moonwire_bin, tmp_path, where):
    exe = build_mwclient(moonwire_bin)
    kit, agent, (op,), marks = deploy(moonwire_bin, prosody, tmp_path)
    agent.start()
    client = Client(exe, op, agent.jid)
    try:
        client.wait_connected()
        _roundtrip(client, exe, op, agent, marks, tmp_path, "before")
        assert agent.stop() == 0
        c = sqlite3.connect(agent.db)
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
        size = os.path.getsize(agent.db)
        off = 16 if where == "header" else (size // 2) // 4096 * 4096
        with open(agent.db, "r+b") as f:
            f.seek(off)
            original = f.read(4096)
            f.seek(off)
            f.write(bytes((i * 37 + 11) & 0xFF for i in range(len(original))))
        with open(agent.db, "rb") as f:
            corrupted = f.read()
        start_at = len(agent.log)
        agent.start(wait=False)
        outcome = None
        deadline = time.time() + 20
        while time.time() < deadline and outcome is None:
            if not agent.alive():
                outcome = "exit %d" % agent.proc.returncode
            elif any("moonwire-agent: connected" in l for l in agent.log[start_at:]):
                outcome = "running"
            time.sleep(0.1)
        if outcome == "running":
            # started: a job must be refused or fail cleanly, never crash it
            jobs = sign_envelopes(exe, op, agent.jid, _prog(marks), str(tmp_path / "e"),
                                  "corrupt", 1)
            client.send(jobs[0][1])
            time.sleep(4)
            assert agent.alive(), agent.log[-20:]
            assert agent.stop() == 0
        else:
            assert agent.proc.returncode not in (0, -11, -6), agent.log
            agent.wait_exit(5)      # exited already: its last lines read in
            msg = [l for l in agent.log[start_at:] if agent.db in l or "database" in l]
            assert msg, agent.log          # a clear message naming the database
            agent.reap()
        with open(agent.db, "rb") as f:
            after = f.read()
        # the fault is removed: the original bytes go back
        with open(agent.db, "r+b") as f:
            f.seek(off)
            f.write(original)
        if outcome != "running":
            # refusing to start must not have written anything
            assert after == corrupted
        since, since_ev = len(agent.log), len(client.events)
        agent.start()
        _roundtrip(client, exe, op, agent, marks, tmp_path, "after")
        _no_omemo_failures(agent, client, since, since_ev)
        print("\ncorrupt database (%s, 4 KiB at %d of %d): %s; %s" % (
            where, off, size, outcome, [l for l in agent.log[start_at:since]
                                        if "database" in l or "refused" in l][:3]))
        assert agent.stop() == 0
    finally:
        client.close()
        kit.close()
