"""The sandbox's odd answers: what real gateways, proxies and busy vendors send back.

:mod:`devtools.sandbox` answers the import path strictly by the contract. The real world
also answers with redirects, HTML pages from a gateway, bodies far larger than any vendor
answer, gzip bombs, connections cut mid-answer and TLS. This module writes those answers
(aiohttp handlers' helpers) and parses their command-line values; the sandbox's
:class:`~devtools.sandbox.faults.Faults` holds the settings and decides when they apply.
Gzip request bodies are :mod:`devtools.sandbox.bodies`, TLS :mod:`devtools.sandbox.tls`.

Each *world fault* below answers the import POST instead of normal handling (nothing is
recorded), on every request while it is set:

- :class:`Redirect`: a 3xx with a ``Location`` header and a small HTML "Moved" page;
- :class:`Html200`: HTTP 200, ``text/html``, a gateway's "502 Bad Gateway" page;
- :class:`HugeBody`: HTTP 200 JSON of N MiB of spaces and then a vendor body (code "503"),
  streamed 256 KiB at a time with a ``Content-Length``;
- :class:`GzipBomb`: HTTP 200 JSON, ``Content-Encoding: gzip``, that inflates to N MiB of
  spaces and then ``{"code":"200",...}`` (compressed once per size, cached in memory);
- :class:`DropConnection`: status line and headers with ``Content-Length: 60``, the first
  10 bytes of a body, then the connection is closed.

A client that goes away while one of these is written leaves no error in the sandbox's log.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit

from aiohttp import web

__all__ = [
    "GZIP_BOMB_MAX_MIB",
    "HUGE_BODY_MAX_MIB",
    "MIB",
    "REDIRECT_STATUSES",
    "SYSTEM_BUSY",
    "DropConnection",
    "GzipBomb",
    "Html200",
    "HugeBody",
    "Redirect",
    "WorldFault",
    "gzip_bomb",
    "parse_code",
    "parse_mib",
    "parse_redirect",
]

log = logging.getLogger("devtools.sandbox")

MIB = 1024 * 1024
HUGE_BODY_MAX_MIB = 4096
GZIP_BOMB_MAX_MIB = 4096
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 256 * 1024  # bytes written per await
_SPACES = b" " * _CHUNK

# A busy vendor's server error (also the answer to Faults.fail_uuids).
SYSTEM_BUSY: dict[str, str] = {"code": "500", "errorCode": "SYSTEM_ERROR", "msg": "system busy"}
_HUGE_TAIL = b'{"code":"503","errorCode":"SERVICE_UNAVAILABLE","msg":"busy"}'
_BOMB_TAIL = b'{"code":"200","errorCode":"SUCCESS","msg":"ok"}'
_DROP_LENGTH = 60
_DROP_HEAD = b'{"code":"2'
_GATEWAY_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class WorldFault(Protocol):
    """An odd answer: its HTTP status, the body code logged for it, and how to write it."""

    @property
    def status(self) -> int: ...

    @property
    def log_code(self) -> str | None: ...

    async def write(self, request: web.Request) -> web.StreamResponse: ...


def _check_mib(value: object, what: str, limit: int) -> None:
    if type(value) is not int or not 0 <= value <= limit:
        raise ValueError(f"{what} must be an integer 0..{limit} (MiB), got {value!r}")


@dataclass(frozen=True)
class Redirect:
    """``status`` (301, 302, 303, 307 or 308) with ``Location: location`` (absolute URL)."""

    status: int
    location: str
    log_code: ClassVar[str | None] = None

    def __post_init__(self) -> None:
        if type(self.status) is not int or self.status not in REDIRECT_STATUSES:
            allowed = ", ".join(map(str, sorted(REDIRECT_STATUSES)))
            raise ValueError(f"redirect status must be one of {allowed}, got {self.status!r}")
        location = self.location
        if type(location) is not str or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in location):
            raise ValueError(
                f"redirect location must be a URL without spaces or controls, got {location!r}"
            )
        parts = urlsplit(location)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"redirect location must be an absolute http(s) URL, got {location!r}")

    @classmethod
    def from_json(cls, obj: object) -> Redirect:
        if type(obj) is not dict or obj.keys() != {"status", "location"}:
            raise ValueError(
                'redirect must be null or {"status": 301|302|303|307|308, "location": URL}, '
                f"got {obj!r}"
            )
        return cls(obj["status"], obj["location"])

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "location": self.location}

    async def write(self, request: web.Request) -> web.StreamResponse:
        href = html.escape(self.location, quote=True)
        page = (
            f"<html><head><title>{self.status} Moved</title></head><body>"
            f'<h1>Moved</h1><p>The document has moved <a href="{href}">here</a>.</p>'
            "</body></html>\n"
        )
        return web.Response(
            status=self.status,
            text=page,
            content_type="text/html",
            headers={"Location": self.location},
        )


@dataclass(frozen=True)
class Html200:
    """HTTP 200 with a gateway's HTML error page (no vendor body at all)."""

    status: ClassVar[int] = 200
    log_code: ClassVar[str | None] = None

    async def write(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200, text=_GATEWAY_PAGE, content_type="text/html")


