"""Shared pytest fixtures for moonwire's integration suites.

Why this exists: every suite needs the same throwaway XMPP server, scripted
OMEMO peers and the path of the moonwire binary, set up and torn down the
same way (bounded waits, temporary directories, every process stopped even
when a test fails). It also puts tests/lib and tests/interop on sys.path so
suites can `from prosody import Prosody` and `from peer import OmemoPeer`.

Fixtures:
  prosody       a fresh, started Prosody in tmp_path (function scope);
  tls_prosody   the same with TLS only and a private CA (srv.cert_path);
                prosody.register(user, password) -> "user@localhost";
                prosody.restart() keeps the port and the data.
  ejabberd      a fresh, started Debian ejabberd (tests/lib/ejabberd.py) with
                the same interface as `prosody` (register, host, port,
                domain); its logs are copied to tmp_path when it stops.
  ejabberd_cluster  two such nodes joined into one cluster (join_cluster);
                the interface of node 0, .nodes[i] for each node.
  omemo_peers   factory: omemo_peers("alice", password="pw", trust="blind",
                omemo="legacy"|"2")
                registers the account and returns a ready OmemoPeer; all are
                closed after the test.
  moonwire_bin  path of the moonwire binary: $MOONWIRE, else build/moonwire
                of this repository (tests/lib/mwbinary.py); the test fails
                (never skips) when it is not an executable file.
"""

import os
import sys
import threading

import pytest

_TESTS = os.path.dirname(os.path.abspath(__file__))
for _sub in ("lib", "interop"):
    _p = os.path.join(_TESTS, _sub)
    if _p not in sys.path:
        sys.path.insert(0, _p)

from prosody import Prosody  # noqa: E402
from ejabberd import Ejabberd, EjabberdCluster  # noqa: E402
from peer import OmemoPeer  # noqa: E402
from mwbinary import moonwire_path  # noqa: E402


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets fixtures see whether the test failed (to print diagnostics).
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _failed(request):
    rep = getattr(request.node, "rep_call", None)
    return rep is None or rep.failed


# MW_XMPP_SERVER=ejabberd runs the suites that use the `prosody` fixture
# against ejabberd instead (make test's ejabberd pass, issue 11): what goes
# on the wire must work on both.  Tests that need Prosody itself (its
# restart, prosodyctl, TLS with a private CA) are marked prosody_only.
XMPP_SERVER = os.environ.get("MW_XMPP_SERVER", "prosody")


def pytest_configure(config):
    config.addinivalue_line("markers", "prosody_only(reason): needs Prosody itself; "
                            "skipped in the ejabberd pass")


def pytest_collection_modifyitems(config, items):
    if XMPP_SERVER != "ejabberd":
        return
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "ejabberd" in names or "ejabberd_cluster" in names:
            # it starts its own ejabberd whatever the pass: the root pass
            # already ran it exactly so
            item.add_marker(pytest.mark.skip(reason="ejabberd pass: starts its own "
                                             "ejabberd; the root pass runs it"))
            continue
        m = item.get_closest_marker("prosody_only")
        if m is not None or "tls_prosody" in names:
            why = (m.args[0] if m is not None and m.args else
                   "needs Prosody itself (TLS with a private CA)")
            item.add_marker(pytest.mark.skip(reason="ejabberd pass: " + why))


class _SpareEjabberd:
    """The ejabberd pass keeps one fresh node booting in the background
    while a test runs (the Erlang VM takes 2-4 s to start): each test still
    gets a server of its own, nothing carries over, and the pass is shorter
    by a boot per test.  A spare that failed to start is started again in
    the foreground, so its error is the test's."""

    def __init__(self):
        self.srv = None
        self.thread = None
        self.error = None

    def _boot(self, srv):
        try:
            srv.start()
        except Exception as e:  # noqa: BLE001 -- reported when taken
            self.error = e

    def launch(self):
        self.srv, self.error = Ejabberd(), None
        self.thread = threading.Thread(target=self._boot, args=(self.srv,), daemon=True)
        self.thread.start()

    def take(self, tmp_path):
        srv = None
        if self.thread is not None:
            self.thread.join()
            srv, self.thread = self.srv, None
            if self.error is not None or srv.proc is None or srv.proc.poll() is not None:
                srv.stop()
                srv = None
        if srv is None:
            srv = Ejabberd(tmp_path)
            srv.start()
        srv.hint = str(tmp_path)
        self.launch()
        return srv

    def close(self):
        if self.thread is not None:
            self.thread.join()
            self.srv.stop()
            self.thread = None


