"""``python -m devtools.sandbox``: the sandbox as a process of its own (see its ``--help``)."""

import sys

from devtools.sandbox.cli import main

sys.exit(main())
