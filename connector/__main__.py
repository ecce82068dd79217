"""``python -m connector``: the same as the ``event-sink`` command."""

import sys

from connector.ops.entry import main

sys.exit(main())
