"""`make install` and `make uninstall` (issue 14).

Why this exists: an install target that writes the wrong set of files,
with the wrong modes, a unit pointing at a binary that is not there, or an
uninstall that leaves files behind (or removes someone else's) is found by
the first packager, not by us.  Each test installs into a temporary
DESTDIR with the binary under test (MOONWIRE_BIN=$MOONWIRE, so the ASan
build is installed when that is what is tested) and checks:

* the exact file list (computed here from the repository, independently
  of the Makefile, and equal to `make installed-files`), every mode, and
  that the copies equal their sources;
* the generated systemd unit: ExecStart= and Documentation= point into
  PREFIX, nothing else differs from runtime/dist/moonwire-agent.service,
  and `systemd-analyze verify` accepts it with the installed man pages;
* that the installed binary runs (`--help`) and the installed man pages
  and completion are usable where they were put;
* that nothing is written outside DESTDIR, and that `make uninstall`
  leaves no file in DESTDIR -- but keeps files it did not install.
"""

import json
import os
import re
import shutil
import stat
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make(*args, check=True):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    p = subprocess.run(["make", "--no-print-directory", "-C", TOP] + list(args),
                       capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def expected(prefix):
    """{installed path: (mode, source or None)} as the issue asks for it."""
    p = prefix.lstrip("/")
    files = {
        os.path.join(p, "bin/moonwire"): (0o755, None),
        os.path.join(p, "bin/moonwire-zygote"): (0o755, None),
        os.path.join(p, "lib/systemd/system/moonwire-agent.service"): (0o644, None),
        os.path.join(p, "share/doc/moonwire/README.md"): (0o644, "README.md"),
        os.path.join(p, "share/doc/moonwire/agent.conf.example"):
            (0o644, "runtime/dist/agent.conf.example"),
        os.path.join(p, "share/man/man1/moonwire.1"): (0o644, "man/moonwire.1"),
        os.path.join(p, "share/man/man1/moonwire-zygote.1"): (0o644, "man/moonwire-zygote.1"),
        os.path.join(p, "share/man/man5/moonwire-agent.conf.5"): (0o644, "man/moonwire-agent.conf.5"),
        os.path.join(p, "share/man/man5/moonwire-policy.5"): (0o644, "man/moonwire-policy.5"),
        os.path.join(p, "share/bash-completion/completions/moonwire"):
            (0o644, "runtime/dist/moonwire.bash"),
    }
    for name in os.listdir(os.path.join(TOP, "spec")):
        if name.endswith(".md"):
            files[os.path.join(p, "share/doc/moonwire/spec", name)] = (0o644, "spec/" + name)
    for name in os.listdir(os.path.join(TOP, "scripts")):
        if name.endswith(".lua"):
            files[os.path.join(p, "share/moonwire/scripts", name)] = (0o644, "scripts/" + name)
    return files


def tree(root):
    """(files, directories) under root, as paths relative to it."""
    files, dirs = [], []
    for top, ds, fs in os.walk(root):
        rel = os.path.relpath(top, root)
        dirs += [os.path.normpath(os.path.join(rel, d)) for d in ds]
        files += [os.path.normpath(os.path.join(rel, f)) for f in fs]
    return sorted(files), sorted(dirs)


@pytest.fixture(params=["/usr/local", "/usr", "/opt/moonwire-test-prefix"])
def installed(request, tmp_path, moonwire_bin):
    prefix = request.param
    dest = tmp_path / "dest"
    dest.mkdir()
    make("install", "DESTDIR=%s" % dest, "PREFIX=%s" % prefix, "MOONWIRE_BIN=%s" % moonwire_bin)
    return prefix, dest


def test_file_list_and_modes(installed, moonwire_bin):
    prefix, dest = installed
    want = expected(prefix)
    files, dirs = tree(dest)
    assert files == sorted(want), "extra: %s missing: %s" % (
        sorted(set(files) - set(want)), sorted(set(want) - set(files)))
    for rel, (mode, src) in want.items():
        st = os.lstat(dest / rel)
        assert stat.S_ISREG(st.st_mode), rel
        assert stat.S_IMODE(st.st_mode) == mode, "%s: %o" % (rel, stat.S_IMODE(st.st_mode))
        if src is not None:
            with open(dest / rel, "rb") as a, open(os.path.join(TOP, src), "rb") as b:
                assert a.read() == b.read(), rel
    with open(dest / prefix.lstrip("/") / "bin/moonwire", "rb") as a, open(moonwire_bin, "rb") as b:
        assert a.read() == b.read()
    zygote = os.path.join(os.path.dirname(moonwire_bin), "moonwire-zygote")
    with open(dest / prefix.lstrip("/") / "bin/moonwire-zygote", "rb") as a, open(zygote, "rb") as b:
        assert a.read() == b.read()
    for d in dirs:
        assert stat.S_IMODE(os.stat(dest / d).st_mode) & 0o755 == 0o755, d
    # the Makefile's own list (what uninstall removes) is the same set
    listed = make("-s", "installed-files", "PREFIX=%s" % prefix).stdout.split()
    assert sorted(l.lstrip("/") for l in listed) == sorted(want)


def test_nothing_written_outside_destdir(installed):
    prefix, dest = installed
    if prefix.startswith("/opt/"):
        assert not os.path.exists(prefix)


def test_installed_binary_runs(installed):
    prefix, dest = installed
    exe = str(dest / prefix.lstrip("/") / "bin/moonwire")
    p = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "usage: moonwire COMMAND" in p.stdout, p.stdout + p.stderr
    p = subprocess.run([exe, "run", "--json", str(dest / prefix.lstrip("/") /
                                                 "share/moonwire/scripts/hello.lua")],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and json.loads(p.stdout)["status"] == "ok", p.stdout + p.stderr
    # the supervisor found the installed moonwire-zygote (else it says so)
    assert "moonwire-zygote" not in p.stderr, p.stderr


def test_unit_points_into_prefix(installed, tmp_path):
    prefix, dest = installed
    path = dest / prefix.lstrip("/") / "lib/systemd/system/moonwire-agent.service"
    unit = path.read_text()
    with open(os.path.join(TOP, "runtime/dist/moonwire-agent.service")) as f:
        shipped = f.read()
    exe = os.path.join(prefix, "bin/moonwire")
    assert re.search(r"^ExecStart=%s agent -c /etc/moonwire/agent\.conf$" % re.escape(exe),
                     unit, re.M), unit
    doc = "file://%s/share/doc/moonwire/spec/agent.md" % prefix
    assert re.search(r"^Documentation=man:moonwire\(1\) man:moonwire-agent\.conf\(5\) %s$"
                     % re.escape(doc), unit, re.M), unit
    # apart from those paths, the unit is the shipped one (its privileges included)
    undo = (unit.replace(exe, "/usr/local/bin/moonwire")
            .replace("%s/share/doc/moonwire" % prefix, "/usr/local/share/doc/moonwire")
            .replace("Documentation=man:moonwire(1) man:moonwire-agent.conf(5) ", "Documentation="))
    assert undo == shipped
    # systemd accepts it; its man: links resolve to the installed pages
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing (make deps installs systemd)", pytrace=False)
    check = tmp_path / "moonwire-agent.service"
    check.write_text(unit.replace("ExecStart=" + exe,
                                  "ExecStart=" + str(dest / prefix.lstrip("/") / "bin/moonwire")))
    env = dict(os.environ, MANPATH=str(dest / prefix.lstrip("/") / "share/man"))
    p = subprocess.run(["systemd-analyze", "verify", str(check)], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    problems = [l for l in p.stdout.splitlines() if l.strip() and "file:///" not in l]
    assert p.returncode == 0 and problems == [], p.stdout


def test_installed_man_pages_and_completion(installed):
    prefix, dest = installed
    root = dest / prefix.lstrip("/")
    env = dict(os.environ, MANPATH=str(root / "share/man"))
    for page, sec in (("moonwire", "1"), ("moonwire-agent.conf", "5"), ("moonwire-policy", "5")):
        p = subprocess.run(["man", "-w", sec, page], env=env, capture_output=True, text=True)
        assert p.returncode == 0 and p.stdout.strip() == str(
            root / "share/man" / ("man" + sec) / ("%s.%s" % (page, sec))), p.stdout + p.stderr
    comp = root / "share/bash-completion/completions/moonwire"
    p = subprocess.run(["bash", "-c", 'source "$1" && complete -p moonwire', "-", str(comp)],
                       capture_output=True, text=True)
    assert p.returncode == 0 and "-F _moonwire" in p.stdout, p.stdout + p.stderr


def test_uninstall_leaves_no_file(installed):
    prefix, dest = installed
    make("uninstall", "DESTDIR=%s" % dest, "PREFIX=%s" % prefix)
    files, dirs = tree(dest)
    assert files == []
    # moonwire's own directories are gone; shared ones (bin, share/man/man1) may stay
    assert not any("moonwire" in d.split(os.sep) for d in dirs), dirs
    # a second uninstall is harmless
    make("uninstall", "DESTDIR=%s" % dest, "PREFIX=%s" % prefix)


def test_uninstall_keeps_what_it_did_not_install(installed):
    prefix, dest = installed
    root = dest / prefix.lstrip("/")
    mine = [root / "bin/other-tool", root / "share/moonwire/scripts/my-own.lua",
            root / "share/man/man1/other.1"]
    for f in mine:
        f.write_text("not moonwire's\n")
    make("uninstall", "DESTDIR=%s" % dest, "PREFIX=%s" % prefix)
    files, _ = tree(dest)
    assert files == sorted(os.path.relpath(f, dest) for f in mine)


def test_install_overwrites_an_older_install(installed, moonwire_bin):
    # installing again (an upgrade) succeeds and leaves the same tree
    prefix, dest = installed
    before = tree(dest)
    make("install", "DESTDIR=%s" % dest, "PREFIX=%s" % prefix, "MOONWIRE_BIN=%s" % moonwire_bin)
    assert tree(dest) == before
