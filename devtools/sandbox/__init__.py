"""A strict stand-in of the vendor's event import API, served by aiohttp on loopback.

Tests and the demo talk to it over real HTTP. It is deliberately stricter than the vendor's
page, so that a connector that passes against it sends only what the contract allows
(see ``shared/reference/event-import-api.md``).

``POST <path>`` (default ``/v1/events/import``) is checked in this order; the first failing
check answers and nothing of the request is recorded:

1. fault injection (:class:`Faults`): a world fault (below), else a scripted or random
   fault, answers before any validation;
2. header ``X-Token`` must equal the configured token, else 401;
3. ``Content-Encoding``: none, ``identity`` or ``gzip`` (inflated once, bounded: above 64 MiB
   inflated it is 400 ``body: gzip inflates beyond the limit``; never inflated unbounded),
   anything else (``br``, ``zstd``, ``deflate``, ...) 400 ``Content-Encoding: ...``;
   ``Content-Type`` must be ``application/json`` (charset, if any, utf-8), the body UTF-8
   JSON (no ``NaN``/``Infinity``) holding an object, else 400;
4. the contract, else 400 with ``msg`` = ``<path>: <reason>``, e.g.
   ``data[3].identities[0].isWeChatEcosystem: required when mpid is sent``:

   - top level: exactly ``publicParams`` (object, required) and ``data`` (array of 1..500
     events, required);
   - ``publicParams``: ``matchingType`` int 1 or 2; ``isMatching`` int 1 or 2, or a bool;
     both optional;
   - event: ``identities`` (non-empty array, required), ``eventKey`` (non-empty string,
     required), ``time`` (int epoch milliseconds in 0..2**63-1, optional), ``uuid``
     (non-empty string, optional), ``intid`` (string, optional), ``eventargs`` (object whose
     values are string, number, bool or null, optional);
   - identity: ``identityValue`` and ``identityType`` (strings, required), ``platform`` and
     ``mpid`` (strings, optional), ``isWeChatEcosystem`` (bool, optional but required when
     ``mpid`` is sent);
   - JSON ``true``/``false`` never count as integers; an unknown key at any level (including
     the deprecated identity ``appid``) is rejected; an explicit ``null`` for an optional field
     is rejected (absent fields must be omitted), except as an ``eventargs`` value.

5. refusal (:attr:`Faults.refuse_event_keys`): a valid request holding an event whose
   ``eventKey`` is listed is refused whole, like the real API refusing data: 400 with ``msg``
   ``data[i].eventKey: refused by the sandbox`` (``i`` the first such event), or HTTP 200 with
   body code ``"400"`` when :attr:`Faults.refuse_with_200` is set;
6. server error (:attr:`Faults.fail_uuids`): a valid request holding an event whose ``uuid``
   is listed is answered 500 ``{"code":"500","errorCode":"SYSTEM_ERROR","msg":"system busy"}``
   and nothing of it is recorded (stat ``failed_uuid_requests``);
7. quota (:attr:`Faults.quota_events_per_s`, :mod:`~devtools.sandbox.flow`): one token
   bucket of N events/s for all clients together, holding at most N x
   :attr:`Faults.quota_burst_s` (full at start, when the quota is set or changed, and on
   ``POST /reset``; refilled continuously by the state's monotonic ``clock``); a request of E
   events takes E tokens, or, when the bucket holds fewer, is answered 429 ``Retry-After: 1``
   ``{"code":"429","errorCode":"TOO_MANY_REQUESTS",...}`` and takes none (stat
   ``quota_refused``).

A request that passes is answered 200 ``{"code":"200","errorCode":"SUCCESS","msg":"ok"}`` and
its events are recorded. Every answer of the import path uses the vendor body shape
``{"code": str, "errorCode": str, "msg": str}``; a scripted step or a random fault may add a
``Retry-After`` header (sent verbatim).

``latency_ms`` delays the answer *after* the request was decided and recorded: a client that
times out or disconnects during the delay has in fact been accepted, and sends the batch again
(the realistic source of at-least-once duplicates). Such a client leaves no error in the log.
A very large latency (e.g. 600000, set at runtime through ``POST /faults``) is a hung endpoint.

``slots`` (K, :mod:`~devtools.sandbox.flow`) handles at most K import requests at once; a
request beyond them waits for a slot (first come, first served) and holds it for its whole
handling, ``latency_ms`` included: with latency L, at most K/L requests/s, and the latency a
client sees grows with its concurrency. ``GET /stats`` reports ``max_queued`` (most requests
waiting at once) and ``max_concurrent`` (most holding a slot at once). A new ``slots`` set
through ``POST /faults`` applies to requests that arrive after it.

Random faults answer body code ``failure_code`` when it is set (default: the status), so
``failure_status=200, failure_code="500"`` is HTTP 200 with body
``{"code":"500","errorCode":"SYSTEM_ERROR","msg":"system busy"}`` (a 5xx code reads like a
busy vendor; a non-numeric code such as ``"OOPS"`` has errorCode ``INJECTED_FAULT``). A
``Retry-After`` HTTP-date (even one in the past) is set with a script step's ``retry_after``
in the JSON form of ``POST /faults``.

World faults (:mod:`devtools.sandbox.world`, at most one set at a time) answer *every*
request while set, before the script (which they do not consume) and random faults;
nothing is recorded, each counts in ``faults`` and is logged (status, code or null, events):

- ``redirect``: ``{"status": 301|302|303|307|308, "location": "<absolute URL>"}`` (or null):
  that status, a ``Location`` header and an HTML "Moved" page (log code null);
- ``html_200``: HTTP 200 ``text/html``, a gateway's ``502 Bad Gateway`` page (code null);
- ``huge_body_mib``: HTTP 200 JSON of that many MiB of spaces and then
  ``{"code":"503","errorCode":"SERVICE_UNAVAILABLE","msg":"busy"}``, streamed with a
  ``Content-Length`` (code "503");
- ``gzip_bomb_mib``: HTTP 200 JSON, ``Content-Encoding: gzip``, about that many KiB that
  inflate to that many MiB of spaces and then ``{"code":"200",...}`` (code "200": a client
  that inflates it whole reads "delivered"; compressed once per size, cached);
- ``drop_connection``: status 200, ``Content-Length: 60``, 10 bytes of body, then the
  connection is closed (code null).

A client that goes away during one of them leaves no error in the log. ``POST /faults {}``
switches every fault off.

Control endpoints (no token; loopback use only): ``GET /stats``, ``GET /events``,
``GET /uuids`` (accepted uuids, unique, sorted; kept even when events are not),
``GET /order`` (``{key: [uuid, ...]}``: per key, the first identity's ``identityValue``, the
uuids of accepted events in the order they were first accepted; an event accepted again is a
duplicate, not listed twice; events without uuid are not listed; kept even when events are
not),
``GET /requests[?since=EPOCH_S]`` (the last 100,000 requests of the import path:
``{"t": arrival time.time(), "status", "code", "events", "retry_after"}``), ``POST /reset``
(clears stats, events, uuids, the order and the request log, fills the quota's bucket up,
keeps the fault settings), ``GET /faults``
and ``POST /faults`` (replaces the fault settings; the script restarts from its first entry).

``GET /stats`` also counts ``gzip_requests`` (import requests with a gzip body, any answer),
``quota_refused``, ``max_queued`` and ``max_concurrent``.

``python -m devtools.sandbox`` takes the flags of ``event-sink sandbox`` plus
``--no-keep-events`` (count and keep uuids only, for long runs) and ``--tls-cert FILE
--tls-key FILE [--tls-client-ca FILE]`` (HTTPS, optionally requiring client certificates);
then it says ``listening on https://...``. In process: ``SandboxServer(...,
ssl_context=...)``. Fault flags: ``--failure-code CODE``, ``--fail-uuids U1,U2``, and one of
``--redirect STATUS:URL``, ``--html-200``, ``--huge-body-mib N``, ``--gzip-bomb-mib N``,
``--drop-connection``. Flow flags: ``--quota-events-per-s N [--quota-burst-s S]`` and
``--slots K``.

The modules, by responsibility: :mod:`~devtools.sandbox.contract` (request validation),
:mod:`~devtools.sandbox.faults` (the fault settings and their JSON),
:mod:`~devtools.sandbox.world` (the odd answers), :mod:`~devtools.sandbox.bodies` (gzip
request bodies), :mod:`~devtools.sandbox.flow` (the quota's bucket and the slots),
:mod:`~devtools.sandbox.tls`, :mod:`~devtools.sandbox.state` (counters,
events, the answer to each request), :mod:`~devtools.sandbox.server` (the aiohttp app and
server) and :mod:`~devtools.sandbox.cli` (the flags and ``python -m devtools.sandbox``).
"""

from devtools.sandbox.cli import add_arguments, faults_from_args, main
from devtools.sandbox.contract import MAX_EVENTS_PER_REQUEST, ContractError, validate_request
from devtools.sandbox.faults import Faults, ScriptStep, parse_script
from devtools.sandbox.server import DEFAULT_PATH, STATE_KEY, SandboxServer, build_app, serve
from devtools.sandbox.state import REQUEST_LOG_SIZE, SandboxState, SandboxStats

__all__ = [
    "DEFAULT_PATH",
    "MAX_EVENTS_PER_REQUEST",
    "REQUEST_LOG_SIZE",
    "STATE_KEY",
    "ContractError",
    "Faults",
    "SandboxServer",
    "SandboxState",
    "SandboxStats",
    "ScriptStep",
    "add_arguments",
    "build_app",
    "faults_from_args",
    "main",
    "parse_script",
    "serve",
    "validate_request",
]
