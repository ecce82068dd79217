"""The network between the connector and its HTTP peers, resolved once at start-up.

- Redirects are never followed by any client of the project: every request passes
  ``allow_redirects=False`` (a 3xx is classified, not obeyed), so the token and the data
  go to the configured origin only.
- Answers are read up to a bound (:data:`MAX_ANSWER_BYTES` for the API), counted after
  any ``Content-Encoding`` is undone; a longer body is not read whole and its connection
  is closed rather than drained. The session never inflates bodies itself.
- The proxy is resolved once per target URL: ``http.proxy`` if set, else the
  ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``NO_PROXY`` environment (either case). Proxy
  credentials come from the environment only.
- TLS: the system trust store, or ``http.ca_file``; an optional client certificate.
  Verification is never switched off.
"""

from __future__ import annotations

import base64
import os
import ssl
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp

from connector.config import ConfigError
from connector.config_http import HttpSettings, SecretHeaderValue
from connector.core.errors import InfrastructureError

# The API's answers are a few dozen bytes; 1 MiB leaves room for any honest gateway page.
MAX_ANSWER_BYTES = 1 << 20
PROXY_USERNAME_ENV = "EVENT_SINK_PROXY_USERNAME"
PROXY_PASSWORD_ENV = "EVENT_SINK_PROXY_PASSWORD"
# What the bounded reader can inflate; nothing else is asked for.
ACCEPT_ENCODING = "gzip, deflate"
_CHUNK = 64 * 1024


class HttpSetupError(ConfigError):
    """A setting of the network cannot be used (unreadable CA, missing secret, ...)."""


class UnreadableBody(InfrastructureError):
    """An answer's body cannot be decoded (unknown encoding, corrupt gzip)."""


