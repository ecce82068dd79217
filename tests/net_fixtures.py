"""Network stand-ins for the tests: a redirect target, a forward proxy and a private CA.

Tests only; ``connector/`` never imports this. Each server listens on 127.0.0.1, port 0,
and runs its own event loop in a background thread, so a plain synchronous test (a drill
that runs the connector as a subprocess and polls) uses it as a context manager, and so
does an ``async`` test (the servers never share the test's loop)::

    with RedirectTarget() as target, ForwardProxy(required_auth=("u", "p")) as proxy:
        ...  # point something at target.url / proxy.url
        assert target.tokens_seen == 0
        assert proxy.connect_tunnels == 1

Everything they start is stopped when the ``with`` block ends. The proxy relays only to
loopback targets (anything else is refused with 403 before any lookup or connection), so
no test traffic ever leaves the machine.

``private_ca(tmp_path)`` writes a CA, a server certificate for 127.0.0.1/localhost/::1 and a
client certificate (mTLS), made with ``trustme``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import trustme
from aiohttp import web

__all__ = [
    "ForwardProxy",
    "PrivateCA",
    "ProxyEvent",
    "RedirectTarget",
    "SeenRequest",
    "private_ca",
]

T = TypeVar("T")

OK_BODY = {"code": "200", "errorCode": "SUCCESS", "msg": "ok"}
_HOST = "127.0.0.1"
_HEAD_LIMIT = 64 * 1024
_PIPE_CHUNK = 64 * 1024
_CALL_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- a loop thread


class _LoopThread:
    """An asyncio event loop running in a daemon thread; sync code submits coroutines."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = _CALL_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        """Cancel what still runs on the loop, then stop it and join the thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.call(_cancel_others())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=_CALL_TIMEOUT_S)


async def _cancel_others() -> None:
    me = asyncio.current_task()
    others = [task for task in asyncio.all_tasks() if task is not me]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


class _ThreadedServer:
    """Start on ``__enter__`` (or :meth:`start`), stop on ``__exit__`` (or :meth:`stop`)."""

    _name = "server"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: _LoopThread | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"the {self._name} is not started")
        return self._port

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"the {self._name} is already started")
        self._thread = _LoopThread(f"net-fixture-{self._name}")
        try:
            self._port = self._thread.call(self._start())
        except BaseException:
            self._thread.stop()
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._port = None
        try:
            thread.call(self._stop())
        finally:
            thread.stop()

    async def _start(self) -> int:  # the port
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- redirect target


@dataclass(frozen=True)
class SeenRequest:
    """One request the redirect target answered."""

    method: str
    path: str
    token: str | None  # the X-Token header's value, None when absent
    body_bytes: int


class RedirectTarget(_ThreadedServer):
    """Where a redirect leads: answers every request (any method, any path) with HTTP 200
    ``{"code":"200","errorCode":"SUCCESS","msg":"ok"}`` and records it.

    ``url`` is ``origin`` (``http://127.0.0.1:PORT``, ``https`` with ``ssl_context``) +
    ``path``: the ``Location`` to give the sandbox's ``redirect`` fault. ``requests`` counts what
    arrived, ``tokens_seen`` how many of those carried an ``X-Token`` (a client that follows
    a redirect with its token leaks the credential to another host), ``seen`` lists them.
    """

    _name = "redirect target"

    def __init__(self, *, path: str = "/elsewhere", ssl_context: ssl.SSLContext | None = None):
        super().__init__()
        if not path.startswith("/"):
            raise ValueError("path must start with /")
        self.path = path
        self._ssl_context = ssl_context
        self._seen: list[SeenRequest] = []
        self._runner: web.AppRunner | None = None

    @property
    def origin(self) -> str:
        """``scheme://127.0.0.1:PORT``, without the path."""
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{_HOST}:{self.port}"

    @property
    def url(self) -> str:
        return self.origin + self.path

    @property
    def seen(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._seen)

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self._seen)

    @property
    def tokens_seen(self) -> int:
        with self._lock:
            return sum(1 for request in self._seen if request.token is not None)

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        seen = SeenRequest(request.method, request.path, request.headers.get("X-Token"), len(body))
        with self._lock:
            self._seen.append(seen)
        return web.json_response(OK_BODY)

    async def _start(self) -> int:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._answer)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, _HOST, 0, ssl_context=self._ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        return int(runner.addresses[0][1])

    async def _stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


