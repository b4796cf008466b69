"""The Debian package: `make deb` (issue 14 item 2; README "Debian package").

Why this exists: a package that installs but runs nothing (a unit pointing
at the wrong path, a missing user), that starts an unconfigured agent, that
loses the administrator's configuration on upgrade or leaves the agent's
keys behind on purge is found by its first user, on a device.  The package
is built once per run by `make deb` (about 30 s on 2 cores: a fresh
compile in build/deb/, then lintian; the whole file takes about a minute),
which must leave `git status` as it was, and checked:

* refusals, in a throwaway clone (cheap, nothing is compiled): a dirty tree
  is refused and named; a changelog version that is not MW_VERSION is
  refused.  The real build uses DEB_ALLOW_DIRTY=1 when the developer's
  tree is dirty, and then must warn;
* contents with dpkg-deb: the exact file list (computed here from the
  repository), owners and modes; the unit (ExecStart=/usr/bin/moonwire,
  every other line as runtime/dist ships it, privileges included);
  conffiles (/etc/moonwire/agent.conf.example only); the metadata
  (name moonwire_VERSION_ARCH.deb, Version = MW_VERSION, Depends computed
  by dh_shlibdeps: libstrophe, libomemo-c, libexpat1, liblua5.4, libseccomp,
  libsqlite3, libssl, and adduser); Build-Depends name the -dev package
  of every pkg-config library in the Makefile's PKGS, and `make deps`
  installs each;
* lintian: no error; every warning is named in README.md's "Debian
  package" section (explained there) -- overrides need a reason in
  debian/moonwire.lintian-overrides;
* the maintainer scripts, really run by dpkg, in a throwaway root: an
  overlay of / (upper layer on a tmpfs) in a private mount namespace
  (`unshare --mount`), chrooted into, with /run an empty tmpfs that holds
  only /run/systemd/system (so the scripts believe systemd runs) and
  logging stand-ins for systemctl and deb-systemd-invoke in /usr/local/bin
  (so nothing reaches the host's systemd).  Whatever of moonwire the host
  has (a developer's machine) is first removed, in the overlay only.
  There, in order:
  - install: user and group moonwire (system, home /var/lib/moonwire,
    nologin), /var/lib/moonwire 0700 moonwire:moonwire, /etc/moonwire
    0750 root:moonwire via dpkg-statoverride, the unit disabled and
    systemd never asked to start or enable it, `systemd-analyze verify`
    accepts the installed unit, `moonwire --version` prints MW_VERSION and
    `moonwire run` runs the packaged hello.lua in its sandbox;
  - reinstall (an upgrade) with the unit enabled by the administrator:
    kept enabled, only try-restart;
  - the administrator's set-up with `moonwire init agent --user moonwire`
    (README, "Guided setup"), which the agent's --check, run as moonwire,
    accepts;
  - remove: the agent is stopped; conffile, the administrator's files
    (agent.conf, policy, allowed_signers, password) and the state
    (identity.db) kept;
  - purge: state, conffile, statoverride and the enablement symlink gone;
    the administrator's files kept;
  - a second install and purge with no files of the administrator's: no
    /etc/moonwire, /var/lib/moonwire, unit or binary left, and nothing
    named moonwire in the overlay's upper layer.  The moonwire user and
    group stay after purge, by design (debian/moonwire.postrm says why).

What is and is not restored: everything dpkg and the maintainer scripts
do (the user, the directories, dpkg's database and log, man-db's cache)
happens in the overlay's upper layer, in memory, and goes with the mount
namespace.  The test checks afterwards that the host's /etc/passwd,
/etc/group, /etc/shadow, /etc/gshadow, /var/lib/dpkg/status and
/var/lib/dpkg/statoverride are byte-for-byte unchanged and that
/etc/moonwire, /var/lib/moonwire, /usr/bin/moonwire,
/lib/systemd/system/moonwire-agent.service and its enablement symlink
exist exactly as before (normally: not at all).  On the host the test
leaves only build/deb/ (the package build, ignored by git) and an empty
directory in pytest's tmp_path (pytest keeps the last few).  It needs root
(CI and `make test` run as root) and overlayfs; it fails, never skips,
when they are missing.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBS = ("libstrophe", "libomemo-c", "libexpat1", "liblua5.4", "libseccomp", "libsqlite3", "libssl")


def clean_env():
    return {k: v for k, v in os.environ.items()
            if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def make(top, *args, timeout=120):
    return subprocess.run(["make", "--no-print-directory", "-C", top] + list(args),
                          capture_output=True, text=True, env=clean_env(), timeout=timeout)


def mw_version_file(top=TOP):
    """The C file under runtime/ that defines MW_VERSION (the CLI's main.c)."""
    for d, _, files in sorted(os.walk(os.path.join(top, "runtime"))):
        for name in sorted(files):
            if name.endswith(".c"):
                with open(os.path.join(d, name)) as f:
                    if re.search(r'^#define MW_VERSION "', f.read(), re.M):
                        return os.path.join(d, name)
    pytest.fail("no #define MW_VERSION under runtime/", pytrace=False)


def mw_version():
    with open(mw_version_file()) as f:
        return re.search(r'^#define MW_VERSION "([^"]+)"', f.read(), re.M).group(1)


def arch():
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True,
                          text=True, check=True).stdout.strip()


