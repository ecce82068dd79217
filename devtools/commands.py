"""The development commands of ``event-sink``: ``sandbox`` and ``demo``.

The product's parser (:func:`connector.ops.cli.build_parser`) knows nothing of them: it calls
every ``event_sink.commands`` entry point, and pyproject.toml registers these two functions
there. Each adds its subcommand to ``subparsers`` with ``set_defaults(func=...)``; ``func``
takes the parsed arguments and returns the exit code. In the image, where this package is
not installed, the entry points cannot be loaded and the commands do not exist.

Loading this module imports nothing heavy; each function imports its command's modules
when it is called (the parser is built for every command of the development install).
"""

from __future__ import annotations

import argparse
import contextlib

__all__ = ["add_demo", "add_sandbox"]


def add_sandbox(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``event-sink sandbox``: serve the strict local stand-in of the API (its flags:
    :func:`devtools.sandbox.cli.add_arguments` and the TLS ones)."""
    from devtools.sandbox import cli, tls

    box = subparsers.add_parser("sandbox", help="serve the strict local stand-in of the API")
    cli.add_arguments(box)
    tls.add_tls_arguments(box)
    box.set_defaults(func=_run_sandbox, sandbox_parser=box)


def _run_sandbox(args: argparse.Namespace) -> int:
    from connector.ops.runtime import run_async
    from devtools.sandbox import cli, server, tls

    faults = cli.faults_from_args(args)
    ssl_context = tls.ssl_context_from_args(args, args.sandbox_parser)
    with contextlib.suppress(KeyboardInterrupt):
        run_async(
            server.serve(
                args.host, args.port, args.token, faults, path=args.path, ssl_context=ssl_context
            )
        )
    return 0


def add_demo(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``event-sink demo``: local Kafka + sandbox + sample events, end to end (its flags:
    :func:`devtools.demo.add_arguments`)."""
    from devtools import demo

    demo_parser = subparsers.add_parser(
        "demo", help="local Kafka + sandbox + sample events, end to end, with a summary"
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=demo.main)