# --------------------------------------------------------------------------- forward proxy


@dataclass(frozen=True)
class ProxyEvent:
    """One request the proxy handled: ``kind`` is ``"plain"`` (absolute-URI request) or
    ``"connect"`` (tunnel); ``status`` what the proxy answered (or the origin, for a
    relayed plain request; 0 when the origin sent no answer)."""

    kind: str
    target: str  # host:port
    status: int


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, extra: str = "") -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.extra = extra  # more header lines, each ending in CRLF


_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"upgrade",
    }
)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host_port(authority: str, default_port: int | None) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) to its parts; raises :class:`_Refusal` 400."""
    host, port_text = authority, ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise _Refusal(400, "Bad Request")
        host, rest = authority[1:end], authority[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise _Refusal(400, "Bad Request")
            port_text = rest[1:]
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
    if not port_text:
        if default_port is None:
            raise _Refusal(400, "Bad Request")
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _Refusal(400, "Bad Request")
    return host, int(port_text)


def _parse_head(head: bytes) -> tuple[list[bytes], list[tuple[bytes, bytes]]]:
    """The start line's words and the header fields of a message head."""
    lines = head.split(b"\r\n")
    start = lines[0].split(b" ", 2)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise _Refusal(400, "Bad Request")
        headers.append((name, value.strip()))
    return start, headers


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _body_framing(headers: list[tuple[bytes, bytes]]) -> tuple[bool, int | None]:
    """``(chunked, content_length)`` of a message; raises :class:`_Refusal` 400."""
    encoding = _header(headers, b"transfer-encoding")
    if encoding is not None:
        if encoding.lower().split(b",")[-1].strip() != b"chunked":
            raise _Refusal(400, "Bad Request")
        return True, None
    length = _header(headers, b"content-length")
    if length is None:
        return False, None
    if not length.isdigit():
        raise _Refusal(400, "Bad Request")
    return False, int(length)


async def _relay_exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
    while n > 0:
        chunk = await reader.read(min(n, _PIPE_CHUNK))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", n)
        writer.write(chunk)
        await writer.drain()
        n -= len(chunk)


async def _relay_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        line = await reader.readuntil(b"\r\n")
        writer.write(line)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _Refusal(400, "Bad Request") from None
        if size == 0:
            while True:  # trailer fields, then the empty line
                trailer = await reader.readuntil(b"\r\n")
                writer.write(trailer)
                if trailer == b"\r\n":
                    await writer.drain()
                    return
        await _relay_exact(reader, writer, size + 2)  # the data and its CRLF


async def _relay_until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while chunk := await reader.read(_PIPE_CHUNK):
        writer.write(chunk)
        await writer.drain()


