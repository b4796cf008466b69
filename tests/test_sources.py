"""Source rules a compiler on this machine may not catch.

libsignal-protocol-c installs its headers under /usr/include/signal/;
libomemo-c (the library moonwire links, pkg-config libomemo-c) under
/usr/include/omemo/, reached without a prefix.  An `#include <signal/...>`
compiles only where libsignal-protocol-c-dev happens to be installed --
which `make deps` does not do -- so it breaks the build on a fresh Debian
12 and names the archived library's header where it does compile.
"""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = re.compile(r'^\s*#\s*include\s*<signal/', re.M)


def test_no_libsignal_protocol_c_headers():
    bad = []
    for top in ("omemo", "runtime", "sandbox", "wire", "tests"):
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".c", ".h")):
                    p = os.path.join(d, f)
                    with open(p, errors="replace") as fh:
                        if INCLUDE.search(fh.read()):
                            bad.append(os.path.relpath(p, ROOT))
    assert not bad, "libsignal-protocol-c headers included: %s" % bad
