#!/usr/bin/python3
"""Run pytest suites under the credentials the shipped systemd unit gives
the agent (issue 10: every other suite runs as root, which hides
permission bugs).

Why this exists: a root supervisor can signal any worker and a root-run
command cannot show that it kept capabilities it should not have.  The
shipped unit (runtime/dist/moonwire-agent.service) runs the agent as a
system user with a few ambient capabilities, a reduced bounding set and
NoNewPrivileges.  This script reproduces exactly that without systemd:

  * it PARSES AmbientCapabilities=, CapabilityBoundingSet= and
    NoNewPrivileges= from the unit (the unit is the source of truth: what
    is tested is what ships) and builds the setpriv(1) line from them:
      setpriv --reuid=U --regid=G --clear-groups --inh-caps=-all,+... \
        --ambient-caps=-all,+... --bounding-set=-all,+... --no-new-privs
  * it creates the system user `moonwire-test` when missing (a real user:
    ssh-keygen and prosodyctl want a passwd entry);
  * it copies the binary, tests/, scripts/, spec/ and runtime/dist into a
    fresh world-traversable directory under /tmp (the checkout may live in
    /root, which the user cannot read), gives the user its own HOME and
    TMPDIR there, and runs `python3 -m pytest` on the suites as that user
    with MOONWIRE pointing at the copied binary and MW_AS_DEPLOYED=1;
  * it removes the directory afterwards and exits with pytest's status.

Usage (as root; `make deployed` does this):
  tests/lib/as-deployed.py --moonwire build/moonwire [--unit FILE]
      [--user NAME] [--keep] [--timeout SECONDS] [SUITE ...] [-- PYTEST_ARGS]
  --print-setpriv prints the setpriv prefix built from the unit and exits.
  --ensure-user creates the user when missing and exits (make test does
  this before its lanes start, so no suite sees /etc/passwd change).
SUITE paths are relative to the repository (default: DEFAULT_SUITES).
"""

import argparse
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(REPO, "runtime", "dist", "moonwire-agent.service")
USER = "moonwire-test"
DEFAULT_SUITES = ["tests/test_deployed.py", "tests/test_hostile.py", "tests/test_scripts.py",
                  "tests/e2e"]
# What the suites read besides the binary (copied read-only for the user).
COPY = ["tests", "scripts", "spec", "runtime/dist", "README.md", "man"]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class UnitError(ValueError):
    pass


def _bool(value):
    v = value.strip().lower()
    if v in ("1", "yes", "true", "on"):
        return True
    if v in ("0", "no", "false", "off"):
        return False
    raise UnitError("not a boolean: %r" % value)


def parse_unit(path):
    """{'ambient': [...], 'bounding': [...] or None, 'nnp': bool} from the
    [Service] section, with systemd's rules for these settings: repeated
    assignments add up, an empty assignment resets, a leading '~' inverts
    (not supported here: refused so the harness never tests a guess)."""
    settings = {"AmbientCapabilities": None, "CapabilityBoundingSet": None,
                "NoNewPrivileges": "no"}
    section = None
    with open(path) as f:
        lines = f.read().replace("\\\n", " ").splitlines()
    for line in lines:
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key not in settings:
            continue
        if key == "NoNewPrivileges":
            settings[key] = value
            continue
        if value == "":
            settings[key] = []
            continue
        if value.startswith("~"):
            raise UnitError("%s: %s=~... (inverted list) is not supported by the harness"
                            % (path, key))
        settings[key] = (settings[key] or []) + value.split()
    caps = {}
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        names = settings[key]
        if names is None:
            caps[key] = None
            continue
        out = []
        for n in names:
            if not n.upper().startswith("CAP_"):
                raise UnitError("%s: %s: not a capability name: %r" % (path, key, n))
            c = n[4:].lower()
            if c not in out:
                out.append(c)
        caps[key] = out
    return {"ambient": caps["AmbientCapabilities"] or [],
            "bounding": caps["CapabilityBoundingSet"],
            "nnp": _bool(settings["NoNewPrivileges"])}


def setpriv_prefix(unit, uid, gid):
    """The setpriv command line that gives a process the unit's credentials."""
    amb = "".join(",+" + c for c in unit["ambient"])
    cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups",
           "--inh-caps=-all" + amb, "--ambient-caps=-all" + amb]
    if unit["bounding"] is not None:
        cmd.append("--bounding-set=-all" + "".join(",+" + c for c in unit["bounding"]))
    if unit["nnp"]:
        cmd.append("--no-new-privs")
    return cmd


def ensure_user(name):
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    r = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", name],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        try:                      # a concurrent run created it meanwhile
            return pwd.getpwnam(name)
        except KeyError:
            raise SystemExit("as-deployed: useradd %s failed: %s" % (name, r.stdout))
    print("as-deployed: created system user %s" % name, flush=True)
    return pwd.getpwnam(name)


