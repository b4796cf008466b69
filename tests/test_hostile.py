"""Hostile Lua programs against the moonwire sandbox.

Every file in tests/hostile/ is a program that tries to escape, exhaust or
confuse the sandbox.  Each runs through `moonwire run --json` with the grants
and limits its case needs, and the test asserts the EXACT typed outcome
(status + the key part of the error), that nothing happened on the host (no
file written, no secret in the output or values, no process left behind),
and that the sandbox still answers a trivial job afterwards.

Paths in the programs are templates: @G@ is the granted directory, @O@ a
directory outside every grant (same filesystem), both per test session.

Run: /usr/bin/python3 -m pytest tests/test_hostile.py
Binary: $MOONWIRE, default build/moonwire of this repository (the ASan
build works too: MOONWIRE=build-asan/moonwire).
"""

import json
import os
import random
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mwbinary import moonwire_path  # tests/lib, on sys.path via conftest.py

HERE = os.path.dirname(os.path.abspath(__file__))
HOSTILE = os.path.join(HERE, "hostile")
MOONWIRE = moonwire_path()
ASAN = "asan" in MOONWIRE
# Marker for the fork-bomb children: "sleep 3600.<digits>" is unique per run.
MARK = "3600.%06d%03d" % (os.getpid() % 1000000, random.randint(0, 999))
SECRET = "TOPSECRET-%08x" % random.getrandbits(32)


