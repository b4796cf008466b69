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
