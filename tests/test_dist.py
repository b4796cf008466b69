"""The files moonwire ships for running the agent as a service.

Why this exists: a systemd unit or an example configuration that does not
load is a trap for the first user who copies it.  The unit is checked by
systemd itself (systemd-analyze verify), the example configuration by the
agent's own parser (`moonwire agent --check`), with its paths pointed at
temporary files but every key and value left as shipped.
"""

import os
import re
import subprocess

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIST = os.path.join(TOP, "runtime", "dist")


def test_systemd_unit_verifies(tmp_path, moonwire_bin):
    with open(os.path.join(DIST, "moonwire-agent.service")) as f:
        unit = f.read()
    assert "KillMode=mixed" in unit and "NoNewPrivileges=yes" in unit
    path = tmp_path / "moonwire-agent.service"
    path.write_text(unit.replace("/usr/local/bin/moonwire", moonwire_bin))
    p = subprocess.run(["systemd-analyze", "verify", str(path)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # the only acceptable complaint is the documentation URL being absent
    problems = [l for l in p.stdout.splitlines()
                if l.strip() and "Documentation" not in l and "doc/moonwire" not in l]
    assert p.returncode == 0 and problems == [], p.stdout


def _example_with_paths(tmp_path):
    with open(os.path.join(DIST, "agent.conf.example")) as f:
        text = f.read()
    (tmp_path / "password").write_text("secret\n")
    (tmp_path / "allowed_signers").write_text("")
    (tmp_path / "policy").write_text("profile ops\n  sys\n")
    text = text.replace("/etc/moonwire/", str(tmp_path) + "/")
    text = text.replace("/var/lib/moonwire", str(tmp_path))
    conf = tmp_path / "agent.conf"
    conf.write_text(text)
    return conf, text


def test_example_config_loads(tmp_path, moonwire_bin):
    conf, text = _example_with_paths(tmp_path)
    p = subprocess.run([moonwire_bin, "agent", "-c", str(conf), "--check"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stderr
    assert "configuration ok" in p.stdout
    # the example is for a real server: TLS is not turned off anywhere
    assert not re.search(r"^\s*allow_plaintext", text, re.M)


def test_example_optional_keys_are_real_keys(tmp_path, moonwire_bin):
    # every commented-out "# key = value" line is accepted when uncommented
    conf, text = _example_with_paths(tmp_path)
    opened = re.sub(r"^# ((?:max_output|clock_skew|parallel|queue|shutdown_grace|"
                    r"rate_limit|rate_burst|durability|new_session_rate|new_session_burst|"
                    r"new_session_rate_global|new_session_burst_global) = .*)$", r"\1", text, flags=re.M)
    assert opened.count("\nparallel = 2") == 1
    conf.write_text(opened)
    p = subprocess.run([moonwire_bin, "agent", "-c", str(conf), "--check"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stderr


def test_check_names_the_bad_line(tmp_path, moonwire_bin):
    conf, text = _example_with_paths(tmp_path)
    lines = text.splitlines()
    lines.insert(3, "paralel = 4")
    conf.write_text("\n".join(lines) + "\n")
    p = subprocess.run([moonwire_bin, "agent", "-c", str(conf), "--check"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 2
    assert "%s:4: unknown setting 'paralel'" % conf in p.stderr