def run(args, timeout=30):
    """Runs `moonwire run ARGS`; returns (exit status, stdout, stderr, seconds)."""
    t0 = time.monotonic()
    p = subprocess.run([MOONWIRE, "run"] + list(args), capture_output=True, text=True,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def run_json(args, timeout=30):
    rc, out, err, secs = run(["--json"] + list(args), timeout)
    try:
        res = json.loads(out)
    except ValueError:
        raise AssertionError("no JSON result (exit %d)\nstdout: %s\nstderr: %s" % (rc, out, err))
    return rc, res, err, secs


def assert_alive(env=None):
    """The sandbox still answers: a trivial job returns ok."""
    path = env["trivial"] if env else _trivial_file()
    rc, res, err, _ = run_json([path])
    assert rc == 0 and res["status"] == "ok" and res["values"] == [42], (rc, res, err)


def _trivial_file():
    import tempfile
    fd, path = tempfile.mkstemp(suffix=".lua")
    os.write(fd, b"return 6 * 7\n")
    os.close(fd)
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    assert os.access(MOONWIRE, os.X_OK), "no moonwire binary at %s (make build/moonwire)" % MOONWIRE
    root = tmp_path_factory.mktemp("hostile")
    g = root / "granted"
    o = root / "outside"
    w = root / "writable"
    g.mkdir()
    o.mkdir()
    w.mkdir()
    (o / "secret").write_text(SECRET + "\n")
    (o / "target").write_text("original\n")
    (o / "hardlink_target").write_text(SECRET + "\n")
    (g / "plain.txt").write_text("hello\n")
    os.symlink("/etc/passwd", g / "passwd_link")
    os.symlink("/etc", g / "etc_link")
    os.link(o / "hardlink_target", g / "hard_secret")
    os.symlink(str(o / "target"), g / "write_link")
    os.symlink(str(o / "created_by_dangling"), g / "dangling_link")
    policy = root / "policy"
    policy.write_text(
        "command echo args=2 /bin/echo\n"
        "command true /bin/true\n"
        "command sh args=4 /bin/sh\n"
        "command hang timeout=300ms /bin/sleep 30\n"
        'command bomb timeout=500ms /bin/sh -c "i=0; while [ $i -lt 40 ]; do sleep %s & i=$((i+1)); done; wait"\n'
        'command detach timeout=3s /bin/sh -c "for i in 1 2 3 4 5; do setsid sleep %s >/dev/null 2>&1 & done; exit 0"\n'
        'command userns /usr/bin/unshare --user /bin/true\n'
        'command uid /usr/bin/id -u\n'
        'command traceme /usr/bin/python3 -c "import ctypes; c = ctypes.CDLL(None, use_errno=True); '
        'r = c.ptrace(0, 0, 0, 0); print(r, ctypes.get_errno())"\n'
        'command leaderless timeout=500ms /usr/bin/python3 -c "import threading, time, ctypes; '
        'threading.Thread(target=time.sleep, args=(30,)).start(); '
        'ctypes.CDLL(None).pthread_exit(None)  # sleep %s"\n'
        % (MARK, MARK, MARK))
    state = root / "state"
    trivial = root / "trivial.lua"
    trivial.write_text("return 6 * 7\n")
    yield {"G": str(g), "O": str(o), "W": str(w), "POL": str(policy), "STATE": str(state),
           "root": root, "trivial": str(trivial)}
    subprocess.run(["pkill", "-KILL", "-f", "sleep " + MARK])


def program(env, name):
    """The hostile program with its path templates filled in."""
    with open(os.path.join(HOSTILE, name + ".lua")) as f:
        text = f.read()
    text = text.replace("@G@", env["G"]).replace("@O@", env["O"])
    path = env["root"] / (name + ".lua")
    path.write_text(text)
    return str(path)


def expand(args, env):
    return [a.format(**env) for a in args]


def no_marker_processes():
    p = subprocess.run(["pgrep", "-f", "sleep " + MARK], capture_output=True, text=True)
    return p.stdout.strip() == ""


# ---- checks that nothing happened ----

def nothing_written(env, res):
    for name in ("pwned_os_execute", "pwned_write", "pwned_exec", "moved", "created_by_dangling"):
        assert not os.path.exists(os.path.join(env["O"], name)), name
    with open(os.path.join(env["O"], "target")) as f:
        assert f.read() == "original\n"
    with open(os.path.join(env["O"], "secret")) as f:
        assert f.read() == SECRET + "\n"


def no_secret(env, res):
    blob = json.dumps(res)
    assert SECRET not in blob
    assert "root:x:0:0" not in blob


def no_env_leak(env, res):
    blob = json.dumps(res)
    assert "PATH=" not in blob and "HOME=" not in blob


def no_survivors(env, res):
    deadline = time.monotonic() + 2
    while not no_marker_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert no_marker_processes(), "children of the exec'd command survived the job"


def denied_calls(env, res):
    """The commands' filter: unshare(CLONE_NEWUSER) and ptrace fail EPERM
    (1) in an allowlisted command, which would otherwise get them as nobody."""
    code, err, traced = res["values"]
    assert code != 0 and "Operation not permitted" in err, res
    assert traced == "-1 1\n", res


def own_uid(env, res):
    """--command-uids: the command ran as the range's first uid, filtered."""
    assert res["values"] == ["2000000000\n", "-1 1\n"], res


def string_mt_intact(env, res):
    # The next job gets a fresh worker: string methods work normally.
    path = env["root"] / "upper.lua"
    path.write_text('return ("x"):upper()\n')
    rc, r2, _, _ = run_json([str(path)])
    assert r2["status"] == "ok" and r2["values"] == ["X"], r2


def output_cut(limit):
    def check(env, res):
        assert len(res["output"].encode()) == limit
        assert res["output_truncated"] is True
    return check


def both(*checks):
    def check(env, res):
        for c in checks:
            c(env, res)
    return check


# Each case: program file, flags, expected status, substrings of the error,
# optional extra check, and the most seconds the run may take.
FAST = ["--instructions", "1000000", "--cpu", "500ms", "--wall", "3s"]
CASES = [
    # -- dangerous standard library functions are gone
    ("os_execute", [], "error", ["attempt to call a nil value (field 'execute')"], nothing_written, 5),
    ("io_open_passwd", [], "error", ["attempt to index a nil value (global 'io')"], no_secret, 5),
    ("require_module", [], "error", ["attempt to call a nil value (global 'require')"], no_secret, 5),
    ("dofile_passwd", [], "error", ["attempt to call a nil value (global 'dofile')"], no_secret, 5),
    ("loadfile_passwd", [], "error", ["attempt to call a nil value (global 'loadfile')"], no_secret, 5),
    ("load_binary_chunk", [], "error", ["attempt to load a binary chunk (mode is 't')"], None, 5),
    ("load_mode_b", [], "error", ["load: only text chunks are allowed (mode 't')"], None, 5),
    ("string_dump", [], "error", ["attempt to call a nil value (field 'dump')"], None, 5),
    ("debug_library", FAST, "error", ["attempt to index a nil value (global 'debug')"], None, 5),
    ("string_metatable_index", [], "error", ["attempt to index a boolean value"], string_mt_intact, 5),
    ("string_metatable_setmetatable", [], "error",
     ["bad argument #1 to 'setmetatable' (table expected, got string)"], string_mt_intact, 5),
    ("os_getenv", [], "error", ["attempt to call a nil value (field 'getenv')"], no_env_leak, 5),
    ("os_exit", [], "error", ["attempt to call a nil value (field 'exit')"], None, 5),
    ("os_remove", [], "error", ["attempt to call a nil value (field 'remove')"], nothing_written, 5),
    ("os_rename", [], "error", ["attempt to call a nil value (field 'rename')"], nothing_written, 5),
    ("os_tmpname", [], "error", ["attempt to call a nil value (field 'tmpname')"], None, 5),
    ("syntax_error", [], "syntax_error", ["syntax_error.lua:2: unexpected symbol near '+'"], None, 5),
    # -- runaway computation
    ("infinite_loop", FAST, "instruction_limit", ["instruction limit exceeded (1000000 instructions)"], None, 5),
    ("infinite_loop_cpu", ["--instructions", "100000000000", "--cpu", "200ms", "--wall", "5s"],
     "cpu_limit", ["cpu time limit exceeded (200 ms)"], None, 5),
    ("loop_in_pcall", FAST, "instruction_limit", ["instruction limit exceeded"], None, 5),
    ("loop_in_xpcall_handler", FAST, "instruction_limit", ["instruction limit exceeded"], None, 5),
    ("loop_in_coroutine", FAST, "instruction_limit", ["instruction limit exceeded"], None, 5),
    ("global_index_loop", FAST, "instruction_limit", ["instruction limit exceeded"], None, 5),
    # A full collection is C work the instruction count barely sees: CPU time stops it.
    ("collectgarbage_spin", ["--instructions", "100000000000", "--cpu", "300ms", "--wall", "5s"],
     "cpu_limit", ["cpu time limit exceeded (300 ms)"], None, 5),
    ("catastrophic_pattern", ["--cpu", "200ms", "--wall", "5s"], "cpu_limit",
     ["cpu time limit exceeded (200 ms)"], None, 5),
    ("coroutine_close_chain", ["--instructions", "2000000", "--memory", "16M", "--cpu", "3s"],
     "instruction_limit", ["instruction limit exceeded"], None, 8),
    # -- memory
    ("string_rep_bomb", ["--memory", "16M"], "memory_limit", ["memory limit exceeded (16777216 bytes)"], None, 5),
    ("table_growth", ["--memory", "8M", "--instructions", "1000000000"], "memory_limit",
     ["memory limit exceeded (8388608 bytes)"], None, 5),
    ("concat_loop", ["--memory", "8M"], "memory_limit", ["memory limit exceeded (8388608 bytes)"], None, 5),
    ("collectgarbage_stop_bomb", ["--memory", "8M", "--instructions", "1000000000"], "memory_limit",
     ["memory limit exceeded (8388608 bytes)"], None, 5),
    ("deep_recursion", ["--memory", "8M"], "memory_limit", ["memory limit exceeded (8388608 bytes)"], None, 5),
    ("deep_recursion_pcall", ["--memory", "8M"], "memory_limit",
     ["memory limit exceeded (8388608 bytes)"], None, 5),
    ("metamethod_c_recursion", [], "error", ["stack overflow"], None, 5),
    # Each wrap level prefixes its position to the error ("C stack overflow"
    # at the bottom), so the message ends cut at 4000 bytes with "...".
    ("coroutine_wrap_nesting", ["--memory", "16M"], "error",
     ["coroutine_wrap_nesting.lua:4: coroutine_wrap_nesting.lua:4:", "..."], None, 5),
    # -- finalizers
    ("gc_finalizer_loop", ["--cpu", "300ms"], "ok", [], None, 3),
    ("gc_finalizer_loop_collect", ["--cpu", "200ms", "--wall", "5s"], "cpu_limit",
     ["cpu time limit exceeded (200 ms)"], None, 5),
    # -- output
    ("huge_output", ["--output", "16K"], "output_limit", ["output limit exceeded (16384 bytes)"],
     output_cut(16384), 5),
    ("print_tostring_huge", ["--output", "16K"], "output_limit", ["output limit exceeded (16384 bytes)"],
     output_cut(16384), 5),
    ("print_tostring_loop", FAST, "instruction_limit", ["instruction limit exceeded"], None, 5),
    # -- results and errors
    ("huge_return", ["--result", "8K"], "result_limit", ["return value larger than 8192 bytes"], None, 5),
    ("cyclic_return", [], "result_limit", ["return value contains a cycle"], None, 5),
    ("deep_return", [], "result_limit", ["return value nested deeper than 16 levels"], None, 5),
    ("error_tostring_loop", FAST, "error", ["(error object is a table value)"], None, 3),
    ("error_huge_message", [], "error", ["error_huge_message.lua:2: eeeeeeeeee"], None, 5),
    # -- filesystem
    ("fs_read_passwd", [], "error",
     ["capability denied: fs.read /etc/passwd: not under a granted path"], no_secret, 5),
    ("fs_dotdot_escape", ["--read", "{G}"], "error",
     ["capability denied: fs.read", "/../../../etc/passwd: '.' and '..' are not allowed"], no_secret, 5),
    ("fs_symlink_file", ["--read", "{G}"], "error",
     ["capability denied: fs.read", "passwd_link: symbolic links are not followed"], no_secret, 5),
    ("fs_symlink_dir", ["--read", "{G}"], "error",
     ["capability denied: fs.read", "etc_link/passwd: symbolic links are not followed"], no_secret, 5),
    ("fs_hardlink", ["--read", "{G}"], "error",
     ["capability denied: fs.read", "hard_secret: file has 2 hard links"], no_secret, 5),
    ("fs_proc_environ", ["--read", "/"], "error",
     ["capability denied: fs.read /proc/self/environ: crosses a mount point"], no_env_leak, 5),
    ("fs_write_outside", ["--write", "{W}", "--read", "{O}"], "error",
     ["capability denied: fs.write", "pwned_write: not under a granted path"], nothing_written, 5),
    ("fs_write_symlink", ["--write", "{G}"], "error",
     ["capability denied: fs.write", "write_link: symbolic links are not followed"], nothing_written, 5),
    ("fs_write_dangling_symlink", ["--write", "{G}"], "error",
     ["capability denied: fs.write", "dangling_link: symbolic links are not followed"], nothing_written, 5),
    # -- commands
    ("exec_ungranted", ["--policy", "{POL}", "--exec", "echo"], "error",
     ["capability denied: exec.run sh: command not granted"], nothing_written, 5),
    ("exec_too_many_args", ["--policy", "{POL}", "--exec", "echo"], "error",
     ["capability denied: exec.run echo: 4 extra arguments, 2 allowed"], None, 5),
    ("exec_hang", ["--policy", "{POL}", "--exec", "hang"], "ok", [], None, 5),
    ("exec_fork_bomb", ["--policy", "{POL}", "--exec", "bomb", "--wall", "5s"], "ok", [], no_survivors, 5),
    ("exec_detached_children", ["--policy", "{POL}", "--exec", "detach", "--wall", "5s"], "ok", [],
     no_survivors, 5),
    ("exec_leaderless", ["--policy", "{POL}", "--exec", "leaderless", "--wall", "5s"], "ok", [],
     no_survivors, 5),
    ("exec_denied_calls", ["--policy", "{POL}", "--exec", "userns", "--exec", "traceme"], "ok", [],
     denied_calls, 5),
    ("exec_own_uid", ["--policy", "{POL}", "--exec", "uid", "--exec", "traceme",
                      "--command-uids", "2000000000-2000000003"], "ok", [], own_uid, 5),
    ("exec_loop_cap", ["--policy", "{POL}", "--exec", "true"], "ok", [], None, 15),
    # -- capability budget, sleep, kv
    ("capability_flood", ["--calls", "10"], "capability_limit", ["more than 10 capability calls"], None, 5),
    ("sleep_beyond_grant", ["--sleep", "1s"], "error",
     ["capability denied: sleep 60: granted maximum is 1000 ms"], None, 5),
    ("sleep_beyond_wall", ["--sleep", "10s", "--wall", "500ms"], "wall_limit",
     ["wall-clock limit exceeded (500 ms)"], None, 3),
    ("kv_without_grant", [], "error", ["capability denied: kv.put: kv not granted"], None, 5),
    ("kv_quota", ["--kv", "--state", "{STATE}"], "error", ["kv.put: quota of 1048576 bytes exceeded"],
     None, 10),
]


@pytest.mark.parametrize("name,flags,status,errs,check,max_secs", CASES, ids=[c[0] for c in CASES])
def test_hostile(env, name, flags, status, errs, check, max_secs):
    path = program(env, name)
    rc, res, stderr, secs = run_json(expand(flags, env) + [path])
    assert res["status"] == status, (res, stderr)
    for e in errs:
        assert e in (res["error"] or ""), (e, res["error"])
    if status == "ok":
        assert res["error"] is None
        assert rc == 0
    else:
        assert rc != 0
    no_secret(env, res)
    if check is not None:
        check(env, res)
    assert secs < max_secs * (3 if ASAN else 1), "took %.1fs" % secs
    assert_alive(env)


# Outcomes that need more than status + error.

def test_values_exec_hang(env):
    rc, res, _, secs = run_json(["--policy", env["POL"], "--exec", "hang", program(env, "exec_hang")])
    r = res["values"][0]
    assert r["timed_out"] is True and r["signal"] == 9 and "code" not in r
    assert secs < 3


def test_values_exec_fork_bomb(env):
    rc, res, _, secs = run_json(["--policy", env["POL"], "--exec", "bomb", "--wall", "5s",
                                 program(env, "exec_fork_bomb")])
    assert res["status"] == "ok"
    assert res["values"][0]["timed_out"] is True
    assert secs < 3
    no_survivors(env, res)


def test_values_exec_loop_cap(env):
    rc, res, _, _ = run_json(["--policy", env["POL"], "--exec", "true", program(env, "exec_loop_cap")])
    assert res["values"][0] == 64
    assert "capability denied: exec.run true: more than 64 commands in one job" in res["values"][1]


def test_values_return_functions(env):
    rc, res, _, _ = run_json([program(env, "return_functions")])
    assert res["status"] == "ok"
    assert res["values"] == ["<function>", "<thread>", "<function>"]


def test_values_gc_finalizer_fast(env):
    rc, res, _, secs = run_json(["--cpu", "300ms", program(env, "gc_finalizer_loop")])
    assert res["status"] == "ok" and res["values"] == ["done"]
    assert res["usage"]["cpu_us"] < 250000 * (4 if ASAN else 1)


def test_values_os_time_functions(tmp_path):
    """The time functions spec/lua-api.md lists run under the filter:
    os.time{...} calls mktime, which calls tzset(); a worker whose tzset()
    looked at /etc/localtime again died of SIGSYS (sandbox_violation)."""
    path = tmp_path / "os_time.lua"
    path.write_text(
        "local t = os.time{year = 2020, month = 1, day = 1, hour = 12}\n"
        "local d = os.date('*t', t)\n"
        "return d.year, d.month, d.day, os.date('!%Y-%m-%d', 0),\n"
        "  os.difftime(t + 60, t), os.time() > t, os.clock() >= 0\n")
    rc, res, err, _ = run_json([str(path)])
    assert rc == 0 and res["status"] == "ok", (res, err)
    assert res["values"] == [2020, 1, 1, "1970-01-01", 60.0, True, True], res


def test_values_error_huge_message_bounded(env):
    rc, res, _, _ = run_json([program(env, "error_huge_message")])
    assert res["status"] == "error" and rc == 1
    assert len(res["error"]) <= 4096 and res["error"].endswith("...")


def test_values_kv_quota_partial(env):
    # The writes below the quota happened, the one over it did not.
    path = env["root"] / "kv_count.lua"
    path.write_text("local n = 0 for i = 1, 100 do if kv.get('k' .. i) then n = n + 1 end end return n\n")
    run_json(["--kv", "--state", env["STATE"], program(env, "kv_quota")])
    rc, res, _, _ = run_json(["--kv", "--state", env["STATE"], str(path)])
    assert res["status"] == "ok" and 0 < res["values"][0] < 100


# ---- refused by the CLI before anything runs ----

def test_cli_grant_proc_refused(env):
    rc, out, err, _ = run(["--json", "--read", "/proc", program(env, "fs_proc_granted")])
    assert rc == 2 and out == ""
    assert "path '/proc' is under /proc, which is never granted" in err


def test_cli_program_too_large(env):
    path = os.path.join(HOSTILE, "program_too_large.lua")
    assert os.path.getsize(path) > 2048
    rc, res, _, _ = run_json(["--program", "1K", path])
    assert rc == 4 and res["status"] == "program_too_large"
    assert "limit 1024" in res["error"] and res["output"] == ""


@pytest.mark.parametrize("case", ["empty_program", "missing_file", "unknown_flag", "malformed_policy"])
def test_cli_usage_errors(env, case):
    if case == "empty_program":
        rc, out, err, _ = run([os.path.join(HOSTILE, "empty_program.lua")])
        assert "empty program" in err
    elif case == "missing_file":
        rc, out, err, _ = run([os.path.join(HOSTILE, "does_not_exist.lua")])
        assert "No such file or directory" in err
    elif case == "unknown_flag":
        rc, out, err, _ = run(["--no-such-flag", env["trivial"]])
        assert "unknown or incomplete option '--no-such-flag'" in err
    else:
        bad = env["root"] / "bad_policy"
        bad.write_text("command t /bin/true\n\nprofile default\n  sys\n  frobnicate yes\n")
        rc, out, err, _ = run(["--policy", str(bad), env["trivial"]])
        assert "%s:5: unknown profile setting 'frobnicate'" % bad in err
    assert rc == 2 and out == ""
    assert_alive(env)


# ---- the pool: several runs in a row, and at once ----

def test_runs_in_a_row(env):
    for i in range(6):
        assert_alive(env)


def test_runs_in_parallel(env):
    hostile = program(env, "infinite_loop")

    def one(i):
        if i % 2:
            return run_json(FAST + [hostile])[1]["status"]
        return run_json([env["trivial"]])[1]["status"]

    with ThreadPoolExecutor(4) as ex:
        statuses = list(ex.map(one, range(8)))
    assert statuses == ["ok", "instruction_limit"] * 4
    assert_alive(env)


def test_zz_still_alive_at_end(env):
    assert_alive(env)
    assert no_marker_processes()