def _copy_readonly(src, dst):
    """Copy a tree, every file and directory readable by everyone, owned
    by root (the user must not be able to change what is tested)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    if os.path.isdir(src):
        shutil.copytree(src, dst, symlinks=True, ignore=ignore)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
    for top, dirs, files in os.walk(dst):
        os.chmod(top, 0o755)
        for n in files:
            p = os.path.join(top, n)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if os.access(p, os.X_OK) else 0o644)


def _run_token_pids(token):
    """Processes that still carry this run's token in their environment."""
    pids = []
    needle = ("MW_AS_DEPLOYED_RUN=" + token).encode()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/environ" % d, "rb") as f:
                if needle in f.read().split(b"\0"):
                    pids.append(int(d))
        except OSError:
            pass
    return pids


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description="run pytest suites as the shipped unit would")
    ap.add_argument("--moonwire", default=os.path.join(REPO, "build", "moonwire"))
    ap.add_argument("--unit", default=UNIT)
    ap.add_argument("--user", default=USER)
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--timeout", type=float, default=1200.0,
                    help="seconds before the whole pytest run is killed (default 1200)")
    ap.add_argument("--print-setpriv", action="store_true")
    ap.add_argument("--ensure-user", action="store_true")
    ap.add_argument("suites", nargs="*")
    args = ap.parse_args(argv)

    unit = parse_unit(args.unit)
    if args.print_setpriv:
        print(" ".join(shlex.quote(a) for a in setpriv_prefix(unit, 0, 0)))
        return 0
    if os.geteuid() != 0:
        print("as-deployed: must run as root (it creates a user and drops to it)",
              file=sys.stderr)
        return 2
    if args.ensure_user:
        ensure_user(args.user)
        return 0
    if not (os.path.isfile(args.moonwire) and os.access(args.moonwire, os.X_OK)):
        print("as-deployed: no executable %s (make all first)" % args.moonwire, file=sys.stderr)
        return 2
    suites = args.suites or DEFAULT_SUITES
    pw = ensure_user(args.user)
    uid, gid = pw.pw_uid, pw.pw_gid
    prefix = setpriv_prefix(unit, uid, gid)

    top = tempfile.mkdtemp(prefix="mw-deployed-", dir="/tmp")
    os.chmod(top, 0o755)
    token = os.path.basename(top)
    rc = 1
    t0 = time.monotonic()
    try:
        repo = os.path.join(top, "repo")
        for rel in COPY:
            src = os.path.join(REPO, rel)
            if os.path.exists(src):
                _copy_readonly(src, os.path.join(repo, rel))
        exe = os.path.join(repo, "build", os.path.basename(args.moonwire))
        _copy_readonly(os.path.abspath(args.moonwire), exe)
        # the supervisor finds the zygote next to the binary
        zyg = os.path.join(os.path.dirname(os.path.abspath(args.moonwire)), "moonwire-zygote")
        if os.path.exists(zyg):
            _copy_readonly(zyg, os.path.join(repo, "build", "moonwire-zygote"))
        for rel in ("", "build"):
            os.chmod(os.path.join(repo, rel), 0o755)
        # The writable parts: the user's HOME and TMPDIR.
        home = os.path.join(top, "home")
        tmp = os.path.join(top, "tmp")
        for d in (home, tmp):
            os.mkdir(d, 0o700)
            os.chown(d, uid, gid)
        env = {
            "PATH": PATH, "LANG": "C.UTF-8", "HOME": home, "TMPDIR": tmp,
            "USER": args.user, "LOGNAME": args.user,
            "MOONWIRE": exe, "MW_AS_DEPLOYED": "1", "MW_AS_DEPLOYED_RUN": token,
            "PYTHONDONTWRITEBYTECODE": "1",
            # the unit's credentials, for tests that compare against them
            "MW_DEPLOYED_AMBIENT": ",".join(unit["ambient"]),
            "MW_DEPLOYED_BOUNDING": ",".join(unit["bounding"] or []),
            "MW_DEPLOYED_NNP": "1" if unit["nnp"] else "0",
        }
        for k in ("MW_CRASH_JOBS", "MW_CRASH_KILLS", "MW_FLOOD_MSGS"):
            if k in os.environ:
                env[k] = os.environ[k]
        cmd = prefix + [args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--basetemp", os.path.join(tmp, "pytest")] + suites + extra
        print("as-deployed: user %s (uid %d, gid %d), unit %s" % (args.user, uid, gid,
                                                                   os.path.relpath(args.unit)),
              flush=True)
        print("as-deployed: in %s\nas-deployed: %s" % (
            repo, " ".join(shlex.quote(a) for a in cmd)), flush=True)
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print("as-deployed: pytest did not finish within %.0f s: killed" % args.timeout,
                  flush=True)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            rc = 124
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        left = _run_token_pids(token)
        if left:
            print("as-deployed: processes of this run still alive after pytest: %s" % left,
                  flush=True)
            for pid in left:
                try:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        print("  %d: %s" % (pid, f.read().replace(b"\0", b" ").decode(
                            errors="replace")), flush=True)
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    finally:
        if args.keep:
            print("as-deployed: kept %s" % top)
        else:
            shutil.rmtree(top, ignore_errors=True)
    print("as-deployed: pytest exit status %d after %.0f s" % (rc, time.monotonic() - t0),
          flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
