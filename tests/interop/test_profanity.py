"""A real chat client, Profanity 0.13 (Debian, legacy OMEMO through
libsignal-protocol-c), drives an agent in interactive mode, and what a
person sees of the result is checked on its screen (issue 14, "Results
that read well in a chat client").

Why this exists: the result message is written for two readers, moonwire
send (which parses it) and a person in a chat client (who should see the
answer first).  Only a real client shows what a person sees.  Profanity
runs in a private tmux server (its own socket) with HOME and the XDG
directories in tmp_path; the test types into it as a user would: connect
without TLS to the test Prosody, generate its OMEMO identity, start OMEMO
with the agent and trust the agent's fingerprint, then type Lua.  The
agent's policy has `interactive carol@localhost default`, and the agent
trusts carol's fingerprint as read from Profanity's screen.

It fails if the agent cannot talk to a real client's OMEMO (no answer),
or if the screen does not show, in this order, the one-line summary
(`ok: 42 (N ms)`), the `moonwire-result 2` header block and the output as
a preformatted block.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

from agentkit import Kit

pytestmark = pytest.mark.skipif(
    shutil.which("profanity") is None or shutil.which("tmux") is None,
    reason="profanity and tmux are installed by make deps")

FP = r"[0-9a-f]{8}(?:-[0-9a-f]{8}){7}"


class Screen:
    """Profanity in its own tmux server."""

    def __init__(self, home):
        self.sock = "mwprof%d" % os.getpid()
        env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=os.path.join(home, ".config"),
                   XDG_DATA_HOME=os.path.join(home, ".local", "share"), TERM="xterm-256color")
        os.makedirs(home, exist_ok=True)
        subprocess.run(["tmux", "-L", self.sock, "new-session", "-d", "-s", "p", "-x", "220",
                        "-y", "60", "profanity"], env=env, check=True)

    def type(self, text):
        subprocess.run(["tmux", "-L", self.sock, "send-keys", "-t", "p", "-l", text], check=True)
        subprocess.run(["tmux", "-L", self.sock, "send-keys", "-t", "p", "Enter"], check=True)

    def text(self):
        return subprocess.run(["tmux", "-L", self.sock, "capture-pane", "-t", "p", "-p", "-S",
                               "-200"], capture_output=True, text=True).stdout

    def wait(self, pattern, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text(), re.S)
            if m:
                return m
            time.sleep(0.2)
        raise AssertionError("no %r on Profanity's screen:\n%s" % (pattern, self.text()))

    def close(self):
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


def test_result_reads_answer_first_in_profanity(moonwire_bin, prosody, tmp_path):
    kit = Kit(moonwire_bin, prosody, tmp_path / "kit")
    screen = None
    try:
        agent = kit.agent("agent")
        prosody.register("carol", "pw")
        agent.interactive("carol@localhost", "default")
        agent.write_conf()
        agent_fp = agent.fingerprint()
        agent.start()
        agent.wait_log(r"omemo-published device=\d+", timeout=30)

        screen = Screen(str(tmp_path / "carol-home"))
        screen.wait(r"Type '/help'")
        screen.type("/connect carol@localhost server %s port %d tls disable"
                    % (prosody.host, prosody.port))
        screen.wait(r"[Pp]assword")
        screen.type("pw")
        screen.wait(r"logged in successfully")
        screen.type("/omemo gen")
        screen.wait(r"OMEMO crytographic materials generated|OMEMO cryptographic materials "
                    r"generated", timeout=60)
        screen.type("/omemo fingerprint")
        carol_fp = screen.wait(r"Your OMEMO fingerprint: (%s)" % FP).group(1)
        subprocess.run([moonwire_bin, "trust", "-c", agent.conf, "carol@localhost", carol_fp],
                       check=True, capture_output=True)

        screen.type("/msg agent@localhost")
        screen.type("/omemo start")
        screen.wait(r"agent@localhost \[\w+\] \[OMEMO\]")
        screen.type("/omemo trust agent@localhost %s" % agent_fp)
        screen.wait(r"agent@localhost's OMEMO fingerprint: %s" % re.escape(agent_fp))

        # Profanity builds its session to the agent's device after the
        # trust, from a bundle it fetches again; a message typed before that
        # bundle arrives is refused by Profanity itself ("cannot be
        # decrypted for any recipient", nothing is sent), and the person
        # types it again.  On a loaded machine the first try can be early.
        result = r"agent@localhost/\S+: (ok: 42 \(\d+ ms\))\s*\n(.*?)\n \["
        refused = "cannot be decrypted for any recipient"
        for attempt in range(4):
            before = screen.text().count(refused)
            screen.type('print("uptime fine") return 6*7')
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                text = screen.text()
                if re.search(result, text, re.S) or text.count(refused) > before:
                    break
                time.sleep(0.2)
            if re.search(result, screen.text(), re.S):
                break
            time.sleep(1.0)
        m = screen.wait(result, timeout=5)
        body = [ln.strip() for ln in m.group(2).splitlines()]
        # the person reads the answer first, then the exact header block,
        # then the output as a XEP-0393 preformatted block
        assert body[0] == "moonwire-result 2", body
        assert any(re.fullmatch(r"job-id: chat-[0-9a-f]{16}", ln) for ln in body), body
        assert "status: ok" in body and "values: [42]" in body, body
        fence = body.index("```")
        assert body[fence + 1:fence + 3] == ["uptime fine", "```"], body
        assert agent.grep(r"reply-sent job=chat-"), agent.log[-20:]
    finally:
        if screen is not None:
            screen.close()
        kit.close()
