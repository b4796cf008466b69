"""The agent's long-running path under valgrind (issue 6): connect, jobs,
a lost connection and reconnection, more jobs, SIGTERM.  No definite leak
and no memory error is allowed (--errors-for-leak-kinds=definite with
--error-exitcode).  The sandbox supervisor is exec'd by the agent and not
traced (--trace-children=no): it has its own suites.

MW_VALGRIND_JOBS (default 100; `make soak`: 1000) jobs in all.
"""

import os
import re
import shutil

import pytest

from kit2 import Client, build_mwclient, deploy, sign_envelopes

N_JOBS = int(os.environ.get("MW_VALGRIND_JOBS", "100"))


def test_agent_under_valgrind(prosody, moonwire_bin, tmp_path):
    if shutil.which("valgrind") is None:
        pytest.fail("valgrind is not installed (make deps installs it)")
    if "asan" in moonwire_bin:
        pytest.skip("valgrind and ASan do not mix: this runs on the plain build")
    exe = build_mwclient(moonwire_bin)
    kit, agent, (op,), _ = deploy(moonwire_bin, prosody, tmp_path,
                                  settings={"rate_limit": "0", "queue": "4096"})
    vlog = str(tmp_path / "valgrind.log")
    agent.wrapper = ("valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
                     "--error-exitcode=99", "--trace-children=no", "--num-callers=30",
                     "--suppressions=" + os.path.join(os.path.dirname(__file__), "valgrind.supp"),
                     "--log-file=" + vlog)
    jobs = sign_envelopes(exe, op, agent.jid, 'return "@ID@"\n', str(tmp_path / "e"), "vg",
                          N_JOBS)
    half = N_JOBS // 2
    agent.start(timeout=120)
    client = Client(exe, op, agent.jid)
    try:
        client.wait_connected()
        client.send(*[p for _, p in jobs[:half]])
        assert client.wait_results([j for j, _ in jobs[:half]], 60 + N_JOBS), agent.log[-10:]
        prosody.restart()                       # a lost connection and a reconnect
        agent.wait_log(r"reconnect-scheduled")
        agent.wait_log(r"moonwire-agent: connected", timeout=120)
        client.wait_connected(60)
        client.send(*[p for _, p in jobs[half:]])
        ids = [j for j, _ in jobs[half:]]
        while not client.wait_results(ids, 30 + N_JOBS):
            client.send(*[p for j, p in jobs[half:] if not client.results.get(j)])
        rc = agent.stop(timeout=120)
        with open(vlog) as f:
            report = f.read()
        summary = re.findall(r"(definitely lost: .*|ERROR SUMMARY: .*|suppressed: .*)", report)
        print("\nvalgrind: %d jobs, exit %s; %s" % (N_JOBS, rc, summary))
        assert rc == 0, report[-6000:]
        assert re.search(r"ERROR SUMMARY: 0 errors", report), report[-6000:]
    finally:
        client.close()
        kit.close()
