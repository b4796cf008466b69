"""The man pages (man/) are valid and say what the binary does.

Why this exists: a man page that does not render, or that lacks an option
`--help` prints, is worse than none.  Each page goes through mandoc's
linter (any warning or error fails; at style level only the messages about
manuals this machine lacks are tolerated).  moonwire(1) is compared with
the binary: every command `moonwire --help` lists has its own subsection,
and every long option `moonwire COMMAND --help` prints appears in that
command's subsection of the rendered page.  The sources are compared too:
every long option of a getopt table in runtime/cli/cmd_*.c is in moonwire(1),
every key runtime/agent/agent_config.c accepts is in moonwire-agent.conf(5),
every policy keyword runtime/job/policy.c accepts and every limit key
runtime/job/limits.c accepts is in moonwire-policy(5).  The bash
completion offers the same options.

Needs mandoc (`make deps` installs it); fails, never skips, without it.
"""

import os
import re
import shutil
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAN = os.path.join(TOP, "man")
PAGES = ["moonwire.1", "moonwire-zygote.1", "moonwire-agent.conf.5", "moonwire-policy.5"]
COMPLETION = os.path.join(TOP, "runtime", "dist", "moonwire.bash")
LONG_OPT = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
# Style messages that depend on this machine's manual database, not the page.
MACHINE_STYLE = ("referenced manual not found", "mandoc.db", "makewhatis")


def mandoc():
    path = shutil.which("mandoc")
    if path is None:
        pytest.fail("mandoc is not installed (make deps installs the Debian package mandoc)",
                    pytrace=False)
    return path


def render(page):
    """The page as mandoc -T ascii prints it, without overstriking."""
    p = subprocess.run([mandoc(), "-T", "ascii", "-O", "width=100", os.path.join(MAN, page)],
                       capture_output=True, text=True, check=True)
    return re.sub(r".\x08", "", p.stdout)


def sections(text):
    """{title: text} of the .Sh (column 0) and .Ss (column 3) headings."""
    out, title, buf = {}, None, []
    for line in text.splitlines():
        m = re.match(r"^(?:   )?(\S.*)$", line)
        if m and not line.startswith("    ") and not re.match(r"^[A-Z0-9.-]+\(\d\)", line):
            if title is not None:
                out[title] = "\n".join(buf)
            title, buf = m.group(1).strip(), []
        else:
            buf.append(line)
    if title is not None:
        out[title] = "\n".join(buf)
    return out


def help_text(moonwire_bin, *args):
    p = subprocess.run([moonwire_bin] + list(args), capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=30)
    return p.stdout + p.stderr


def commands(moonwire_bin):
    text = help_text(moonwire_bin, "--help")
    cmds = re.findall(r"^  moonwire ([a-z]+)", text, re.M)
    assert len(cmds) >= 9, text
    return cmds


@pytest.mark.parametrize("page", PAGES)
def test_mandoc_lint_clean(page):
    p = subprocess.run([mandoc(), "-T", "lint", "-W", "warning", os.path.join(MAN, page)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", p.stdout + p.stderr
    p = subprocess.run([mandoc(), "-T", "lint", "-W", "style", os.path.join(MAN, page)],
                       capture_output=True, text=True)
    style = [l for l in (p.stdout + p.stderr).splitlines()
             if l.strip() and not any(m in l for m in MACHINE_STYLE)]
    assert style == [], "\n".join(style)


@pytest.mark.parametrize("page", PAGES)
def test_page_header_names_the_file(page):
    name, sec = page.rsplit(".", 1)
    with open(os.path.join(MAN, page)) as f:
        src = f.read()
    assert re.search(r"^\.Dt %s %s$" % (re.escape(name.upper()), sec), src, re.M), page
    assert re.search(r"^\.Nm %s$" % re.escape(name), src, re.M), page


def test_every_command_has_a_subsection(moonwire_bin):
    secs = sections(render("moonwire.1"))
    synopsis = secs["SYNOPSIS"]
    for cmd in commands(moonwire_bin):
        assert [t for t in secs if cmd in t.split(", ")], "no subsection for %s" % cmd
        assert re.search(r"moonwire %s\b" % cmd, synopsis), "%s missing in SYNOPSIS" % cmd


def test_help_options_are_in_the_commands_subsection(moonwire_bin):
    secs = sections(render("moonwire.1"))
    missing = []
    for cmd in commands(moonwire_bin):
        opts = set(LONG_OPT.findall(help_text(moonwire_bin, cmd, "--help"))) - {"--help"}
        text = "\n".join(v for t, v in secs.items() if cmd in t.split(", "))
        for o in sorted(opts):
            if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), text):
                missing.append("%s %s" % (cmd, o))
    assert missing == [], "not in moonwire(1): " + ", ".join(missing)


