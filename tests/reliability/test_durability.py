"""The durability setting keeps its word (spec/agent.md, "Durability"):
with `durability full` each job costs exactly two syncs of the identity
database's write-ahead log -- the decrypt commit that records the job and
the encrypt commit that advances the sending chain -- and with `normal`
none.  Power loss cannot be staged here; what the kernel is asked to make
durable can be counted, so the agent runs under strace (its own process
only: the sandbox is another process) and every fsync/fdatasync names its
file (-y).

A checkpoint syncs the log and then the database file; those are counted
apart (one log sync per database sync) so that an automatic checkpoint in
the window cannot pass for, or hide, a job's sync.  The agent checkpoints
by itself (its commit hook replaces SQLite's automatic one): a long run
must checkpoint, and the log must stay near its 1,000-page threshold.
"""

import os
import re
import shutil

import pytest

from kit2 import SIDE_EFFECT, Client, build_mwclient, deploy, marks_count, sign_envelopes

N_JOBS = 8
N_LONG = 200
PAGE_FRAME = 4096 + 24      # a WAL frame: page and frame header
SYNC = re.compile(r"^(?:\d+ +)?(fsync|fdatasync)\(\d+<([^>]*)>\) += 0")


def _syncs(trace, db):
    """(log syncs, database file syncs) in the trace so far."""
    wal = ldb = 0
    with open(trace) as f:
        for line in f:
            m = SYNC.match(line)
            if m is None:
                continue
            if m.group(2) == db + "-wal":
                wal += 1
            elif m.group(2) == db:
                ldb += 1
    return wal, ldb


NO_STRACE = pytest.mark.skipif(shutil.which("strace") is None,
                               reason="strace is not installed (make deps)")


def _start(moonwire_bin, prosody, tmp_path, durability):
    exe = build_mwclient(moonwire_bin)
    kit, agent, (op,), marks = deploy(moonwire_bin, prosody, tmp_path,
                                      settings={"rate_limit": "0", "queue": "512",
                                                "durability": durability})
    trace = str(tmp_path / "strace.out")
    agent.wrapper = ("strace", "-qq", "-y", "-o", trace, "-e", "trace=fsync,fdatasync")
    return exe, agent, op, marks, trace, os.path.realpath(agent.db)


def _prog(marks):
    return SIDE_EFFECT.replace("%s", marks) + 'return "@ID@"\n'


@NO_STRACE
@pytest.mark.parametrize("durability,per_job", [("full", 2), ("normal", 0)])
def test_syncs_per_job(prosody, moonwire_bin, tmp_path, durability, per_job):
    exe, agent, op, marks, trace, db = _start(moonwire_bin, prosody, tmp_path, durability)
    prog = _prog(marks)
    warm = sign_envelopes(exe, op, agent.jid, prog, str(tmp_path / "e"), "warm", 2)
    jobs = sign_envelopes(exe, op, agent.jid, prog, str(tmp_path / "e"), "dur", N_JOBS)
    agent.start()
    client = Client(exe, op, agent.jid)
    try:
        client.wait_connected()
        # the session exists and the first-contact work (prekey used, bundle
        # republish scheduled) is behind us before counting starts
        for j, path in warm:
            client.send(path)
            assert client.wait_results([j], 30), agent.log[-20:]
        before = _syncs(trace, db)
        for j, path in jobs:
            client.send(path)
            assert client.wait_results([j], 30), agent.log[-20:]
            assert client.result(j)["status"] == "ok", client.result(j)
            assert marks_count(marks, j) == 1
        after = _syncs(trace, db)
    finally:
        client.close()
        agent.stop()
    wal = after[0] - before[0]
    checkpoints = after[1] - before[1]
    assert wal - checkpoints == per_job * N_JOBS, (
        "durability %s: %d log syncs, %d database syncs for %d jobs" %
        (durability, wal, checkpoints, N_JOBS))


@NO_STRACE
def test_log_checkpointed(prosody, moonwire_bin, tmp_path):
    exe, agent, op, marks, trace, db = _start(moonwire_bin, prosody, tmp_path, "full")
    jobs = sign_envelopes(exe, op, agent.jid, _prog(marks), str(tmp_path / "e"), "long", N_LONG)
    agent.start()
    client = Client(exe, op, agent.jid)
    try:
        client.wait_connected()
        client.send(*[p for _, p in jobs])
        assert client.wait_results([j for j, _ in jobs], 300), agent.log[-20:]
        assert all(client.result(j)["status"] == "ok" for j, _ in jobs)
        wal, ldb = _syncs(trace, db)
        size = os.path.getsize(db + "-wal")
    finally:
        client.close()
        agent.stop()
    # every checkpoint ends with the database file synced
    assert ldb >= 1, "no checkpoint in %d jobs (log %d bytes)" % (N_LONG, size)
    assert wal >= 2 * N_LONG + ldb
    # a log reset by its checkpoints is reused from the start: it holds
    # the threshold's pages and the transaction that crossed it
    assert size <= 1200 * PAGE_FRAME, "the log grew to %d bytes" % size
