"""Fixtures for the end-to-end suite (issue 4): a whole deployment through
the real Prosody of the `prosody` fixture and real agent processes.

  kit     a tests/lib/agentkit.Kit in tmp_path; every agent and python peer
          is stopped after the test, and on failure the agent logs are
          printed.
  omemo   parametrizes a test over `moonwire send --omemo legacy` and
          `--omemo 2` (the kit's operators send with it); the agent
          publishes both versions and answers in the one it got.
  deploy  the usual deployment: agent "agent" with the standard policy
          (Deploy.policy), operator "alice" allowed for it, fingerprints
          verified both ways; the agent is NOT started (tests adjust the
          policy first).
"""

import os

import pytest

from agentkit import Kit

# The standard policy: one command, a read dir with a file in it, a write
# dir for side-effect markers, sys, kv and sleep.
POLICY = """\
command hello /bin/echo hello from exec
command true /bin/true
limits wall=10s program=16K
profile default
  sys
  kv
  read {read}
  write {out}
  exec hello
  sleep 10s
profile nothing
"""


class Deploy:
    def __init__(self, kit):
        self.kit = kit
        self.agent = kit.agent()
        self.alice = kit.operator("alice")
        self.read_dir = os.path.join(kit.workdir, "granted-read")
        self.out = os.path.join(kit.workdir, "granted-write")
        self.elsewhere = os.path.join(kit.workdir, "not-granted")
        for d in (self.read_dir, self.out, self.elsewhere):
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(self.read_dir, "motd.txt"), "w") as f:
            f.write("granted file\n")
        self.agent.policy_text = POLICY.format(read=self.read_dir, out=self.out)
        self.agent.allow(self.alice)
        kit.trust(self.agent, self.alice)
        self.programs = os.path.join(kit.workdir, "programs")
        os.makedirs(self.programs, exist_ok=True)

    def program(self, name, text):
        path = os.path.join(self.programs, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def marker_job(self, name, pad=0):
        """A job whose only effects are a marker file `name` in the granted
        write dir and one more in the kv counter "runs"; it returns the
        counter.  pad: extra bytes of comment (for oversized programs)."""
        return self.program(name + ".lua", (
            "-- %s\n" % ("x" * pad if pad else name) +
            'fs.write("%s/%s", "ran\\n")\n' % (self.out, name) +
            'local n = tonumber(kv.get("runs") or "0") + 1\n'
            'kv.put("runs", tostring(n))\n'
            'print("marker %s")\n' % name +
            "return n\n"))

    def marker(self, name):
        return os.path.exists(os.path.join(self.out, name))

    def markers(self):
        return sorted(os.listdir(self.out))


@pytest.fixture
def kit(request, moonwire_bin, prosody, tmp_path):
    k = Kit(moonwire_bin, prosody, tmp_path / "kit")
    try:
        yield k
    finally:
        k.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is None or rep.failed:
            for a in k.agents:
                print("\n=== agent %s log\n%s" % (a.jid, "\n".join(a.log[-60:])))


@pytest.fixture
def deploy(kit):
    return Deploy(kit)


@pytest.fixture(params=["legacy", "2"])
def omemo(request, kit):
    """The OMEMO version `send` is forced to.  The as-deployed pass runs
    the legacy half only: it is about the agent's credentials, which the
    OMEMO version does not change (OMEMO 2 runs in the root, ejabberd and
    ASan passes, and test_agent_omemo2.py runs as deployed too)."""
    if request.param == "2" and os.environ.get("MW_AS_DEPLOYED") == "1":
        pytest.skip("deployed pass: the OMEMO version does not change the agent's "
                    "credentials; OMEMO 2 is covered by the other passes")
    kit.omemo = request.param
    return request.param
