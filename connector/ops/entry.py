"""The ``event-sink`` command (and ``python -m connector``) before the heavy imports.

Kubernetes may stop a pod a moment after it started, while Python is still importing
aiohttp and librdkafka. Python's default would then die by SIGTERM (exit code 143) or print
a ``KeyboardInterrupt`` traceback. Until the run loop installs its own handlers (which
drain), a SIGTERM or SIGINT ends the process with exit code 0: no record has been read yet,
so there is nothing to drain or commit.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType


def _exit_before_start(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    print(
        f"event-sink: {name} before start-up finished; nothing was read",
        file=sys.stderr,
        flush=True,
    )
    # Not SystemExit: raised inside a callback of the import machinery it is swallowed
    # ("Exception ignored in ...") and start-up goes on (seen in CI). Nothing was read and
    # nothing needs cleaning up, so the process ends here, whatever it was doing.
    os._exit(0)


# Options before the command that take a value (connector/ops/cli.py's parser; a test keeps
# the two the same).
GLOBAL_OPTIONS_WITH_VALUE = ("--log-level", "--log-format")


def command_of(args: Sequence[str]) -> str | None:
    """The command word (``run``, ``demo``, ...), past any options before it."""
    rest = iter(args)
    for arg in rest:
        if arg in GLOBAL_OPTIONS_WITH_VALUE:
            next(rest, None)
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if command_of(args) == "run":  # the other commands keep Python's defaults
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _exit_before_start)
    from connector.ops import cli  # after the handlers, on purpose

    return cli.main(args)
