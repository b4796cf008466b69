"""Every `--json` output is JSON Lines: one compact object per line
(spec/result.md, "JSON output").

Why this exists: `moonwire run --json` used to pretty-print with tabs over
many lines while `moonwire send --json` printed one line per result; a
consumer reading line by line (`jq -c`, a log shipper, `for line in
proc.stdout`) broke on one of them.  This runs every `--json` producer
that needs no server -- `moonwire run --json`, over outcomes that stress
the encoder (nested values, text with newlines, tabs, quotes, control
characters, invalid UTF-8, each kind of failure) -- and parses every line
with Python's json module.  `moonwire send --json` needs an XMPP server:
every send of tests/e2e and tests/reliability goes through
tests/lib/agentkit.py, whose json_lines() applies the same check to each
line.
"""

import json
import re
import subprocess

import pytest

from mwbinary import moonwire_path  # tests/lib, on sys.path via conftest.py

STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
KEYS = {"job_id", "status", "values", "output", "output_truncated", "error", "usage"}


def json_lines(text):
    """Parses TEXT as JSON Lines; asserts each line is one compact object."""
    assert text == "" or text.endswith("\n"), repr(text)
    objs = []
    for line in text.splitlines():
        assert line.strip() == line and line, repr(line)
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        # compact: no blank outside string literals
        assert not re.search(r"\s", STRING.sub('""', line)), line
        objs.append(obj)
    return objs


PROGRAMS = {
    "values": ('print("a\\tb") print("line 2")\n'
               'return 1, 2.5, "x\\ny\\t\\"q\\"", {1, 4, 9}, {a = {b = {true, false}}}, nil\n',
               "ok", 0),
    "controls": ('print("bell\\7 nul\\0 esc\\27 del\\127")\n'
                 'return "\\255\\254 not utf-8", "\\u{1F600}"\n', "ok", 0),
    "error": ('error("boom\\nsecond line")\n', "error", 1),
    "syntax": ("return (\n", "syntax_error", 3),
    "instructions": ("while true do end\n", "instruction_limit", 4),
    "output": ('for i = 1, 100 do print(string.rep("x", 100)) end\n', "output_limit", 4),
    "empty_return": ("print('only output')\n", "ok", 0),
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_run_json_is_one_compact_line(name, tmp_path):
    text, status, rc = PROGRAMS[name]
    prog = tmp_path / (name + ".lua")
    prog.write_text(text)
    args = [moonwire_path(), "run", "--json", "--instructions", "1000000", "--output", "1K",
            str(prog)]
    p = subprocess.run(args, capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL, errors="strict")
    objs = json_lines(p.stdout)
    assert len(objs) == 1, p.stdout
    res = objs[0]
    assert set(res) == KEYS, res
    assert res["status"] == status and p.returncode == rc, (res, p.stderr)
    if name == "values":
        assert res["values"] == [1, 2.5, 'x\ny\t"q"', [1, 4, 9], {"a": {"b": [True, False]}}, None]
        assert res["output"] == "a\tb\nline 2\n"
    if name == "controls":
        assert res["values"] == ["\ufffd\ufffd not utf-8", "\U0001F600"]
        assert "\x07" in res["output"] and "\x1b" in res["output"]
    if name == "output":
        assert res["output_truncated"] is True


def test_run_json_usage_error_prints_no_line(tmp_path):
    p = subprocess.run([moonwire_path(), "run", "--json", "--no-such-flag", str(tmp_path / "x.lua")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and p.stdout == ""


def test_json_lines_parser_rejects_pretty_output():
    # the check above is not vacuous: the old pretty-printed form fails it
    pretty = json.dumps({"job_id": "local", "values": [1]}, indent="\t") + "\n"
    with pytest.raises((AssertionError, ValueError)):
        json_lines(pretty)
    with pytest.raises(AssertionError):
        json_lines('{"a": 1}\n')


def test_verify_has_no_json_mode():
    # spec/result.md lists the --json producers; if verify grows one, test it here
    p = subprocess.run([moonwire_path(), "verify", "--help"], capture_output=True, text=True)
    assert "--json" not in p.stdout + p.stderr
