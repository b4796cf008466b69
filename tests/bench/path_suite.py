#!/usr/bin/python3
"""The whole path of a job through a real XMPP server (issues 5 and 13), for run.py.

run_path() builds tests/bench/path_bench.c, starts a private server on
loopback configured for the bench -- Prosody (BENCH_PROSODY below) or
ejabberd (tests/lib/ejabberd.py: Debian's ejabberd, c2s shaper `none` for
every account, so the bench accounts are not throttled) -- a moonwire
deployment (tests/lib/agentkit.py: 4 operators for the load, a fresh one
for the fan-out's first contact, 50 agents), and measures through it:

  * latency of `return 1+1`, one job in flight, established sessions;
  * jobs/s with 1, 8 and 32 in flight (1, 4 and 4 operators);
  * agent VmRSS sampled during the 8-in-flight run;
  * fan-out of one job to 50 agents: first contact, then established;
  * per-stage medians: the agent's `reply-sent` stages joined by job id
    with the client's sign/encrypt/decrypt, and the rest (server + network);
  * the floor: plain request/reply between two libstrophe clients
    (path_bench echo / floor) through the same server;
  * the incumbent: sshd on 127.0.0.1 running lua5.4, fresh connection each
    time and multiplexed over a ControlMaster (timed by sandbox_bench spawn),
    once per bench run (with_ssh).

Server CPU is that of the server's whole process tree (ejabberd runs as
ejabberdctl -> su -> beam.smp).  compare_rows() puts the figures of the
two servers side by side.

Returns (rows, raw) like run.py's other parts; never raises for a bad
figure, only CannotRun-style exceptions when nothing could run.
"""
import os
import resource
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

from prosody import Prosody  # noqa: E402
from agentkit import Kit  # noqa: E402
from mwbinary import interpose_ldflags  # noqa: E402

PATH_PKGS = ["libstrophe", "libomemo-c", "lua5.4", "libseccomp", "openssl",
             "sqlite3", "libcjson", "expat"]
TRIVIAL = "return 1+1"

# The bench server: what tests/lib/prosody.py always does (loopback only,
# no TLS, internal storage, s2s/HTTP off, no MAM, no carbons, offline
# storage on, `limits = { }`), plus:
#   * stream management on (smacks): the agent runs with it in production;
#   * log level "info" (debug logs every stanza);
#   * network_settings = { nagle = false }: Prosody sets TCP_NODELAY on its
#     c2s sockets, as the clients do;
#   * admin_shell (the admin socket only), so the bench can ask the running
#     server which modules are loaded: mod_limits must not be.
BENCH_PROSODY = dict(smacks=True, log_level="info", extra_modules=["admin_shell"],
                     extra_config="network_settings = { nagle = false }")

# Issue 13 replaced issue 5's absolute e2e and ssh targets by ratios to
# what the same server can do at best (the OMEMO-shaped floor: the
# elements and sizes of a job's stanzas, no crypto, no sandbox).
TARGETS = {
    "e2e_p99_us": 5000.0,
    "vs_omemo_floor": 2.0,    # moonwire p50 / OMEMO-shaped floor p50 <= 2
    "vs_ssh_mux": 5.0,        # ssh multiplexed / moonwire >= 5
    "jobs_vs_omemo_floor_8": 0.5,   # jobs/s / OMEMO-shaped floor msgs/s, 8 in flight
    "agent_rss_mib": 16.0,
    "fanout_established_us": 1e6,
}


class PathError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def pkg_config(flag):
    out = subprocess.run(["pkg-config", flag] + PATH_PKGS, check=True,
                         capture_output=True, text=True).stdout
    return shlex.split(out)