async def _stream(
    request: web.Request, response: web.StreamResponse, body: Iterable[bytes | memoryview]
) -> None:
    """Prepare ``response`` and write ``body`` (an iterable of byte chunks); a client that
    goes away ends it quietly (aiohttp's own write_eof afterwards swallows the rest)."""
    try:
        await response.prepare(request)
        for chunk in body:
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:  # ClientConnectionResetError is a ConnectionResetError
        log.debug("client went away during a %d answer", response.status)


def _spaces(total: int) -> Iterator[bytes]:
    full, rest = divmod(total, _CHUNK)
    for _ in range(full):
        yield _SPACES
    if rest:
        yield _SPACES[:rest]


@dataclass(frozen=True)
class HugeBody:
    """HTTP 200 JSON: ``mib`` MiB of spaces, then a vendor body with code "503"."""

    mib: int
    status: ClassVar[int] = 200
    log_code: ClassVar[str | None] = "503"

    def __post_init__(self) -> None:
        _check_mib(self.mib, "huge_body_mib", HUGE_BODY_MAX_MIB)

    @property
    def content_length(self) -> int:
        return self.mib * MIB + len(_HUGE_TAIL)

    async def write(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.content_length = self.content_length

        def chunks() -> Iterator[bytes]:
            yield from _spaces(self.mib * MIB)
            yield _HUGE_TAIL

        await _stream(request, response, chunks())
        return response


# --------------------------------------------------------------------------- gzip bombs

_bomb_lock = threading.Lock()
_bombs: dict[int, bytes] = {}
_BOMBS_KEPT = 4


def _build_bomb(mib: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip stream
    block = b" " * MIB
    parts = [compressor.compress(block) for _ in range(mib)]
    parts.append(compressor.compress(_BOMB_TAIL))
    parts.append(compressor.flush())
    return b"".join(parts)


def gzip_bomb(mib: int) -> bytes:
    """A gzip stream of ``mib`` MiB of spaces and then ``{"code":"200",...}``: about
    ``mib`` KiB, built once per size (1 MiB at a time) and kept for the next answers."""
    _check_mib(mib, "gzip_bomb_mib", GZIP_BOMB_MAX_MIB)
    with _bomb_lock:
        bomb = _bombs.get(mib)
        if bomb is None:
            bomb = _build_bomb(mib)
            while len(_bombs) >= _BOMBS_KEPT:
                del _bombs[next(iter(_bombs))]
            _bombs[mib] = bomb
        return bomb


@dataclass(frozen=True)
class GzipBomb:
    """HTTP 200, ``Content-Encoding: gzip``: :func:`gzip_bomb` of ``mib``, as raw bytes."""

    mib: int
    status: ClassVar[int] = 200
    log_code: ClassVar[str | None] = "200"  # what the body says, once inflated whole

    def __post_init__(self) -> None:
        _check_mib(self.mib, "gzip_bomb_mib", GZIP_BOMB_MAX_MIB)

    async def prepare(self) -> bytes:
        """Build (or fetch) the compressed body off the event loop."""
        return await asyncio.to_thread(gzip_bomb, self.mib)

    async def write(self, request: web.Request) -> web.StreamResponse:
        bomb = memoryview(await self.prepare())
        # Headers set by hand and no enable_compression(): aiohttp sends the bytes as they are.
        response = web.StreamResponse(status=200, headers={"Content-Encoding": "gzip"})
        response.content_type = "application/json"
        response.content_length = len(bomb)
        chunks = (bomb[i : i + _CHUNK] for i in range(0, len(bomb), _CHUNK))
        await _stream(request, response, chunks)
        return response


@dataclass(frozen=True)
class DropConnection:
    """Status 200, ``Content-Length: 60``, 10 bytes of body, then the connection closes."""

    status: ClassVar[int] = 200
    log_code: ClassVar[str | None] = None

    async def write(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.content_length = _DROP_LENGTH
        try:
            await response.prepare(request)
            await response.write(_DROP_HEAD)
        except ConnectionError:
            return response
        transport = request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then FIN: the body stays short
        return response


# --------------------------------------------------------------------------- CLI values


def parse_code(text: str) -> str:
    if not text:
        raise ValueError("must be a non-empty body code")
    return text


def parse_redirect(text: str) -> Redirect:
    status, sep, location = text.partition(":")
    if not sep or not status.strip().isdigit():
        raise ValueError(f"expected STATUS:URL, e.g. 307:http://127.0.0.1:9000/x, got {text!r}")
    return Redirect(int(status), location)


def parse_mib(text: str) -> int:
    value = int(text)
    if not 1 <= value <= HUGE_BODY_MAX_MIB:
        raise ValueError(f"must be 1..{HUGE_BODY_MAX_MIB} (MiB), got {text}")
    return value