def git(top, *args):
    return subprocess.run(["git", "-C", top] + list(args), capture_output=True,
                          text=True, check=True).stdout


def tree_dirty():
    return git(TOP, "status", "--porcelain", "--untracked-files=no").strip() != ""


@pytest.fixture(scope="module")
def deb():
    """Path of the package built by `make deb` from this tree."""
    for tool in ("dpkg-buildpackage", "dh", "lintian"):
        if shutil.which(tool) is None:
            pytest.fail("%s missing (make deps installs it)" % tool, pytrace=False)
    dirty = tree_dirty()
    status = git(TOP, "status", "--porcelain", "--ignored=no")
    args = ["deb"] + (["DEB_ALLOW_DIRTY=1"] if dirty else [])
    p = make(TOP, *args, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    # the build writes nothing git sees (build/ is ignored)
    assert git(TOP, "status", "--porcelain", "--ignored=no") == status
    # a dirty tree is packaged only with a warning that says so
    assert ("WARNING: dirty tree" in p.stderr) == dirty, p.stderr
    path = os.path.join(TOP, "build", "deb", "moonwire_%s_%s.deb" % (mw_version(), arch()))
    assert os.path.isfile(path), p.stdout
    assert make(TOP, "-s", "deb-file").stdout.strip() == os.path.relpath(path, TOP)
    return path


def dpkg_deb(*args):
    p = subprocess.run(["dpkg-deb"] + list(args), capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


# -- refusals (a throwaway clone; nothing is compiled) -----------------------

@pytest.fixture
def clone(tmp_path):
    dst = str(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", TOP, dst], check=True,
                   capture_output=True)
    git(dst, "config", "user.email", "test@example.org")
    git(dst, "config", "user.name", "test")
    # the clone holds HEAD: give it this tree's debian/ and Makefile as they are
    for rel in ("Makefile", "debian"):
        src = os.path.join(TOP, rel)
        if os.path.isdir(src):
            shutil.rmtree(os.path.join(dst, rel), ignore_errors=True)
            shutil.copytree(src, os.path.join(dst, rel))
        else:
            shutil.copy(src, os.path.join(dst, rel))
    git(dst, "add", "-A", "Makefile", "debian")
    git(dst, "commit", "-q", "--allow-empty", "-m", "as in the tree under test")
    return dst


def test_dirty_tree_is_refused(clone):
    with open(os.path.join(clone, "README.md"), "a") as f:
        f.write("\nan uncommitted line\n")
    p = make(clone, "deb")
    assert p.returncode != 0
    assert "refusing to build from a dirty tree" in p.stderr and "README.md" in p.stderr, p.stderr
    assert "DEB_ALLOW_DIRTY=1" in p.stderr
    assert not os.path.exists(os.path.join(clone, "build", "deb"))
    # an untracked file is not dirt (it is never packaged): the refusal names
    # only the tracked change
    open(os.path.join(clone, "notes.txt"), "w").close()
    p = make(clone, "deb")
    assert "notes.txt" not in p.stderr


def test_version_mismatch_is_refused(clone):
    path = os.path.join(clone, os.path.relpath(mw_version_file(), TOP))
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace('#define MW_VERSION "%s"' % mw_version(), '#define MW_VERSION "9.9.9"'))
    git(clone, "commit", "-q", "-am", "version bump without a changelog entry")
    p = make(clone, "deb")
    assert p.returncode != 0
    assert "debian/changelog says %s" % mw_version() in p.stderr and "9.9.9" in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(clone, "build", "deb"))


