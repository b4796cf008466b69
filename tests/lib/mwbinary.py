"""Where the tests find the moonwire binary.

$MOONWIRE when set (make pytest sets it; the ASan build and `make deployed`
point it elsewhere), else build/moonwire of the repository these tests are
in -- so plain `pytest` works in any clone after `make`.
"""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(REPO, "build", "moonwire")


def moonwire_path():
    return os.path.abspath(os.environ.get("MOONWIRE") or DEFAULT)


def interpose_ldflags():
    """Link flags for a program that links moonwire's omemo library: it must
    export the symbols the Makefile's INTERPOSED names (omemo/curve.c,
    omemo/edconv.c) for them to take the place of libomemo-c's.  Read from
    the Makefile, so the list is kept in one place."""
    with open(os.path.join(REPO, "Makefile")) as f:
        for line in f:
            if line.startswith("INTERPOSED"):
                names = line.split("=", 1)[1].split()
                break
        else:
            raise RuntimeError("Makefile: no INTERPOSED line")
    flags = []
    for name in names:
        flags += ["-Wl,-u," + name, "-Wl,--export-dynamic-symbol=" + name]
    return flags
