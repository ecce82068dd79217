"""Entry points: ``event-sink run | check-config | replay-dlq`` (and ``python -m connector``).

More commands come from ``event_sink.commands`` entry points (:func:`build_parser`): the
development install adds ``sandbox`` and ``demo`` that way (``devtools/commands.py``); the
product itself imports nothing of the development tooling.

Exit codes: 0 done (including a clean SIGTERM/SIGINT drain), 1 the connector stopped on
an error (a record it cannot map or the API refused, with ``dlq.on_invalid: fail``; a fatal
Kafka error; a replay that could not finish), 2 the configuration is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

from connector import __version__
from connector.adapters.http_setup import resolve
from connector.config import (
    ConfigError,
    Settings,
    TokenSource,
    unset_required,
)
from connector.core.errors import EventSinkError
from connector.ops import logs
from connector.ops.check import cmd_check_config
from connector.ops.replay import parse_time_ms
from connector.ops.runtime import run_async, tune_gc
from connector.ops.serve import (
    EXIT_CONFIG,
    EXIT_OK,
    RunOutcome,
    exit_code,
    load_checked,
    run_connector,
)
from connector.ops.workers import Supervisor
from connector.routing import describe_routes, routes_of

log = logging.getLogger("connector")

# The entry-point group of the commands that other installed packages add (devtools/).
COMMANDS_GROUP = "event_sink.commands"


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


def cmd_run(args: argparse.Namespace) -> int:
    try:
        settings = load_checked(args.config)
        missing = unset_required(settings)
        if missing:
            raise ConfigError(
                "invalid configuration: not set, and run needs them explicitly (the "
                "defaults point at a developer's machine): " + ", ".join(missing)
            )
        routes = routes_of(settings)
        http_envs = {route.name: resolve(route.settings.http) for route in routes}
        secrets = [secret for env in http_envs.values() for secret in env.secrets]
        redactor = logs.Redactor([*settings.secret_values(), *secrets])
        tokens = {
            route.name: TokenSource(route.settings, on_token=redactor.add) for route in routes
        }
    except ConfigError as exc:
        log.error("%s", exc)
        return exit_code(exc)
    logs.configure(
        args.log_level or settings.log.level,
        args.log_format or settings.log.format,
        redactor,
        worker=args.worker_index,
    )
    if settings.workers > 1 and args.worker_index is None:
        return _supervise(args, settings)

    outcome = RunOutcome()
    tune_gc()

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await run_connector(settings, tokens, stop, outcome, args.worker_port_file, http_envs)

    log.info("event-sink %s starting: %s", __version__, describe_routes(routes))
    code = EXIT_OK
    try:
        run_async(main())
    except EventSinkError as exc:  # a record that stops the run, a fatal Kafka error
        log.error("%s", exc)
        code = exit_code(exc)
    if not outcome.left_cleanly:
        # A consumer call is stuck in a client thread (brokers unreachable); the normal
        # exit would join that thread and outlive the grace period. Nothing is lost:
        # every uncommitted record is read again.
        log.warning("exiting without waiting for the Kafka client")
        logging.shutdown()
        os._exit(code)
    if code == EXIT_OK:
        log.info("stopped cleanly")
    return code


def _supervise(args: argparse.Namespace, settings: Settings) -> int:
    """``workers: N`` with N > 1: run N worker processes (connector/ops/workers.py)."""
    passthrough = []
    if args.log_level:
        passthrough += ["--log-level", args.log_level]
    if args.log_format:
        passthrough += ["--log-format", args.log_format]
    supervisor = Supervisor(
        settings.workers,
        config=args.config,
        passthrough=passthrough,
        host=settings.metrics.host,
        port=settings.metrics.port,
        # A worker stops within its drain timeout plus 10 s for the final commit.
        stop_timeout_s=settings.shutdown.drain_timeout_s + 10 + 15,
    )

    async def main() -> int:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        return await supervisor.run(stop)

    log.info(
        "event-sink %s starting %d workers: %s",
        __version__,
        settings.workers,
        describe_routes(routes_of(settings)),
    )
    code = run_async(main())
    if code == EXIT_OK:
        log.info("stopped cleanly")
    return code


def cmd_replay_dlq(args: argparse.Namespace) -> int:
    from connector.ops.replay import ReplayFilter, replay

    try:
        settings = load_checked(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    if settings.dlq.topic is None:
        print("error: dlq.topic is not set: there is no dead-letter topic", file=sys.stderr)
        return EXIT_CONFIG
    keep = ReplayFilter(args.since, args.until, frozenset(args.stage or ()))
    try:
        summary = replay(settings, keep, to_topic=args.to_topic, dry_run=args.dry_run)
    except EventSinkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    verb = "would replay" if args.dry_run else "replayed"
    targets = ", ".join(f"{topic}: {n}" for topic, n in sorted(summary.by_topic.items()))
    print(
        f"read {summary.read} dead letters from {settings.dlq.topic}; {verb} "
        f"{summary.replayed} ({targets or 'none'}); skipped {summary.skipped}"
    )
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="event-sink",
        description="Kafka → event import API sink connector (at-least-once).",
    )
    parser.add_argument("--version", action="version", version=f"event-sink {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="overrides log.level (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "plain"],
        help="overrides log.format (default: json for run, plain for the other commands)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the connector")
    run.add_argument("--config", type=Path, help="YAML config file (see config/)")
    # Set by the `workers: N` supervisor on the processes it starts; not for users.
    run.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    run.add_argument("--worker-port-file", type=Path, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check-config", help="validate and print the effective config")
    check.add_argument("--config", type=Path, help="YAML config file")
    check.add_argument(
        "--probe",
        action="store_true",
        help="also reach the brokers, topics, dead-letter topic, registry and API host "
        "(a connection and TLS handshake, no event); exit 1 if any fails",
    )
    check.set_defaults(func=cmd_check_config)

    replay_parser = sub.add_parser(
        "replay-dlq", help="re-inject dead letters into their source topic, keeping uuids"
    )
    replay_parser.add_argument("--config", type=Path, help="YAML config file (names dlq.topic)")
    replay_parser.add_argument(
        "--since", type=parse_time_ms, help="dead-lettered at or after (epoch ms or ISO 8601)"
    )
    replay_parser.add_argument("--until", type=parse_time_ms, help="dead-lettered before")
    replay_parser.add_argument(
        "--stage",
        action="append",
        choices=["decode", "transform", "http"],
        help="only this stage (repeatable)",
    )
    replay_parser.add_argument("--to-topic", help="write here instead of the original topic")
    replay_parser.add_argument(
        "--dry-run", action="store_true", help="count what would be replayed, write nothing"
    )
    replay_parser.set_defaults(func=cmd_replay_dlq)

    _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Call every ``event_sink.commands`` entry point: a function ``(subparsers) -> None``
    that adds its command with ``set_defaults(func=...)``. One whose module cannot be
    imported (the development tooling is not in the image) is skipped silently; a name the
    parser already has is not added again."""
    for entry_point in entry_points(group=COMMANDS_GROUP):
        if entry_point.name in sub.choices:
            continue
        try:
            add_command = entry_point.load()
        except ImportError as exc:
            log.debug("command %s not available: %s", entry_point.name, exc)
            continue
        add_command(sub)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    default_format: logs.LogFormat = "json" if args.command == "run" else "plain"
    logs.configure(args.log_level or "INFO", args.log_format or default_format, logs.Redactor())
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