# -- Build-Depends against the Makefile (no build needed) --------------------

def make_var(name):
    p = subprocess.run(["make", "--no-print-directory", "-s", "-C", TOP, "-f", "Makefile",
                        "-f", "/dev/stdin", "print-var"],
                       input="print-var:\n\t@echo $(%s)\n" % name,
                       capture_output=True, text=True, env=clean_env(), timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def build_depends():
    with open(os.path.join(TOP, "debian/control")) as f:
        text = f.read()
    m = re.search(r"^Build-Depends:(.*?)^\S", text, re.M | re.S)
    return [d.strip().split()[0] for d in m.group(1).split(",") if d.strip()]


def test_build_depends_follow_the_makefile():
    """Every pkg-config library the Makefile links (PKGS) has its -dev
    package in Build-Depends, and `make deps` (DEB_PKGS) installs every
    Build-Depends: a library switched in the Makefile (as libsignal-protocol-c
    was for libomemo-c) must be switched in debian/control too."""
    bdeps = build_depends()
    deb_pkgs = make_var("DEB_PKGS")
    for dep in bdeps:
        if dep.startswith("debhelper-compat"):
            assert "debhelper" in deb_pkgs
        else:
            assert dep in deb_pkgs, "%s (Build-Depends) is not in DEB_PKGS" % dep
    for pc in make_var("PKGS"):
        d = subprocess.run(["pkg-config", "--variable=pcfiledir", pc], capture_output=True,
                           text=True)
        assert d.returncode == 0, "pkg-config %s: not installed (make deps)" % pc
        pcfile = os.path.realpath(os.path.join(d.stdout.strip(), pc + ".pc"))
        owner = subprocess.run(["dpkg", "-S", pcfile], capture_output=True, text=True)
        assert owner.returncode == 0, owner.stderr
        pkg = owner.stdout.split(":")[0]
        assert pkg in bdeps, "%s (pkg-config %s) is not in Build-Depends" % (pkg, pc)


# -- contents and metadata ---------------------------------------------------

def expected_files():
    """{path in the package: mode}, regular files, computed from the repository."""
    files = {
        "usr/bin/moonwire": 0o755,
        "usr/bin/moonwire-zygote": 0o755,
        "lib/systemd/system/moonwire-agent.service": 0o644,
        "etc/moonwire/agent.conf.example": 0o644,
        "usr/share/doc/moonwire/README.md": 0o644,
        "usr/share/doc/moonwire/agent.conf.example": 0o644,
        "usr/share/doc/moonwire/changelog.gz": 0o644,
        "usr/share/doc/moonwire/copyright": 0o644,
        "usr/share/man/man1/moonwire.1.gz": 0o644,
        "usr/share/man/man1/moonwire-zygote.1.gz": 0o644,
        "usr/share/man/man5/moonwire-agent.conf.5.gz": 0o644,
        "usr/share/man/man5/moonwire-policy.5.gz": 0o644,
        "usr/share/bash-completion/completions/moonwire": 0o644,
    }
    for name in os.listdir(os.path.join(TOP, "spec")):
        if name.endswith(".md"):
            files["usr/share/doc/moonwire/spec/" + name] = 0o644
    for name in os.listdir(os.path.join(TOP, "scripts")):
        if name.endswith(".lua"):
            files["usr/share/moonwire/scripts/" + name] = 0o644
    return files


def contents(deb):
    """[(mode string, owner, path)] from dpkg-deb -c."""
    out = []
    for line in dpkg_deb("-c", deb).splitlines():
        f = line.split()
        path = f[5]
        assert path.startswith("./")
        out.append((f[0], f[1], path[2:].rstrip("/")))
    return out


def mode_bits(s):
    bits = 0
    for i, c in enumerate(s[1:10]):
        if c != "-":
            bits |= 1 << (8 - i)
    return bits


def test_file_list_owners_and_modes(deb):
    want = expected_files()
    entries = contents(deb)
    files = {p: m for m, _, p in entries if m[0] == "-"}
    assert sorted(files) == sorted(want), "extra: %s missing: %s" % (
        sorted(set(files) - set(want)), sorted(set(want) - set(files)))
    for path, mode in want.items():
        assert mode_bits(files[path]) == mode, "%s: %s" % (path, files[path])
    for m, owner, path in entries:
        assert owner == "root/root", (path, owner)
        assert m[0] in "-d", (path, m)       # no links, devices, setuid
        if m[0] == "d":
            assert mode_bits(m) == 0o755, (path, m)
        assert "s" not in m and "S" not in m, (path, m)
    # created by postinst, not shipped (so dpkg never resets its owner)
    assert not any(p.startswith("var/") for _, _, p in entries)


def test_metadata(deb):
    assert os.path.basename(deb) == "moonwire_%s_%s.deb" % (mw_version(), arch())
    fields = {}
    for name in ("Package", "Version", "Architecture", "Depends", "Section", "Maintainer"):
        fields[name] = dpkg_deb("-f", deb, name).strip()
    assert fields["Package"] == "moonwire"
    assert fields["Version"] == mw_version()
    assert fields["Architecture"] == arch()
    depends = [d.strip().split()[0] for d in fields["Depends"].split(",")]
    for lib in LIBS:
        assert any(d.startswith(lib) for d in depends), (lib, fields["Depends"])
    assert "adduser" in depends and "libc6" in depends, depends


def control_file(deb, tmp_path, name):
    d = tmp_path / "control"
    if not d.exists():
        dpkg_deb("-e", deb, str(d))
    p = d / name
    return p.read_text() if p.exists() else None


def test_conffiles_and_maintainer_scripts(deb, tmp_path):
    assert control_file(deb, tmp_path, "conffiles").split() == ["/etc/moonwire/agent.conf.example"]
    postinst = control_file(deb, tmp_path, "postinst")
    # never enabled, never started by the package; an upgrade restarts a running one only
    assert "deb-systemd-invoke start" not in postinst
    assert re.search(r"deb-systemd-helper enable", postinst)   # only under was-enabled
    assert "was-enabled" in postinst and "try-restart" in postinst
    assert "adduser --system" in postinst
    assert "deb-systemd-invoke stop moonwire-agent.service" in control_file(deb, tmp_path, "prerm")
    assert "rm -rf /var/lib/moonwire" in control_file(deb, tmp_path, "postrm")


def test_unit(deb, tmp_path):
    root = tmp_path / "x"
    dpkg_deb("-x", deb, str(root))
    unit = (root / "lib/systemd/system/moonwire-agent.service").read_text()
    assert re.search(r"^ExecStart=/usr/bin/moonwire agent -c /etc/moonwire/agent\.conf$",
                     unit, re.M), unit
    with open(os.path.join(TOP, "runtime/dist/moonwire-agent.service")) as f:
        shipped = f.read()
    undo = (unit.replace("/usr/bin/moonwire", "/usr/local/bin/moonwire")
            .replace("/usr/share/doc/moonwire", "/usr/local/share/doc/moonwire")
            .replace("Documentation=man:moonwire(1) man:moonwire-agent.conf(5) ", "Documentation="))
    assert undo == shipped          # the privileges exactly as spec/sandbox.md ships them
    # the Markdown the unit and README point at is not compressed away
    doc = re.search(r"^Documentation=.* file://(\S+)$", unit, re.M).group(1)
    assert (root / doc.lstrip("/")).is_file(), doc
    with open(os.path.join(TOP, "runtime/dist/agent.conf.example"), "rb") as f:
        assert (root / "etc/moonwire/agent.conf.example").read_bytes() == f.read()


# -- lintian -----------------------------------------------------------------

def test_lintian(deb):
    changes = deb[:-len(".deb")] + ".changes"
    p = subprocess.run(["lintian", "--fail-on", "error", "-I", "-E", "--pedantic",
                        "--show-overrides", changes],
                       capture_output=True, text=True, timeout=300)
    print(p.stdout)
    tags = re.findall(r"^([EWIPXO]): moonwire\S*: (\S+)", p.stdout, re.M)
    assert p.returncode == 0 and not [t for k, t in tags if k == "E"], p.stdout + p.stderr
    with open(os.path.join(TOP, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("## Debian package"):]
    section = section[:section.index("\n## ", 5)]
    unexplained = sorted({t for k, t in tags if k == "W" and t not in section})
    assert unexplained == [], "lintian warnings not explained in README.md: %s" % unexplained


# -- install, upgrade, remove, purge in a throwaway root ---------------------

SCRIPT = r'''
set -eu
T=$1; DEB=$2; PUB=$3
mount -t tmpfs -o mode=0755 tmpfs "$T"
mkdir "$T/upper" "$T/work" "$T/root"
mount -t overlay overlay -o lowerdir=/,upperdir="$T/upper",workdir="$T/work" "$T/root"
R=$T/root
mount --rbind /dev "$R/dev"; mount --rbind /proc "$R/proc"; mount --rbind /sys "$R/sys"
mount -t tmpfs -o mode=0755 tmpfs "$R/run"; mkdir -p "$R/run/systemd/system"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp"
cp "$DEB" "$R/tmp/moonwire.deb"; cp "$PUB" "$R/tmp/alice.pub"
for t in systemctl deb-systemd-invoke; do
  printf '#!/bin/sh\necho "%s $*" >> /tmp/systemd-calls\n' "$t" > "$R/usr/local/bin/$t"
  chmod 0755 "$R/usr/local/bin/$t"
done
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
in_root() { chroot "$R" "$@"; }
# Start from a machine without moonwire even where the host has some of
# it (a developer's): in the overlay only, purge the package, delete the
# user and group, remove the directories.
if in_root dpkg-query -W moonwire >/dev/null 2>&1; then in_root dpkg --purge moonwire >/dev/null; fi
if in_root getent passwd moonwire >/dev/null; then in_root userdel moonwire; fi
if in_root getent group moonwire >/dev/null; then in_root groupdel moonwire; fi
rm -rf "$R/etc/moonwire" "$R/var/lib/moonwire" "$R/tmp/systemd-calls"
rm -f "$R/etc/systemd/system/multi-user.target.wants/moonwire-agent.service"
state() {
  echo "== $1"
  echo "passwd=$(in_root getent passwd moonwire || true)"
  echo "group=$(in_root getent group moonwire || true)"
  for d in /var/lib/moonwire /etc/moonwire; do
    if [ -e "$R$d" ]; then echo "stat $d=$(in_root stat -c '%U:%G %a' $d)"; else echo "stat $d=absent"; fi
  done
  echo "etc=$(ls -A "$R/etc/moonwire" 2>/dev/null | tr '\n' ' ')"
  echo "varlib=$(ls -A "$R/var/lib/moonwire" 2>/dev/null | tr '\n' ' ')"
  echo "unit=$(test -e "$R/lib/systemd/system/moonwire-agent.service" && echo present || echo absent)"
  echo "binary=$(test -e "$R/usr/bin/moonwire" && echo present || echo absent)"
  echo "enabled=$(in_root /bin/systemctl --root=/ is-enabled moonwire-agent.service 2>&1 || true)"
  echo "wants=$(ls "$R/etc/systemd/system/multi-user.target.wants" 2>/dev/null | grep moonwire || true)"
  echo "statoverride=$(in_root dpkg-statoverride --list /etc/moonwire || true)"
  echo "status=$(in_root dpkg-query -W -f='${db:Status-Status}' moonwire 2>/dev/null || echo not-installed)"
  echo "conffiles=$(in_root dpkg-query -W -f='${Conffiles}' moonwire 2>/dev/null | awk '{print $1}' | tr '\n' ' ')"
  echo "calls=$(cat "$R/tmp/systemd-calls" 2>/dev/null | tr '\n' ';')"
  rm -f "$R/tmp/systemd-calls"
}
in_root dpkg -i /tmp/moonwire.deb
state installed
echo "version=$(in_root moonwire --version)"
echo "run=$(in_root moonwire run --json /usr/share/moonwire/scripts/hello.lua </dev/null | tr -d '\n')"
rc=0; v=$(in_root systemd-analyze verify /lib/systemd/system/moonwire-agent.service 2>&1) || rc=$?
echo "verify=rc=$rc $(echo "$v" | tr '\n' ';')"
in_root /bin/systemctl --root=/ enable moonwire-agent.service 2>/dev/null
in_root dpkg -i /tmp/moonwire.deb
state upgraded-enabled
# the administrator's set-up, as README's "Guided setup" does it
echo router7-password | in_root moonwire init agent --jid router7@example.org --user moonwire \
  --allowed-signer /tmp/alice.pub --principal alice@ops --operator alice@example.org \
  --password-file - >/dev/null
echo "check=$(in_root runuser -u moonwire -- moonwire agent -c /etc/moonwire/agent.conf --check 2>&1)"
in_root dpkg -r moonwire
state removed
in_root dpkg --purge moonwire
state purged
rm "$R/etc/moonwire/agent.conf" "$R/etc/moonwire/policy" "$R/etc/moonwire/allowed_signers" \
  "$R/etc/moonwire/password"
rmdir "$R/etc/moonwire"
in_root dpkg -i /tmp/moonwire.deb
in_root dpkg --purge moonwire
state purged-again
echo "== upper"
# (not /var/cache/man: the formatted pages systemd-analyze verify's
# man: checks leave, not the package's)
cd "$T/upper" && find . -name '*moonwire*' -not -path './var/cache/man/*' | sort
'''


def host_state():
    h = {}
    for path in ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow",
                 "/var/lib/dpkg/status", "/var/lib/dpkg/statoverride"):
        try:
            with open(path, "rb") as f:
                h[path] = hashlib.sha256(f.read()).hexdigest()
        except FileNotFoundError:
            h[path] = None
    for path in ("/etc/moonwire", "/var/lib/moonwire", "/lib/systemd/system/moonwire-agent.service",
                 "/usr/bin/moonwire", "/etc/systemd/system/multi-user.target.wants/moonwire-agent.service"):
        h[path] = os.path.lexists(path)
    return h


def parse(out):
    states, cur = {}, None
    for line in out.splitlines():
        if line.startswith("== "):
            cur = states.setdefault(line[3:], {} if line[3:] != "upper" else [])
        elif cur is not None and isinstance(cur, list):
            cur.append(line)
        elif cur is not None and "=" in line:
            k, v = line.split("=", 1)
            cur[k] = v.strip()
    return states


def test_install_upgrade_remove_purge_in_a_throwaway_root(deb, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("needs root (a private mount namespace, an overlay of /)", pytrace=False)
    before = host_state()
    work = tmp_path / "ovl"
    work.mkdir()
    key = tmp_path / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@ops",
                    "-f", str(key)], check=True, capture_output=True)
    p = subprocess.run(["unshare", "--mount", "--propagation", "private",
                        "bash", "-c", SCRIPT, "-", str(work), deb, str(key) + ".pub"],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    print(p.stdout)
    assert p.returncode == 0, p.stdout + p.stderr
    st = parse(p.stdout)

    # the host is as it was
    assert host_state() == before
    assert os.listdir(work) == []

    ins = st["installed"]
    pw = ins["passwd"].split(":")
    assert pw[0] == "moonwire" and pw[5] == "/var/lib/moonwire" and pw[6] == "/usr/sbin/nologin", pw
    assert int(pw[2]) < 1000, pw                      # a system user
    assert ins["group"].startswith("moonwire:"), ins
    assert ins["stat /var/lib/moonwire"] == "moonwire:moonwire 700"
    assert ins["stat /etc/moonwire"] == "root:moonwire 750"
    assert ins["statoverride"] == "root moonwire 750 /etc/moonwire"
    assert ins["etc"] == "agent.conf.example"
    assert ins["unit"] == "present" and ins["binary"] == "present"
    assert ins["enabled"] == "disabled" and ins["wants"] == ""
    assert ins["status"] == "installed"
    assert ins["conffiles"] == "/etc/moonwire/agent.conf.example"
    # systemd (believed running) is asked to reload, never to start or enable
    calls = [c for c in ins["calls"].split(";") if c]
    assert calls and all(c == "systemctl --system daemon-reload" for c in calls), calls
    # systemd accepts the installed unit: ExecStart= exists, man: pages resolve
    assert ins["verify"].rstrip(";").strip() == "rc=0", ins["verify"]
    # the packaged binary (Debian's build flags, stripped) runs a job in its sandbox
    assert json.loads(ins["run"])["status"] == "ok", ins["run"]
    assert ins["version"].startswith("moonwire %s " % mw_version()), ins["version"]

    up = st["upgraded-enabled"]
    assert up["enabled"] == "enabled" and up["wants"] == "moonwire-agent.service", up
    calls = [c for c in up["calls"].split(";") if c]
    assert "deb-systemd-invoke try-restart moonwire-agent.service" in calls, calls
    assert not any(" start" in c for c in calls), calls

    # `moonwire init agent --user moonwire` sets up an agent on the package's
    # user and directories, and the agent's own --check accepts it
    assert "configuration ok" in up["check"], up["check"]

    rm = st["removed"]
    assert rm["binary"] == "absent" and rm["unit"] == "absent"
    assert rm["status"] == "config-files"
    assert rm["etc"].split() == ["agent.conf", "agent.conf.example", "allowed_signers",
                                 "password", "policy"], rm["etc"]
    assert rm["varlib"] == "identity.db"          # the agent's identity survives a remove
    assert rm["stat /etc/moonwire"] == "root:moonwire 750"
    assert "deb-systemd-invoke stop moonwire-agent.service" in rm["calls"].split(";"), rm

    pg = st["purged"]
    assert pg["status"] == "not-installed"
    assert pg["stat /var/lib/moonwire"] == "absent"
    # the administrator's files are not dpkg's
    assert pg["etc"].split() == ["agent.conf", "allowed_signers", "password", "policy"], pg["etc"]
    assert pg["statoverride"] == ""
    assert pg["wants"] == ""                      # the administrator's enable is undone
    assert pg["passwd"].startswith("moonwire:")   # kept by design (debian/moonwire.postrm)

    again = st["purged-again"]
    assert again["stat /etc/moonwire"] == "absent" and again["stat /var/lib/moonwire"] == "absent"
    assert again["unit"] == "absent" and again["binary"] == "absent" and again["wants"] == ""
    assert again["status"] == "not-installed"
    # nothing named moonwire is left in the throwaway root but dpkg's forgotten nothing
    assert st["upper"] == [], st["upper"]
