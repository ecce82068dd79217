"""Import request bodies as the sandbox reads them: ``Content-Encoding`` none,
``identity`` or ``gzip`` (inflated once, bounded: never inflated unbounded); any other
coding is refused with a :class:`BodyError`, a 400 in the vendor's body shape.
"""

from __future__ import annotations

import zlib

from aiohttp import web

__all__ = ["BodyError", "decode_body", "gunzip_bounded", "parse_content_encoding", "read_body"]

_MAX_GZIP_MEMBERS = 64


class BodyError(ValueError):
    """A request body that cannot be decoded: the 400 answer's ``msg`` is ``path: reason``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def parse_content_encoding(value: str | None) -> bool:
    """True for a gzip body, False for none (absent, empty or ``identity``); any other
    coding (``br``, ``zstd``, ``deflate``, two codings, ...) raises :class:`BodyError`."""
    if value is None:
        return False
    codings = [c.strip().lower() for c in value.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return False
    if codings in (["gzip"], ["x-gzip"]):
        return True
    shown = ", ".join(codings)
    if len(shown) > 40:
        shown = shown[:40] + "..."
    raise BodyError("Content-Encoding", f"{shown} is not supported; send gzip or none")


def gunzip_bounded(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body (one or more members) to at most ``limit`` bytes; never holds
    more than ``limit + 1`` inflated bytes. Raises :class:`BodyError`."""
    out = bytearray()
    pending = data
    members = 0
    while True:
        members += 1
        if members > _MAX_GZIP_MEMBERS:
            raise BodyError("body", f"more than {_MAX_GZIP_MEMBERS} gzip members")
        inflater = zlib.decompressobj(31)
        while True:
            try:
                chunk = inflater.decompress(pending, limit - len(out) + 1)
            except zlib.error:
                raise BodyError("body", "is not valid gzip") from None
            out += chunk
            if len(out) > limit:
                raise BodyError("body", "gzip inflates beyond the limit")
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
            if not chunk and not pending:
                raise BodyError("body", "gzip stream is truncated")
        pending = inflater.unused_data
        if not pending:
            return bytes(out)


def decode_body(raw: bytes, content_encoding: str | None, limit: int) -> tuple[bytes, bool]:
    """``(body, gzipped)``: the request body as the sandbox validates it. Raises
    :class:`BodyError` for an unsupported coding or a gzip body that cannot be inflated
    within ``limit`` bytes."""
    gzipped = parse_content_encoding(content_encoding)
    return (gunzip_bounded(raw, limit) if gzipped else raw), gzipped


async def read_body(request: web.Request, limit: int) -> tuple[bytes, bool, BodyError | None]:
    """The import request's body, decoded (``Content-Encoding: gzip`` inflated once,
    bounded by ``limit``): ``(body, gzipped, error)``."""
    encoding = request.headers.get("Content-Encoding")
    # The sandbox's server turns aiohttp's own inflating off; under another runner aiohttp may
    # have inflated the body already (then it counts compressed bytes).
    inflated = getattr(request.content, "total_compressed_bytes", None) is not None
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        if not inflated:
            raise
        return b"", True, BodyError("body", "gzip inflates beyond the limit")
    if inflated:
        return raw, True, None
    try:
        body, gzipped = decode_body(raw, encoding, limit)
    except BodyError as exc:
        return b"", exc.path == "body", exc
    return body, gzipped, None