def test_help_parsing_finds_the_new_options(moonwire_bin):
    # the parser above really sees the options (no vacuous pass)
    run = set(LONG_OPT.findall(help_text(moonwire_bin, "run", "--help")))
    assert {"--arg", "--write-total", "--json", "--policy", "--kv-scope"} <= run
    for cmd in ("send", "sign"):
        assert "--arg" in LONG_OPT.findall(help_text(moonwire_bin, cmd, "--help")), cmd


def test_source_options_are_in_the_page():
    page = render("moonwire.1")
    found = set()
    runtime = os.path.join(TOP, "runtime", "cli")
    for name in os.listdir(runtime):
        if name.startswith("cmd_") and name.endswith(".c"):
            with open(os.path.join(runtime, name)) as f:
                found |= set(re.findall(r'\{\s*"([a-z][a-z0-9-]*)",\s*(?:no|required|optional)_argument',
                                        f.read()))
    assert {"config", "db", "allowed-signers", "write-total", "arg"} <= found
    missing = [o for o in sorted(found - {"help"})
               if not re.search(r"(?<![\w-])--%s(?![\w-])" % re.escape(o), page)]
    assert missing == [], missing


def test_agent_config_keys_are_in_the_page():
    with open(os.path.join(TOP, "runtime", "agent", "agent_config.c")) as f:
        src = f.read()
    keys = []
    for arr in re.findall(r"_keys\[\]\s*=\s*\{(.*?)\};", src, re.S):
        keys += re.findall(r'"([a-z_0-9]+)"', arr)
    assert "jid" in keys and "durability" in keys and len(keys) >= 20, keys
    page = render("moonwire-agent.conf.5")
    missing = [k for k in keys if not re.search(r"^     %s = " % k, page, re.M)]
    assert missing == [], missing


def test_policy_keywords_and_limits_are_in_the_page():
    with open(os.path.join(TOP, "runtime", "job", "policy.c")) as f:
        src = f.read()
    with open(os.path.join(TOP, "runtime", "job", "limits.c")) as f:
        limits = re.findall(r'^\s*(?:COUNT|SIZE|TIME)\("([a-z_]+)"', f.read(), re.M)
    words = set(re.findall(r'strcmp\((?:k|tok\[0\])\s*,\s*"([a-z]+)"\)', src))
    assert "write_total" in limits and len(limits) >= 10, limits
    assert {"profile", "allow", "interactive", "command", "args", "sleep"} <= words, words
    page = render("moonwire-policy.5")
    missing = [w for w in sorted(words) if not re.search(r"^     %s\b" % w, page, re.M)]
    missing += [l for l in limits if not re.search(r"^     %s\b" % l, page, re.M)]
    assert missing == [], missing


def _completion_opts(cmd):
    p = subprocess.run(["bash", "-c", 'source "$1"; _moonwire_opts "$2"', "-", COMPLETION, cmd],
                       capture_output=True, text=True, check=True)
    return set(p.stdout.split())


def test_completion_offers_every_help_option(moonwire_bin):
    missing = []
    for cmd in commands(moonwire_bin):
        opts = set(LONG_OPT.findall(help_text(moonwire_bin, cmd, "--help")))
        offered = _completion_opts(cmd)
        missing += ["%s %s" % (cmd, o) for o in sorted(opts - offered)]
    assert missing == [], missing


def _complete(*words):
    """COMPREPLY of the completion function for the command line WORDS
    (the last word is the one being completed)."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _moonwire; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    p = subprocess.run(["bash", "-c", script, "-", COMPLETION, "moonwire"] + list(words),
                       capture_output=True, text=True, check=True, cwd=TOP)
    return [l for l in p.stdout.splitlines() if l]


def test_completion_works_in_plain_bash(moonwire_bin):
    assert _complete("ru") == ["run"]
    assert set(_complete("")) >= set(commands(moonwire_bin))
    assert _complete("run", "--write-t") == ["--write-total"]
    assert _complete("send", "--limit", "write") == ["write_total="]
    assert _complete("fleet", "l") == ["list"]
    assert _complete("fleet", "add", "--gr") == ["--group"]
    assert "scripts/hello.lua" in _complete("run", "scripts/he")
    assert _complete("run", "--read", "scrip") == ["scripts"]
