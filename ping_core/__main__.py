"""``python -m ping_core``: the ``ping`` command line (see ``ping_core.cli``)."""

from __future__ import annotations

import sys

from ping_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