async def _relay_body(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    headers: list[tuple[bytes, bytes]],
    *,
    until_eof: bool,
) -> None:
    chunked, length = _body_framing(headers)
    if chunked:
        await _relay_chunked(reader, writer)
    elif length is not None:
        await _relay_exact(reader, writer, length)
    elif until_eof:
        await _relay_until_eof(reader, writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


class ForwardProxy(_ThreadedServer):
    """A forward HTTP proxy on 127.0.0.1 that relays to loopback origins only.

    - an absolute-URI request (``POST http://127.0.0.1:PORT/path HTTP/1.1``) is sent to the
      origin in origin-form, body framed by ``Content-Length`` or chunked, and its answer
      relayed with ``Connection: close`` (one request per client connection);
    - ``CONNECT host:port`` answers ``200 Connection established`` and pipes bytes both ways
      (TLS to the origin passes through untouched).

    With ``required_auth=(user, password)`` a request without the matching
    ``Proxy-Authorization: Basic ...`` gets 407 (``auth_failures``). A target that is not
    loopback gets 403 (``refused``); nothing is ever looked up or dialled for it.

    ``url`` is ``http://127.0.0.1:PORT`` (``url_with_auth`` carries the credentials);
    ``plain_requests``, ``connect_tunnels`` count what was relayed, ``targets`` lists their
    ``host:port``, ``events`` every request with the status answered, ``errors`` anything
    that went wrong inside the proxy (a test can assert it is empty).
    """

    _name = "forward proxy"

    def __init__(self, *, required_auth: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.required_auth = required_auth
        self._events: list[ProxyEvent] = []
        self._errors: list[str] = []
        self._auth_failures = 0
        self._refused = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    # -- what a test reads -------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def url_with_auth(self) -> str:
        if self.required_auth is None:
            return self.url
        user, password = self.required_auth
        return f"http://{user}:{password}@{_HOST}:{self.port}"

    @property
    def events(self) -> list[ProxyEvent]:
        with self._lock:
            return list(self._events)

    @property
    def plain_requests(self) -> int:
        return sum(1 for e in self.events if e.kind == "plain" and e.status not in (403, 407))

    @property
    def connect_tunnels(self) -> int:
        return sum(1 for e in self.events if e.kind == "connect" and e.status == 200)

    @property
    def targets(self) -> list[str]:
        return [e.target for e in self.events if e.status not in (400, 403, 407)]

    @property
    def auth_failures(self) -> int:
        with self._lock:
            return self._auth_failures

    @property
    def refused(self) -> int:
        with self._lock:
            return self._refused

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    # -- serving -----------------------------------------------------------------------

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._on_connection, _HOST, 0, limit=_HEAD_LIMIT)
        return int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def _record(self, kind: str, target: str, status: int) -> None:
        with self._lock:
            self._events.append(ProxyEvent(kind, target, status))
            if status == 407:
                self._auth_failures += 1
            elif status == 403:
                self._refused += 1

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a client or origin that went away mid-message
        except asyncio.CancelledError:
            # Only stop() cancels: end as a normal return, since asyncio's streams server
            # (3.11) logs "Exception in callback" for a connection task that ends cancelled.
            pass
        except Exception as exc:  # anything else is a bug of the proxy: make it visible
            with self._lock:
                self._errors.append(repr(exc))
        finally:
            self._connections.discard(task)
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return  # closed before a request
        kind, target = "plain", "?"
        try:
            start, headers = _parse_head(head[:-4])
            if len(start) != 3 or not start[2].startswith(b"HTTP/1."):
                raise _Refusal(400, "Bad Request")
            method, request_target = start[0].decode("ascii"), start[1].decode("ascii")
            if method == "CONNECT":
                kind = "connect"
                target = request_target
                host, port = _split_host_port(request_target, None)
            else:
                target, host, port, origin_form = self._absolute_target(request_target)
            self._check_auth(headers)
            if not _is_loopback(host):
                raise _Refusal(403, "Forbidden")
        except (_Refusal, UnicodeDecodeError) as exc:
            refusal = exc if isinstance(exc, _Refusal) else _Refusal(400, "Bad Request")
            self._record(kind, target, refusal.status)
            await self._refuse(writer, refusal)
            return
        if kind == "connect":
            await self._tunnel(reader, writer, host, port, target)
        else:
            await self._relay(reader, writer, method, host, port, origin_form, headers, target)

    def _absolute_target(self, request_target: str) -> tuple[str, str, int, str]:
        """``(host:port, host, port, origin-form)`` of an ``http://`` absolute URI."""
        scheme, sep, rest = request_target.partition("://")
        if not sep or scheme.lower() != "http":
            raise _Refusal(400, "Bad Request")
        authority, slash, path = rest.partition("/")
        authority = authority.rpartition("@")[2]  # userinfo is never forwarded
        host, port = _split_host_port(authority, 80)
        return f"{host}:{port}", host, port, slash + path if slash else "/"

    def _check_auth(self, headers: list[tuple[bytes, bytes]]) -> None:
        if self.required_auth is None:
            return
        given = _header(headers, b"proxy-authorization") or b""
        scheme, _, token = given.partition(b" ")
        try:
            credentials = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            credentials = b""
        user, password = self.required_auth
        if scheme.lower() != b"basic" or credentials != f"{user}:{password}".encode():
            raise _Refusal(
                407,
                "Proxy Authentication Required",
                'Proxy-Authenticate: Basic realm="proxy"\r\n',
            )

    async def _refuse(self, writer: asyncio.StreamWriter, refusal: _Refusal) -> None:
        body = f"{refusal.status} {refusal.reason}\n".encode()
        writer.write(
            f"HTTP/1.1 {refusal.status} {refusal.reason}\r\n{refusal.extra}"
            f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _tunnel(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        port: int,
        target: str,
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            self._record("connect", target, 502)
            await self._refuse(writer, _Refusal(502, "Bad Gateway"))
            return
        self._record("connect", target, 200)
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            await _close(up_writer)

    async def _relay(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        host: str,
        port: int,
        origin_form: str,
        headers: list[tuple[bytes, bytes]],
        target: str,
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            self._record("plain", target, 502)
            await self._refuse(writer, _Refusal(502, "Bad Gateway"))
            return
        recorded = False
        try:
            expect = _header(headers, b"expect")
            forwarded = [
                (name, value)
                for name, value in headers
                if name.lower() not in _HOP_BY_HOP and name.lower() != b"expect"
            ]
            if _header(forwarded, b"host") is None:
                forwarded.insert(0, (b"Host", target.encode()))
            forwarded.append((b"Connection", b"close"))
            up_writer.write(_head(f"{method} {origin_form} HTTP/1.1".encode(), forwarded))
            if expect is not None and expect.lower() == b"100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await writer.drain()
            await _relay_body(reader, up_writer, headers, until_eof=False)
            await up_writer.drain()
            while True:  # informational answers (1xx) go through, then the final one
                response_head = await up_reader.readuntil(b"\r\n\r\n")
                start, response_headers = _parse_head(response_head[:-4])
                status = int(start[1])
                if status >= 200:
                    break
                writer.write(response_head)
            # Recorded before the client can read the answer: a test that got it sees it.
            self._record("plain", target, status)
            recorded = True
            kept = [(n, v) for n, v in response_headers if n.lower() not in _HOP_BY_HOP]
            kept.append((b"Connection", b"close"))
            writer.write(_head(b" ".join(start), kept))
            if method != "HEAD" and status not in (204, 304):
                await _relay_body(up_reader, writer, response_headers, until_eof=True)
            await writer.drain()
        finally:
            if not recorded:
                self._record("plain", target, 0)  # the origin sent no answer
            await _close(up_writer)


def _head(start_line: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [start_line, *(name + b": " + value for name, value in headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close; a reset on either side ends it quietly."""
    try:
        await _relay_until_eof(reader, writer)
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


# --------------------------------------------------------------------------- private CA


@dataclass(frozen=True)
class PrivateCA:
    """PEM files of a private CA, its server certificate (127.0.0.1, localhost, ::1) and a
    client certificate (for mTLS), all in ``dir``."""

    dir: Path
    ca: Path  # ca.pem, the CA certificate: what a client trusts
    server_cert: Path  # server.pem, the server certificate chain
    server_key: Path  # server.key
    client_cert: Path  # client.pem, the client certificate chain
    client_key: Path  # client.key

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.load_verify_locations(cafile=self.ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self, *, with_client_cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if with_client_cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def sandbox_args(self, *, require_client_cert: bool = False) -> list[str]:
        """``python -m devtools.sandbox`` flags that serve HTTPS with these files."""
        args = ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key)]
        if require_client_cert:
            args += ["--tls-client-ca", str(self.ca)]
        return args


def private_ca(tmp_path: Path) -> PrivateCA:
    """Make a CA with ``trustme`` and write ``ca.pem``, ``server.pem``, ``server.key``,
    ``client.pem`` and ``client.key`` into ``tmp_path``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="event-sink tests")
    server = ca.issue_cert("127.0.0.1", "localhost", "::1")
    client = ca.issue_cert("client@event-sink.test", common_name="event-sink test client")
    files = PrivateCA(
        dir=tmp_path,
        ca=tmp_path / "ca.pem",
        server_cert=tmp_path / "server.pem",
        server_key=tmp_path / "server.key",
        client_cert=tmp_path / "client.pem",
        client_key=tmp_path / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    for leaf, pem, key in (
        (server, files.server_cert, files.server_key),
        (client, files.client_cert, files.client_key),
    ):
        pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        key.chmod(0o600)
    return files