def build_path_bench(build_dir):
    libs = [os.path.join(build_dir, f"lib{c}.a") for c in ("runtime", "omemo", "sandbox", "wire")]
    for lib in libs:
        if not os.path.isfile(lib):
            raise PathError(f"{lib} is missing: run `make all` first")
    out_dir = os.path.join(build_dir, "bench")
    os.makedirs(out_dir, exist_ok=True)
    exe = os.path.join(out_dir, "path_bench")
    cc = os.environ.get("CC") or "cc"
    cmd = ([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-I" + ROOT] + pkg_config("--cflags") +
           ["-o", exe, os.path.join(HERE, "path_bench.c")] + libs + pkg_config("--libs") +
           ["-lm"] + interpose_ldflags())
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise PathError("compiling path_bench failed:\n" + " ".join(cmd) + "\n" +
                        r.stdout + r.stderr)
    return exe


def run_json(cmd, timeout):
    """(objects, stderr, rc) of a command printing JSON lines."""
    import json
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        out, err, rc = r.stdout, r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, rc = f"timed out after {timeout}s", -1
    objs = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                objs.append(json.loads(line))
            except ValueError:
                pass
    return objs, err, rc


def find(objs, bench, **kw):
    for o in objs:
        if o.get("bench") == bench and all(o.get(k) == v for k, v in kw.items()):
            return o
    return None


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


class RssSampler(threading.Thread):
    """Peak VmRSS (KiB) of pid, and of its process tree, sampled every 10 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.tree_peak = 0
        self.samples = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            v = proc_status(self.pid, "VmRSS")
            if v is not None:
                self.peak = max(self.peak, v)
                self.samples += 1
                tree, todo = v, children(self.pid)
                while todo:
                    c = todo.pop()
                    tree += proc_status(c, "VmRSS") or 0
                    todo += children(c)
                self.tree_peak = max(self.tree_peak, tree)
            self.stop_ev.wait(0.01)

    def stop(self):
        self.stop_ev.set()
        self.join(2)


STAGES = ("decrypt_us", "verify_us", "commit_us", "sandbox_us", "store_us", "encrypt_us",
          "agent_us")
REPLY_RE = re.compile(r"reply-sent job=(\S+) .*decrypt_us=")


def tree_cpu_seconds(pid):
    """CPU seconds of pid and every live descendant (a server's tree)."""
    total, todo, seen = None, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        c = cpu_seconds(p)
        if c is not None:
            total = (total or 0) + c
        todo += children(p)
    return total


def cpu_seconds(pid):
    """user + system CPU time of a process so far (from /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def agent_stages(agent):
    """{job_id: {stage: us}} from the agent's reply-sent lines."""
    out = {}
    for line in agent.log:
        m = REPLY_RE.search(line)
        if not m:
            continue
        d = {}
        for kv in line.split():
            k, _, v = kv.partition("=")
            if k in STAGES:
                try:
                    d[k] = int(v)
                except ValueError:
                    pass
        out[m.group(1)] = d
    return out


def med(v):
    return statistics.median(v) if v else None


def check_prosody(srv):
    """Asks the running server (admin socket) for its modules and limits."""
    res = {}
    for key, cmd in (("global", "module:list('*')"), ("host", f"module:list('{srv.domain}')"),
                     ("limits", "config:get('*', 'limits')"),
                     ("network_settings", "config:get('*', 'network_settings')")):
        try:
            r = subprocess.run(["prosodyctl", "--config", srv.config_path, "shell", cmd],
                               capture_output=True, text=True, timeout=20,
                               env=dict(os.environ, PROSODY_CONFIG=srv.config_path))
            res[key] = r.stdout.strip()
        except (OSError, subprocess.TimeoutExpired) as e:
            res[key] = f"error: {e}"
    mods = []
    for key in ("global", "host"):
        mods += [ln.strip() for ln in res[key].splitlines()
                 if ln.startswith("    ") and ln.strip()]
    res["modules"] = sorted(set(mods))
    res["mod_limits_loaded"] = "limits" in res["modules"] if mods else None
    res["mam_loaded"] = "mam" in res["modules"] if mods else None
    return res


# ---------------------------------------------------------------- ssh

def run_ssh(sandbox_bench, args, workdir):
    """sshd on 127.0.0.1 (free port, temporary host key, own config, key auth),
    `lua5.4 -e 'return 1+1'` fresh and over a ControlMaster."""
    res = {}
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if sshd is None or shutil.which("ssh") is None:
        return {"unavailable": "sshd/ssh not installed (openssh-server, openssh-client)"}
    d = tempfile.mkdtemp(prefix="ssh-", dir=workdir)
    os.chmod(d, 0o700)
    hostkey, ukey = os.path.join(d, "host_ed25519"), os.path.join(d, "id_ed25519")
    for k in (hostkey, ukey):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k], check=True)
    auth = os.path.join(d, "authorized_keys")
    shutil.copy(ukey + ".pub", auth)
    os.chmod(auth, 0o600)
    from prosody import free_port
    port = free_port()
    user = __import__("pwd").getpwuid(os.getuid()).pw_name
    conf = os.path.join(d, "sshd_config")
    with open(conf, "w") as f:
        f.write(f"""# moonwire bench: loopback only, key auth only
ListenAddress 127.0.0.1
Port {port}
HostKey {hostkey}
PidFile {d}/sshd.pid
AuthorizedKeysFile {auth}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
MaxSessions 100
MaxStartups 100:30:200
LogLevel ERROR
# bash sources ~/.bashrc for a command run by sshd only at shell level 1; the
# bench measures ssh + lua5.4, not the login user's shell start-up files
SetEnv SHLVL=1
""")
    os.makedirs("/run/sshd", exist_ok=True)   # privilege-separation directory
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", conf], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "sshd.log"), "w"))
    res["port"] = port
    res["sshd_config"] = conf
    try:
        deadline = time.time() + 10
        import socket
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None:
                    raise PathError("sshd exited: " + open(os.path.join(d, "sshd.log")).read())
                time.sleep(0.05)
        base = ["ssh", "-i", ukey, "-p", str(port), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={d}/known_hosts",
                "-o", "LogLevel=ERROR", "-F", "/dev/null"]
        remote = [f"{user}@127.0.0.1", "lua5.4 -e 'return 1+1'"]
        r = subprocess.run(base + remote, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise PathError(f"ssh failed ({r.returncode}): {r.stderr.strip()}")
        objs, err, rc = run_json([sandbox_bench, "spawn", "--name", "ssh_fresh", "--n",
                                  str(args.ssh_fresh_n), "--warmup", "3", "--"] + base + remote,
                                 timeout=300)
        res["fresh"] = find(objs, "spawn") or {"error": err.strip()[-300:]}
        sock = os.path.join(d, "cm.sock")
        subprocess.run(base + ["-M", "-S", sock, "-o", "ControlPersist=yes", "-fN",
                               f"{user}@127.0.0.1"], check=True, timeout=30,
                       stdin=subprocess.DEVNULL, capture_output=True)
        mux = base + ["-S", sock, "-o", "ControlMaster=no"]
        objs, err, rc = run_json([sandbox_bench, "spawn", "--name", "ssh_mux", "--n",
                                  str(args.ssh_mux_n), "--warmup", "20", "--"] + mux + remote,
                                 timeout=300)
        res["mux"] = find(objs, "spawn") or {"error": err.strip()[-300:]}
        subprocess.run(base + ["-S", sock, "-O", "exit", f"{user}@127.0.0.1"],
                       capture_output=True, timeout=30)
    except (PathError, subprocess.SubprocessError, OSError) as e:
        res["error"] = str(e)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return res


# ---------------------------------------------------------------- main part

def ejabberd_unavailable():
    """Why the ejabberd part cannot run here, or None."""
    from ejabberd import EJABBERDCTL
    if not os.path.exists(EJABBERDCTL):
        return f"{EJABBERDCTL} not installed (Debian package ejabberd; make deps)"
    if os.geteuid() != 0:
        return "ejabberdctl needs root (it switches to the ejabberd user)"
    return None


def run_path(build_dir, moonwire, sandbox_bench, args, server="prosody", with_ssh=True):
    raw = {"server": server, "server_config": None}
    exe = build_path_bench(build_dir)
    base = os.path.join(build_dir, "bench")
    # the agents' databases on the build tree's disk (fsync costs as deployed)
    work = tempfile.mkdtemp(prefix="path-", dir=base)
    raw["workdir"] = work
    if server == "prosody":
        srv = Prosody(os.path.join(work, "prosody"), **BENCH_PROSODY)
    else:
        from ejabberd import Ejabberd
        srv = Ejabberd(os.path.join(work, "ejabberd"))
    agents = []
    echo = None
    try:
        t = time.monotonic()
        log(f"bench: path: starting {server}")
        srv.start()
        kit = Kit(moonwire, srv, os.path.join(work, "kit"))
        log("bench: path: setting up accounts and identities")
        ops = [kit.operator(f"op{i}") for i in range(4)]
        fan = kit.operator("fan")
        n_agents = args.fanout_agents
        agents = [kit.agent(f"agent{i:02d}") for i in range(max(1, n_agents))]
        for i, a in enumerate(agents):
            a.settings.update({"rate_limit": "0", "durability": args.durability})
            for op in (ops + [fan]) if i == 0 else [fan]:
                a.allow(op)
                kit.trust(a, op)
        raw["setup_s"] = time.monotonic() - t
        srv_pid = srv.proc.pid
        with open(srv.config_path) as f:
            raw["server_config"] = f.read()
        if server == "prosody":
            raw["prosody_check"] = check_prosody(srv)
        a0 = agents[0]
        a0.start()
        op_confs = [x for op in ops for x in ("--op", op.conf)]

        # latency, one in flight
        log("bench: path: latency (1 in flight)")
        rawfile = os.path.join(work, "latency.raw")
        # CPU each process spends per job: where the time of a serial
        # request/reply goes when all of them share two cores
        cpu0 = (tree_cpu_seconds(srv_pid), cpu_seconds(a0.proc.pid),
                resource.getrusage(resource.RUSAGE_CHILDREN))
        objs, err, rc = run_json([exe, "latency", "--op", ops[0].conf, "--to", a0.jid,
                                  "--n", str(args.path_n), "--warmup", str(args.path_warmup),
                                  "--raw", rawfile], timeout=600)
        cpu1 = (tree_cpu_seconds(srv_pid), cpu_seconds(a0.proc.pid),
                resource.getrusage(resource.RUSAGE_CHILDREN))
        jobs = args.path_n + args.path_warmup
        if None not in cpu0[:2] and None not in cpu1[:2]:
            raw["cpu_per_job_us"] = {
                "server": (cpu1[0] - cpu0[0]) / jobs * 1e6,
                "agent": (cpu1[1] - cpu0[1]) / jobs * 1e6,
                "client": ((cpu1[2].ru_utime + cpu1[2].ru_stime) -
                           (cpu0[2].ru_utime + cpu0[2].ru_stime)) / jobs * 1e6,
            }
        raw["latency"] = find(objs, "latency") or {"error": err.strip()[-500:], "rc": rc}
        raw["latency_anomalies"] = find(objs, "anomalies")
        time.sleep(0.2)
        stages = agent_stages(a0)
        per = {k: [] for k in STAGES + ("e2e", "sign", "encrypt", "decrypt", "client",
                                        "server_net")}
        try:
            with open(rawfile) as f:
                for line in f:
                    jid, e2e, sign, enc, dec, client = line.split()
                    s = stages.get(jid)
                    if s is None or "agent_us" not in s:
                        continue
                    for k in STAGES:
                        per[k].append(s.get(k, 0))
                    per["e2e"].append(int(e2e))
                    per["sign"].append(int(sign))
                    per["encrypt"].append(int(enc))
                    per["decrypt"].append(int(dec))
                    per["client"].append(int(client))
                    per["server_net"].append(int(e2e) - s["agent_us"] - int(client))
        except OSError:
            pass
        raw["stages_median_us"] = {k: med(v) for k, v in per.items()}
        raw["stages_joined"] = len(per["e2e"])

        # throughput
        for k in (1, 8, 32):
            log(f"bench: path: throughput ({k} in flight)")
            sampler = RssSampler(a0.proc.pid) if k == 8 else None
            if sampler:
                sampler.start()
            objs, err, rc = run_json([exe, "throughput"] + op_confs +
                                     ["--to", a0.jid, "--inflight", str(k), "--seconds",
                                      str(args.path_seconds), "--warmup-s", "1"], timeout=300)
            if sampler:
                sampler.stop()
                raw["agent_rss"] = {"peak_vmrss_kib": sampler.peak,
                                    "tree_peak_vmrss_kib": sampler.tree_peak,
                                    "samples": sampler.samples,
                                    "vmhwm_kib": proc_status(a0.proc.pid, "VmHWM")}
            raw[f"throughput_{k}"] = find(objs, "throughput") or {"error": err.strip()[-500:],
                                                                  "rc": rc}

        # fan-out
        if n_agents > 1:
            log(f"bench: path: starting {n_agents - 1} more agents")
            for a in agents[1:]:
                a.start(wait=False)
            # each agent's device lists and bundles served (the agent checks
            # and logs it): on a loaded machine a second after "connected"
            # was not always enough (ejabberd: 4-9 of 50 not yet offering
            # the version asked for, or no list at all)
            for a in agents[1:]:
                a.wait_log("omemo-published", timeout=120)
            log(f"bench: path: fan-out to {n_agents} agents")
            objs, err, rc = run_json([exe, "fanout", "--op", fan.conf] +
                                     [x for a in agents for x in ("--to", a.jid)] +
                                     ["--rounds", str(args.fanout_rounds + 1)], timeout=300)
            raw["fanout"] = [o for o in objs if o.get("bench") == "fanout"]
            if not raw["fanout"]:
                raw["fanout_error"] = err.strip()[-500:]
            elif any(o.get("ok") != o.get("agents") for o in raw["fanout"]):
                # what path_bench said about each target that was not ok
                raw["fanout_not_ok"] = [l for l in err.splitlines()
                                        if l.startswith("path_bench:")][-20:]
        for a in agents:
            a.stop()

        # the floor: plain request/reply, and the same with OMEMO-shaped
        # stanzas (the elements and sizes of a job's messages, no crypto)
        for shape in ("plain", "omemo"):
            key = "floor" if shape == "plain" else "floor_omemo_shape"
            log(f"bench: path: floor ({shape} request/reply)")
            e_id, r_id = kit.operator("echo" + shape), kit.operator("req" + shape)
            echo = subprocess.Popen([exe, "echo", "--account", e_id.conf, "--nodelay",
                                     "1" if args.agent_nodelay else "0", "--shape", shape],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            ready = echo.stdout.readline()
            if "echo_ready" not in ready:
                raw[key + "_error"] = "echo responder did not start: " + echo.stderr.read()[-300:]
            else:
                p0 = tree_cpu_seconds(srv_pid)
                objs, err, rc = run_json([exe, "floor", "--account", r_id.conf, "--to",
                                          e_id.jid, "--n", str(args.path_n), "--warmup",
                                          str(args.path_warmup), "--inflight", "8",
                                          "--seconds", str(args.path_seconds),
                                          "--shape", shape], timeout=300)
                p1 = tree_cpu_seconds(srv_pid)
                raw[key + "_latency"] = (find(objs, "floor_latency") or
                                         {"error": err.strip()[-300:]})
                raw[key + "_throughput"] = (find(objs, "floor_throughput") or
                                            {"error": err.strip()[-300:]})
                msgs = (args.path_n + args.path_warmup +
                        (raw[key + "_throughput"].get("msgs") or 0))
                if p0 is not None and p1 is not None and msgs:
                    # an upper bound: the throughput warm-up is not counted
                    raw[key + "_server_cpu_per_msg_us"] = (p1 - p0) / msgs * 1e6
            if echo.poll() is None:
                echo.send_signal(signal.SIGTERM)
                try:
                    echo.wait(5)
                except subprocess.TimeoutExpired:
                    echo.kill()
            echo = None
    finally:
        for a in agents:
            try:
                a.stop()
            except Exception:
                pass
        if echo is not None and echo.poll() is None:
            echo.send_signal(signal.SIGTERM)
            try:
                echo.wait(5)
            except subprocess.TimeoutExpired:
                echo.kill()
        srv.stop()

    if with_ssh:
        log("bench: path: ssh baseline")
        raw["ssh"] = run_ssh(sandbox_bench, args, work)
    if not args.keep_path_workdir:
        shutil.rmtree(work, ignore_errors=True)
    return rows_for(raw), raw


def fmt(v, unit="", prec=1):
    if v is None:
        return "-"
    return f"{v:,.{prec}f}{unit}"


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def verdict(value, target, higher_is_better):
    if value is None:
        return "n/a"
    return "met" if (value >= target if higher_is_better else value <= target) else "not met"


SERVER_NAMES = {"prosody": "Prosody", "ejabberd": "ejabberd"}


def rows_for(raw, ssh=None):
    """The table of one server's run; ssh: the bench run's ssh figures
    (measured once, compared with each server's latency)."""
    rows = []
    name = SERVER_NAMES.get(raw.get("server"), raw.get("server") or "?")
    lat = raw.get("latency") or {}
    p50, p99 = lat.get("p50_us"), lat.get("p99_us")
    fo = raw.get("floor_omemo_shape_latency") or {}
    fot = raw.get("floor_omemo_shape_throughput") or {}
    rows.append((f"PATH through {name} on loopback (issues 5, 13)", "", "", ""))
    rows.append((f"e2e signed+encrypted job, 1 in flight ({lat.get('n', 0)} jobs): p50",
                 fmt(p50, " us"), "", ""))
    r_ofloor = ratio(p50, fo.get("p50_us"))
    rows.append(("  ratio to the OMEMO-shaped floor through the same server (p50)",
                 fmt(r_ofloor, "x", 2), "<= 2x",
                 verdict(r_ofloor, TARGETS["vs_omemo_floor"], False)))
    rows.append(("  p99", fmt(p99, " us"), "<= 5,000 us",
                 verdict(p99, TARGETS["e2e_p99_us"], False)))
    rows.append(("  mean / min / max", f"{fmt(lat.get('mean_us'))} / {fmt(lat.get('min_us'))} / "
                 f"{fmt(lat.get('max_us'))} us", "", ""))
    if lat.get("error") or lat.get("lost") or lat.get("not_ok"):
        rows.append(("  lost / not ok / error", f"{lat.get('lost')} / {lat.get('not_ok')} / "
                     f"{(lat.get('error') or '-')[:60]}", "", ""))
    st = raw.get("stages_median_us") or {}
    rows.append((f"per-stage medians ({raw.get('stages_joined', 0)} jobs joined by job id):",
                 "", "", ""))
    for k, label in (("decrypt_us", "agent OMEMO decrypt"),
                     ("verify_us", "agent envelope + signature + policy"),
                     ("commit_us", "agent journal row + ratchet commit"),
                     ("sandbox_us", "agent sandbox (submit to result)"),
                     ("store_us", "agent result stored"),
                     ("encrypt_us", "agent OMEMO encrypt + send"),
                     ("agent_us", "agent total (stanza in to reply sent)"),
                     ("sign", "client sign"), ("encrypt", "client encrypt + send"),
                     ("decrypt", "client decrypt + commit"),
                     ("client", "client total (sign, encrypt, decrypt, parse)"),
                     ("server_net", "XMPP server + network (e2e - agent - client)")):
        rows.append((f"  {label}", fmt(st.get(k), " us"), "", ""))
    cpu = raw.get("cpu_per_job_us") or {}
    rows.append((f"CPU per job, 1 in flight: {name} / agent / client",
                 f"{fmt(cpu.get('server'))} / {fmt(cpu.get('agent'))} / "
                 f"{fmt(cpu.get('client'))} us", "", ""))
    rows.append((f"  {name} CPU per floor request/reply, plain / OMEMO-shaped (at most)",
                 f"{fmt(raw.get('floor_server_cpu_per_msg_us'))} / "
                 f"{fmt(raw.get('floor_omemo_shape_server_cpu_per_msg_us'))} us", "", ""))
    fl = raw.get("floor_latency") or {}
    flt = raw.get("floor_throughput") or {}
    rows.append((f"floor: plain request/reply, 1 in flight ({fl.get('n', 0)}): p50 / p99",
                 f"{fmt(fl.get('p50_us'))} / {fmt(fl.get('p99_us'))} us", "", ""))
    rows.append(("floor: msgs/s with 8 in flight", fmt(flt.get("msgs_per_s"), " msgs/s"), "", ""))
    rows.append(("ratio moonwire / plain floor (p50 / p99)",
                 f"{fmt(ratio(p50, fl.get('p50_us')), 'x', 2)} / "
                 f"{fmt(ratio(p99, fl.get('p99_us')), 'x', 2)}", "", ""))
    rows.append((f"floor, OMEMO-shaped stanzas without crypto ({fo.get('n', 0)}): p50 / p99",
                 f"{fmt(fo.get('p50_us'))} / {fmt(fo.get('p99_us'))} us", "", ""))
    rows.append(("  msgs/s with 8 in flight", fmt(fot.get("msgs_per_s"), " msgs/s"), "", ""))
    rows.append(("ratio moonwire / OMEMO-shaped floor (p50)",
                 fmt(ratio(p50, fo.get("p50_us")), "x", 2), "", ""))
    for k in (1, 8, 32):
        tp = raw.get(f"throughput_{k}") or {}
        jps = tp.get("jobs_per_s")
        rows.append((f"jobs/s, {k} in flight ({tp.get('senders', '?')} operators)",
                     fmt(jps, " jobs/s"), "", ""))
        rows.append((f"  latency under that load p50 / p99; not ok / lost",
                     f"{fmt(tp.get('p50_us'))} / {fmt(tp.get('p99_us'))} us; "
                     f"{tp.get('not_ok')} / {tp.get('lost')}", "", ""))
    r8 = ratio((raw.get("throughput_8") or {}).get("jobs_per_s"), fot.get("msgs_per_s"))
    rows.append(("ratio jobs/s / OMEMO-shaped floor msgs/s (8 in flight)", fmt(r8, "x", 3),
                 ">= 0.5x", verdict(r8, TARGETS["jobs_vs_omemo_floor_8"], True)))
    rss = raw.get("agent_rss") or {}
    rss_mib = rss.get("peak_vmrss_kib") / 1024 if rss.get("peak_vmrss_kib") else None
    rows.append(("agent VmRSS peak, sampled under 8 in flight", fmt(rss_mib, " MiB", 2),
                 "<= 16 MiB", verdict(rss_mib, TARGETS["agent_rss_mib"], False)))
    rows.append(("  agent VmHWM / tree (agent + sandbox) peak",
                 f"{fmt((rss.get('vmhwm_kib') or 0) / 1024, '', 2)} / "
                 f"{fmt((rss.get('tree_peak_vmrss_kib') or 0) / 1024, ' MiB', 2)}", "", ""))
    fo = raw.get("fanout") or []
    first = [o for o in fo if o.get("kind") == "first_contact"]
    est = [o for o in fo if o.get("kind") == "established"]
    if first:
        o = first[0]
        rows.append((f"fan-out to {o['agents']} agents, first contact: all back",
                     fmt(o["all_us"] / 1000, " ms"), "", ""))
        rows.append(("  ok / lost; median per agent",
                     f"{o['ok']} / {o['lost']}; {fmt((o.get('each_p50_us') or 0) / 1000, ' ms')}",
                     "", ""))
    if est:
        alls = [o["all_us"] for o in est]
        m = statistics.median(alls)
        rows.append((f"fan-out to {est[0]['agents']} agents, established: all back "
                     f"(median of {len(est)})", fmt(m / 1000, " ms"), "<= 1,000 ms",
                     verdict(m, TARGETS["fanout_established_us"], False)))
        rows.append(("  min / max over rounds; ok in last round",
                     f"{fmt(min(alls) / 1000)} / {fmt(max(alls) / 1000)} ms; {est[-1]['ok']}",
                     "", ""))
    elif raw.get("fanout_error"):
        rows.append(("fan-out", "failed: " + raw["fanout_error"][:80], "", ""))
    if raw.get("fanout_not_ok"):
        rows.append(("  fan-out, a target not ok: " + raw["fanout_not_ok"][-1][:90], "", "", ""))
    ssh = ssh if ssh is not None else (raw.get("ssh") or {})
    if "unavailable" in ssh or "error" in ssh:
        rows.append(("ssh baseline", (ssh.get("unavailable") or ssh.get("error"))[:90], "", ""))
    for k, label in (("fresh", "ssh, fresh connection"), ("mux", "ssh, ControlMaster")):
        s = ssh.get(k) or {}
        if s.get("median_us") is None:
            continue
        rows.append((f"{label} ({s.get('n')} runs): median / p99",
                     f"{fmt(s['median_us'] / 1000, '', 2)} / {fmt(s.get('p99_us', 0) / 1000, '', 2)} ms",
                     "", ""))
        r = ratio(s["median_us"], p50)
        rows.append((f"ratio {label} / moonwire through {name} (median)", fmt(r, "x"),
                     ">= 5x" if k == "mux" else "",
                     verdict(r, TARGETS["vs_ssh_mux"], True) if k == "mux" else ""))
    if raw.get("server") == "prosody":
        chk = raw.get("prosody_check") or {}
        rows.append(("Prosody: mod_limits loaded / MAM loaded",
                     f"{chk.get('mod_limits_loaded')} / {chk.get('mam_loaded')}", "no / no", ""))
    return rows


def compare_rows(raws):
    """The servers' key figures side by side: {server: raw} in run order."""
    names = [SERVER_NAMES.get(s, s) for s in raws]
    rows = [("SERVERS side by side: " + " / ".join(names), "", "", "")]

    def g(raw, *keys):
        v = raw
        for k in keys:
            v = (v or {}).get(k) if isinstance(v, dict) else None
        return v

    def est_ms(raw):
        est = [o["all_us"] for o in raw.get("fanout") or [] if o.get("kind") == "established"]
        return statistics.median(est) / 1000 if est else None

    def first_ms(raw):
        f = [o["all_us"] for o in raw.get("fanout") or [] if o.get("kind") == "first_contact"]
        return f[0] / 1000 if f else None

    figures = (
        ("e2e p50, 1 in flight", lambda r: g(r, "latency", "p50_us"), " us", 0),
        ("e2e p99, 1 in flight", lambda r: g(r, "latency", "p99_us"), " us", 0),
        ("OMEMO-shaped floor p50", lambda r: g(r, "floor_omemo_shape_latency", "p50_us"),
         " us", 0),
        ("plain floor p50", lambda r: g(r, "floor_latency", "p50_us"), " us", 0),
        ("e2e p50 / OMEMO-shaped floor p50",
         lambda r: ratio(g(r, "latency", "p50_us"),
                         g(r, "floor_omemo_shape_latency", "p50_us")), "x", 2),
        ("jobs/s, 8 in flight", lambda r: g(r, "throughput_8", "jobs_per_s"), "", 0),
        ("jobs/s, 32 in flight", lambda r: g(r, "throughput_32", "jobs_per_s"), "", 0),
        ("OMEMO-shaped floor msgs/s, 8 in flight",
         lambda r: g(r, "floor_omemo_shape_throughput", "msgs_per_s"), "", 0),
        ("server CPU per job, 1 in flight", lambda r: g(r, "cpu_per_job_us", "server"),
         " us", 0),
        ("agent CPU per job, 1 in flight", lambda r: g(r, "cpu_per_job_us", "agent"),
         " us", 0),
        ("fan-out, first contact: all back", first_ms, " ms", 0),
        ("fan-out, established: all back (median)", est_ms, " ms", 0),
    )
    for label, fn, unit, prec in figures:
        vals = [fn(r) for r in raws.values()]
        rows.append((f"  {label}", " / ".join(fmt(v, "", prec) for v in vals) + unit, "", ""))
    return rows


def summary(raw, ssh=None):
    """The figures run.py puts under targets, for one server's run."""
    lat = raw.get("latency") or {}
    fo = raw.get("floor_omemo_shape_latency") or {}
    fot = raw.get("floor_omemo_shape_throughput") or {}
    ssh = ssh if ssh is not None else (raw.get("ssh") or {})
    est = [o["all_us"] for o in raw.get("fanout") or [] if o.get("kind") == "established"]
    rss = (raw.get("agent_rss") or {}).get("peak_vmrss_kib")
    p50 = lat.get("p50_us")
    mux = (ssh.get("mux") or {}).get("median_us")
    fresh = (ssh.get("fresh") or {}).get("median_us")
    jps8 = (raw.get("throughput_8") or {}).get("jobs_per_s")
    r_floor = ratio(p50, fo.get("p50_us"))
    r8 = ratio(jps8, fot.get("msgs_per_s"))
    v = {
        "e2e_p50_us": (p50, "(info)", ""),
        "e2e_p99_us": (lat.get("p99_us"), "<= 5000",
                       verdict(lat.get("p99_us"), TARGETS["e2e_p99_us"], False)),
        "moonwire_over_omemo_shaped_floor_p50": (
            r_floor, "<= 2", verdict(r_floor, TARGETS["vs_omemo_floor"], False)),
        "ssh_mux_over_moonwire": (ratio(mux, p50), ">= 5",
                                  verdict(ratio(mux, p50), TARGETS["vs_ssh_mux"], True)),
        "ssh_fresh_over_moonwire": (ratio(fresh, p50), "(info)", ""),
        "jobs_per_s_8_inflight": (jps8, "(info)", ""),
        "jobs_8_over_omemo_shaped_floor_msgs": (
            r8, ">= 0.5", verdict(r8, TARGETS["jobs_vs_omemo_floor_8"], True)),
        "agent_cpu_per_job_us": ((raw.get("cpu_per_job_us") or {}).get("agent"), "<= 600",
                                 verdict((raw.get("cpu_per_job_us") or {}).get("agent"),
                                         600.0, False)),
        "agent_rss_kib": (rss, "<= 16384", verdict(rss / 1024 if rss else None,
                                                   TARGETS["agent_rss_mib"], False)),
        "fanout_50_established_us": (statistics.median(est) if est else None, "<= 1000000",
                                     verdict(statistics.median(est) if est else None,
                                             TARGETS["fanout_established_us"], False)),
    }
    return {k: {"value": a, "target": b, "verdict": c} for k, (a, b, c) in v.items()}