_spare_ejabberd = _SpareEjabberd()


def pytest_sessionfinish(session, exitstatus):
    _spare_ejabberd.close()


@pytest.fixture
def prosody(request, tmp_path):
    """The XMPP server of a test: Prosody, or ejabberd when
    MW_XMPP_SERVER=ejabberd (same interface: register, jid, host, port,
    domain, log_tail)."""
    if XMPP_SERVER == "ejabberd":
        if os.geteuid() != 0:
            pytest.skip("ejabberdctl runs only as root or the ejabberd user")
        srv = _spare_ejabberd.take(tmp_path)
    elif XMPP_SERVER == "prosody":
        srv = Prosody(tmp_path / "prosody")
    else:
        raise pytest.UsageError("MW_XMPP_SERVER must be prosody or ejabberd, not %r"
                                % XMPP_SERVER)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if _failed(request):
            print("\n=== %s diagnostics (%s:%s)\n%s" % (XMPP_SERVER, srv.host, srv.port,
                                                      srv.log_tail()))


@pytest.fixture
def tls_prosody(request, tmp_path):
    """A fresh Prosody that speaks TLS only, with a certificate of its own
    private CA (srv.cert_path)."""
    srv = Prosody(tmp_path / "prosody-tls", tls=True)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if _failed(request):
            print("\n=== prosody diagnostics (TLS, %s:%s)\n%s" % (srv.host, srv.port,
                                                               srv.log_tail()))


@pytest.fixture
def ejabberd(request, tmp_path):
    # Debian's ejabberdctl runs only as root (it switches to the ejabberd
    # user): the deployed pass, which runs as the service's user, cannot
    # start the server.  What it would test of moonwire there is the same
    # agent binary the Prosody suites run under those credentials.
    if os.geteuid() != 0:
        pytest.skip("ejabberdctl runs only as root or the ejabberd user")
    srv = Ejabberd(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        if _failed(request):
            print("\n=== ejabberd diagnostics (%s:%s)\n%s" % (srv.host, srv.port,
                                                               srv.log_tail()))
        srv.stop()


@pytest.fixture
def ejabberd_cluster(request, tmp_path):
    """Two ejabberd nodes on this machine joined into one cluster (root
    only, as the ejabberd fixture)."""
    if os.geteuid() != 0:
        pytest.skip("ejabberdctl runs only as root or the ejabberd user")
    cl = EjabberdCluster(2, tmp_path / "cluster")
    cl.start()
    try:
        yield cl
    finally:
        if _failed(request):
            print("\n=== ejabberd cluster diagnostics %s\n%s" % (cl.info(), cl.log_tail()))
        cl.stop()


@pytest.fixture
def omemo_peers(request, prosody, tmp_path):
    peers = []

    def make(user, password="pw", trust="blind", register=True, ready_timeout=30.0,
             omemo="legacy"):
        if register:
            prosody.register(user, password)
        p = OmemoPeer(prosody, user, password, tmp_path / ("peer-" + user), trust=trust,
                      start=False, omemo=omemo)
        peers.append(p)
        p.start()
        p.wait_ready(ready_timeout)
        return p

    try:
        yield make
    finally:
        failed = _failed(request)
        for p in peers:
            if failed:
                print("\n=== peer diagnostics\n" + p.diagnostics())
            p.close()


@pytest.fixture(scope="session")
def moonwire_bin():
    path = moonwire_path()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail("%s is not an executable file (build it first: make all, or set "
                    "MOONWIRE to the binary)" % path, pytrace=False)
    return path
