"""HTTPS for the sandbox: a server context from PEM files, optionally requiring client
certificates (mTLS), and the ``--tls-cert``/``--tls-key``/``--tls-client-ca`` flags."""

from __future__ import annotations

import argparse
import ssl

__all__ = ["add_tls_arguments", "server_ssl_context", "ssl_context_from_args"]


def server_ssl_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A TLS server context from PEM files (``cert`` may hold the chain); with
    ``client_ca`` every client must present a certificate that CA issued (mTLS)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tls-cert FILE --tls-key FILE [--tls-client-ca FILE]`` (dests tls_cert, tls_key,
    tls_client_ca): serve HTTPS; see :func:`ssl_context_from_args`."""
    parser.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS: certificate (chain) PEM")
    parser.add_argument("--tls-key", metavar="FILE", help="serve HTTPS: private key PEM")
    parser.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="with --tls-cert: require client certificates issued by this CA (mTLS)",
    )


def ssl_context_from_args(
    ns: argparse.Namespace, parser: argparse.ArgumentParser
) -> ssl.SSLContext | None:
    """The server context of :func:`add_tls_arguments`' flags (None: plain HTTP); bad
    flags or files end in ``parser.error``."""
    if ns.tls_cert is None and ns.tls_key is None:
        if ns.tls_client_ca is not None:
            parser.error("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if ns.tls_cert is None or ns.tls_key is None:
        parser.error("--tls-cert and --tls-key go together")
    try:
        return server_ssl_context(ns.tls_cert, ns.tls_key, ns.tls_client_ca)
    except (OSError, ssl.SSLError) as exc:
        parser.error(f"cannot load the TLS files: {exc}")