@dataclass(frozen=True)
class Credentials:
    login: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Proxy:
    url: str | None  # None: direct
    auth: Credentials | None = field(default=None, repr=False)
    source: str = "none"  # http.proxy, HTTPS_PROXY, ..., NO_PROXY, none

    @property
    def headers(self) -> dict[str, str] | None:
        """``Proxy-Authorization`` for the proxy (on CONNECT too), never for the API."""
        if self.auth is None:
            return None
        pair = f"{self.auth.login}:{self.auth.password}".encode()
        return {"Proxy-Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    def describe(self) -> str:
        if self.url is None:
            return "direct" + (" (NO_PROXY)" if self.source == "NO_PROXY" else "")
        auth = " with credentials" if self.auth is not None else ""
        return f"{self.url} (from {self.source}){auth}"


DIRECT = Proxy(None)


def _split_credentials(url: str) -> tuple[str, Credentials | None]:
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return clean, Credentials(unquote(parts.username), unquote(parts.password or ""))


def proxy_for(url: str, explicit: str | None, environ: Mapping[str, str]) -> Proxy:
    """The proxy a request to ``url`` goes through, decided once."""
    if explicit is not None:
        user, password = environ.get(PROXY_USERNAME_ENV), environ.get(PROXY_PASSWORD_ENV)
        if (user is None) != (password is None):
            raise HttpSetupError(
                f"set both {PROXY_USERNAME_ENV} and {PROXY_PASSWORD_ENV}, or neither"
            )
        auth = Credentials(user, password) if user is not None and password is not None else None
        return Proxy(explicit, auth, "http.proxy")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    # urllib's reading of the environment (both cases, NO_PROXY with suffixes and ports).
    proxies = _environment_proxies(environ)
    chosen = proxies.get(scheme)
    if chosen is None:
        return Proxy(None)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    # Public since Python 3.3 but missing from typeshed.
    if urllib.request.proxy_bypass_environment(netloc, proxies):  # type: ignore[attr-defined]
        return Proxy(None, source="NO_PROXY")
    if "://" not in chosen:
        chosen = "http://" + chosen
    clean, auth = _split_credentials(chosen)
    return Proxy(clean, auth, f"{scheme.upper()}_PROXY")


def _environment_proxies(environ: Mapping[str, str]) -> dict[str, str]:
    # The same rules as urllib.request.getproxies_environment, on a given mapping.
    proxies: dict[str, str] = {}
    for name, value in environ.items():
        lower = name.lower()
        if value and lower.endswith("_proxy"):
            proxies[lower[:-6]] = value
    for name, value in environ.items():  # lowercase names win, as in urllib
        if name.endswith("_proxy") and value:
            proxies[name[:-6].lower()] = value
    return proxies


def tls_context(http: HttpSettings) -> ssl.SSLContext | bool:
    """True (the system trust store) unless a private CA or a client certificate is set."""
    if http.ca_file is None and http.client_cert_file is None:
        return True
    try:
        context = ssl.create_default_context(
            cafile=str(http.ca_file) if http.ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise HttpSetupError(f"http.ca_file: cannot load {http.ca_file}: {exc}") from None
    if http.client_cert_file is not None and http.client_key_file is not None:
        try:
            context.load_cert_chain(str(http.client_cert_file), str(http.client_key_file))
        except (OSError, ssl.SSLError) as exc:
            raise HttpSetupError(
                f"http.client_cert_file/client_key_file: cannot load "
                f"{http.client_cert_file} / {http.client_key_file}: {exc}"
            ) from None
    return context


def _secret_header(name: str, source: SecretHeaderValue, environ: Mapping[str, str]) -> str:
    if source.value_file is not None:
        try:
            value = Path(source.value_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise HttpSetupError(
                f"http.headers.{name}.value_file: cannot read {source.value_file}: {exc.strerror}"
            ) from None
        where = str(source.value_file)
    else:
        value = environ.get(source.env or "", "").strip()
        where = f"${source.env}"
    if not value:
        raise HttpSetupError(f"http.headers.{name}: {where} is empty or unset")
    if any(ch in value for ch in "\r\n\x00"):
        raise HttpSetupError(f"http.headers.{name}: {where} holds a line break")
    return value


@dataclass(frozen=True)
class HttpEnv:
    """Everything resolved about the API's network; secrets stay out of ``repr``."""

    proxy: Proxy
    tls: ssl.SSLContext | bool = field(repr=False)
    headers: dict[str, str] = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    ca: str  # what check-config prints

    def describe(self) -> dict[str, str]:
        """Names and sources only, never a secret value (for check-config)."""
        headers = ", ".join(sorted(self.headers)) or "none"
        return {"proxy": self.proxy.describe(), "ca": self.ca, "headers": headers}


def resolve(http: HttpSettings, environ: Mapping[str, str] | None = None) -> HttpEnv:
    """Read the network settings' files and environment once; HttpSetupError names the key."""
    env = os.environ if environ is None else environ
    headers: dict[str, str] = {}
    secrets: list[str] = []
    for name, value in http.headers.items():
        if isinstance(value, SecretHeaderValue):
            value = _secret_header(name, value, env)
            secrets.append(value)
        headers[name] = value
    proxy = proxy_for(http.url, http.proxy, env)
    if proxy.auth is not None and proxy.auth.password:
        secrets.append(proxy.auth.password)
    ca = str(http.ca_file) if http.ca_file is not None else "system trust store"
    if http.client_cert_file is not None:
        ca += f"; client certificate {http.client_cert_file}"
    return HttpEnv(proxy, tls_context(http), headers, tuple(secrets), ca)


def make_session(max_in_flight: int) -> aiohttp.ClientSession:
    """The one session of the connector: no body inflation (the bounded reader does it),
    no environment or netrc (resolved once, above), at most ``max_in_flight`` connections
    to the API."""
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)


class _Inflater:
    def __init__(self, encoding: str) -> None:
        if encoding == "gzip" or encoding == "x-gzip":
            self._zlib: zlib._Decompress | None = zlib.decompressobj(wbits=31)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj(wbits=47)  # zlib-wrapped (or gzip), as sent
        elif encoding in ("", "identity"):
            self._zlib = None
        else:
            raise UnreadableBody(f"unsupported Content-Encoding {encoding[:32]!r}")

    def feed(self, data: bytes, room: int) -> bytes:
        """Up to ``room`` bytes of output for ``data``; more would mean too large."""
        if self._zlib is None:
            return data[:room]
        out = bytearray()
        try:
            while data and len(out) < room:
                out += self._zlib.decompress(data, room - len(out))
                data = self._zlib.unconsumed_tail
        except zlib.error as exc:
            raise UnreadableBody(f"corrupt compressed body: {exc}") from None
        return bytes(out)

    def pending(self) -> bool:
        """True when compressed input is left that would produce more output."""
        return self._zlib is not None and bool(self._zlib.unconsumed_tail)


async def read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, decoded, when it is at most ``limit`` bytes; None when longer.

    Never reads more than ``limit + 1`` decoded bytes (nor ``limit + 1`` raw ones), so a
    stream of any length or a compression bomb costs at most ``limit`` of memory. On None
    the caller closes the connection (``response.close()``) instead of draining it.
    Raises UnreadableBody for an encoding it cannot decode.
    """
    inflater = _Inflater(response.headers.get("Content-Encoding", "").strip().lower())
    body = bytearray()
    raw = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        raw += len(chunk)
        room = limit + 1 - len(body)
        body += inflater.feed(chunk, room)
        if len(body) > limit or raw > limit or inflater.pending():
            return None
    return bytes(body)
