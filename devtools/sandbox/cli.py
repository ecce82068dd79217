"""The sandbox's command line: the flags of ``event-sink sandbox`` and
``python -m devtools.sandbox``, the :class:`~devtools.sandbox.faults.Faults` they give, and
the standalone entry point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from typing import Any

from connector.ops.runtime import run_async
from devtools.sandbox import tls, world
from devtools.sandbox.faults import Faults, check_retry_after, check_status, parse_script
from devtools.sandbox.server import DEFAULT_PATH, serve

__all__ = ["add_arguments", "faults_from_args", "main"]


def _arg_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = convert.__name__  # argparse names the type in its error message
    return parse


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be in 0..1, got {text}")
    return value


def _status(text: str) -> int:
    value = int(text)
    check_status(value, "status")
    return value


def _event_keys(text: str) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in text.split(",") if key.strip())
    if not keys:
        raise ValueError("give at least one event key")
    return keys


def _retry_after(text: str) -> str:
    check_retry_after(text, "Retry-After")
    return text


def _latency(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"must be >= 0, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not 0.0 < value < float("inf"):
        raise ValueError(f"must be a number > 0, got {text}")
    return value


def _slots(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be >= 1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``sandbox`` subcommand's flags (dests: host, port, token, path, failure_rate,
    failure_status, latency_ms, script, retry_after, refuse_event_keys, refuse_with_200,
    failure_code, fail_uuids, redirect, html_200, huge_body_mib, gzip_bomb_mib,
    drop_connection, quota_events_per_s, quota_burst_s, slots)."""
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one")
    parser.add_argument("--token", required=True, help="the X-Token value to accept")
    parser.add_argument("--path", default=DEFAULT_PATH, help="import path (default: %(default)s)")
    parser.add_argument(
        "--failure-rate",
        type=_arg_type(_rate),
        default=0.0,
        help="probability 0..1 of a random fault once the script is exhausted",
    )
    parser.add_argument(
        "--failure-status",
        type=_arg_type(_status),
        default=503,
        help="HTTP status of random faults (default: %(default)s)",
    )
    parser.add_argument(
        "--latency-ms", type=_arg_type(_latency), default=0.0, help="delay before every answer"
    )
    parser.add_argument(
        "--script",
        type=_arg_type(parse_script),
        default=[],
        help="answers for the first requests, e.g. 503,429@2,200:500,200 "
        "(STATUS[:BODY_CODE][@RETRY_AFTER]; 200 = normal handling)",
    )
    parser.add_argument(
        "--retry-after",
        type=_arg_type(_retry_after),
        default=None,
        help="Retry-After header of random faults, sent verbatim (e.g. 2)",
    )
    parser.add_argument(
        "--refuse-event-keys",
        type=_arg_type(_event_keys),
        default=(),
        metavar="KEY[,KEY...]",
        help="refuse (400) every valid request holding an event with one of these eventKeys",
    )
    parser.add_argument(
        "--refuse-with-200",
        action="store_true",
        help="answer such refusals with HTTP 200 and body code 400 instead of HTTP 400",
    )
    parser.add_argument(
        "--failure-code",
        type=_arg_type(world.parse_code),
        default=None,
        help="body code of random faults (default: the status), e.g. 500 with --failure-status 200",
    )
    parser.add_argument(
        "--fail-uuids",
        type=_arg_type(_event_keys),
        default=(),
        metavar="UUID[,UUID...]",
        help="answer 500 to every valid request holding an event with one of these uuids",
    )
    parser.add_argument(
        "--quota-events-per-s",
        type=_arg_type(_positive),
        default=None,
        metavar="N",
        help="accept at most N events/s from all clients together (a token bucket); "
        "beyond it answer 429 with Retry-After: 1",
    )
    parser.add_argument(
        "--quota-burst-s",
        type=_arg_type(_positive),
        default=1.0,
        metavar="S",
        help="the quota's bucket holds N*S events, full at start (default: %(default)s)",
    )
    parser.add_argument(
        "--slots",
        type=_arg_type(_slots),
        default=None,
        metavar="K",
        help="handle at most K requests at once (latency included); the others wait",
    )
    odd = parser.add_mutually_exclusive_group()
    odd.add_argument(
        "--redirect",
        type=_arg_type(world.parse_redirect),
        default=None,
        metavar="STATUS:URL",
        help="answer every request with this redirect, e.g. 307:http://127.0.0.1:9000/x",
    )
    odd.add_argument(
        "--html-200", action="store_true", help="answer every request 200 with a gateway's HTML"
    )
    odd.add_argument(
        "--huge-body-mib",
        type=_arg_type(world.parse_mib),
        default=0,
        metavar="MIB",
        help="answer every request 200 with MIB MiB of spaces before a code-503 body",
    )
    odd.add_argument(
        "--gzip-bomb-mib",
        type=_arg_type(world.parse_mib),
        default=0,
        metavar="MIB",
        help="answer every request 200 with gzip that inflates to MIB MiB (then code 200)",
    )
    odd.add_argument(
        "--drop-connection",
        action="store_true",
        help="answer every request with headers and 10 bytes of body, then close",
    )


def faults_from_args(ns: argparse.Namespace) -> Faults:
    return Faults(
        failure_rate=ns.failure_rate,
        failure_status=ns.failure_status,
        latency_ms=ns.latency_ms,
        script=ns.script,
        retry_after=ns.retry_after,
        refuse_event_keys=ns.refuse_event_keys,
        refuse_with_200=ns.refuse_with_200,
        failure_code=ns.failure_code,
        fail_uuids=ns.fail_uuids,
        redirect=ns.redirect,
        html_200=ns.html_200,
        huge_body_mib=ns.huge_body_mib,
        gzip_bomb_mib=ns.gzip_bomb_mib,
        drop_connection=ns.drop_connection,
        quota_events_per_s=ns.quota_events_per_s,
        quota_burst_s=ns.quota_burst_s,
        slots=ns.slots,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m devtools.sandbox``: ``event-sink sandbox``'s flags plus ``--no-keep-events``
    (uuids and counts only: long runs need no event bodies) and the TLS flags of
    :func:`devtools.sandbox.tls.add_tls_arguments`. Stops on SIGINT or SIGTERM."""
    from connector.ops import logs  # only the standalone entry point configures logging

    parser = argparse.ArgumentParser(
        prog="python -m devtools.sandbox",
        description="Serve the strict local stand-in of the event import API.",
    )
    add_arguments(parser)
    parser.add_argument(
        "--no-keep-events",
        dest="keep_events",
        action="store_false",
        help="do not keep accepted event bodies (GET /events answers 409); uuids are kept",
    )
    tls.add_tls_arguments(parser)
    ns = parser.parse_args(argv)
    ssl_context = tls.ssl_context_from_args(ns, parser)
    try:
        faults = faults_from_args(ns)
    except ValueError as exc:  # settings that only fail together, e.g. the quota's bucket size
        parser.error(str(exc))
    logs.configure("INFO", "plain", logs.Redactor([ns.token]))

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        await serve(
            ns.host,
            ns.port,
            ns.token,
            faults,
            ns.path,
            keep_events=ns.keep_events,
            ssl_context=ssl_context,
        )

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        run_async(run())
    return 0
