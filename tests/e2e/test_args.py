"""Signed job arguments end to end: `moonwire send --arg` through a real
Prosody to a real agent, the program reading them as `args`, and a policy
profile that restricts which arguments it accepts.

Why this exists: arguments change what a signed program does, so they must
travel inside the signed bytes (a tampered argument is a bad signature),
reach the program exactly, and be refusable by the owner's policy with a
typed refusal, an audit line and no run.
"""

import os
import re

from test_agent import assert_refused, audit, one, still_serves


def test_arguments_reach_the_program(deploy):
    d = deploy
    d.agent.start()
    prog = d.program("args.lua", 'return args.path, args.note, args.missing\n')
    p, res = d.alice.send(d.agent, prog,
                          extra=["--arg", "path=/var/log/dpkg.log", "--arg", "note=a b%c é"])
    r = one(res)
    assert p.returncode == 0 and r["status"] == "ok", r
    assert r["values"] == ["/var/log/dpkg.log", "a b%c é", None], r


def test_tampered_argument_is_a_bad_signature(deploy):
    d = deploy
    d.agent.start()
    prog = d.program("args.lua", 'fs.write("%s/ran", args.path)\nreturn args.path\n' % d.out)
    env = d.alice.sign(d.agent, prog, extra=["--arg", "path=/tmp/a"])
    assert "\nargs: path=/tmp/a\n" in env
    bad = os.path.join(d.kit.workdir, "tampered.job")
    with open(bad, "w") as f:
        f.write(env.replace("args: path=/tmp/a\n", "args: path=/tmp/b\n"))
    p, res = d.alice.send(d.agent, envelope=bad)
    assert_refused(p, res, "bad_signature")
    audit(d.agent, "bad_signature")
    assert not os.path.exists(os.path.join(d.out, "ran"))


def test_profile_restricts_arguments(deploy):
    d = deploy
    d.agent.policy_text = d.agent.policy_text.replace(
        "profile default\n", "profile default\n  args path lines\n")
    d.agent.start()
    prog = d.program("args.lua", 'fs.write("%s/ran", "x")\nreturn args.path\n' % d.out)
    p, res = d.alice.send(d.agent, prog, extra=["--arg", "path=/x", "--arg", "user=root"])
    r = assert_refused(p, res, "bad_args")
    assert "argument 'user' is not allowed by profile default" in r["error"], r
    audit(d.agent, "bad_args", re.escape("from=%s" % d.alice.jid))
    assert d.markers() == []
    # the allowed one runs
    p, res = d.alice.send(d.agent, d.program("ok.lua", "return args.path\n"),
                          extra=["--arg", "path=/x"])
    r = one(res)
    assert r["status"] == "ok" and r["values"] == ["/x"], r
    still_serves(d)
