"""The network to the API: proxy choice, private CA and mTLS, extra headers, their checks."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web

from connector.adapters.http_setup import make_session, proxy_for, resolve
from connector.config import ConfigError, Settings, load_settings

OK = b'{"code":"200","errorCode":"SUCCESS","msg":"ok"}'
API = "https://api.example:8443/v1/events/import"


def settings_with(**http: object) -> Settings:
    return load_settings(None, environ={"EVENT_SINK__HTTP": json.dumps({"url": API, **http})})


# -- the proxy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "url", "source"),
    [
        ({}, None, "none"),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128", "HTTPS_PROXY"),
        ({"https_proxy": "http://lower:1"}, "http://lower:1", "HTTPS_PROXY"),
        ({"HTTP_PROXY": "http://proxy:3128"}, None, "none"),  # the API URL is https
        ({"HTTPS_PROXY": "proxy:3128"}, "http://proxy:3128", "HTTPS_PROXY"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "api.example"}, None, "NO_PROXY"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example"}, None, "NO_PROXY"),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": "other.example"}, "http://p:1", "HTTPS_PROXY"),
    ],
)
def test_the_proxy_comes_from_the_environment(
    environ: dict[str, str], url: str | None, source: str
) -> None:
    proxy = proxy_for(API, None, environ)
    assert (proxy.url, proxy.source) == (url, source)


def test_proxy_credentials_in_the_environment_are_split_from_the_url() -> None:
    proxy = proxy_for(API, None, {"HTTPS_PROXY": "http://user:p%40ss@proxy:3128"})
    assert proxy.url == "http://proxy:3128"
    assert proxy.auth is not None
    assert (proxy.auth.login, proxy.auth.password) == ("user", "p@ss")
    assert "p@ss" not in proxy.describe()
    assert "p%40ss" not in proxy.describe()


def test_the_explicit_proxy_wins_and_takes_credentials_from_the_environment() -> None:
    env = {
        "HTTPS_PROXY": "http://env:1",
        "NO_PROXY": "api.example",
        "EVENT_SINK_PROXY_USERNAME": "u",
        "EVENT_SINK_PROXY_PASSWORD": "pw",
    }
    proxy = proxy_for(API, "http://explicit:3128", env)
    assert (proxy.url, proxy.source) == ("http://explicit:3128", "http.proxy")
    assert proxy.auth is not None
    assert proxy.auth.password == "pw"
    with pytest.raises(ConfigError, match="EVENT_SINK_PROXY_PASSWORD"):
        proxy_for(API, "http://explicit:3128", {"EVENT_SINK_PROXY_USERNAME": "u"})


def test_a_proxy_with_credentials_in_the_config_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"http\.proxy.*EVENT_SINK_PROXY_USERNAME"):
        settings_with(proxy="http://user:secret@proxy:3128")


# -- headers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["X-Token", "x-token", "Content-Type", "Content-Length", "Host", "Content-Encoding"]
)
def test_headers_the_connector_sets_itself_are_refused_by_name(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"http\.headers.*{name}.*may not be set"):
        settings_with(headers={name: "x"})


def test_a_bad_header_name_or_value_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"http\.headers"):
        settings_with(headers={"Bad Name": "x"})
    with pytest.raises(ConfigError, match=r"http\.headers"):
        settings_with(headers={"X-A": "line\r\nX-Injected: 1"})
    with pytest.raises(ConfigError, match="exactly one"):
        settings_with(headers={"X-A": {"value_file": "/f", "env": "E"}})


def test_secret_headers_come_from_a_file_or_the_environment(tmp_path: Path) -> None:
    key = tmp_path / "gateway-key"
    key.write_text("file-secret\n")
    settings = settings_with(
        headers={"X-Tenant": "acme", "X-Key": {"value_file": str(key)}, "X-Env": {"env": "GWK"}}
    )
    net = resolve(settings.http, {"GWK": "env-secret"})
    assert net.headers == {"X-Tenant": "acme", "X-Key": "file-secret", "X-Env": "env-secret"}
    assert set(net.secrets) == {"file-secret", "env-secret"}
    shown = json.dumps(net.describe())
    assert "secret" not in shown
    assert "X-Key" in shown
    with pytest.raises(ConfigError, match=r"http\.headers\.X-Env: \$GWK is empty or unset"):
        resolve(settings.http, {})


def test_check_config_prints_header_names_and_the_proxy_never_a_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from connector.ops import cli

    key = tmp_path / "key"
    key.write_text("very-secret-value")
    config = tmp_path / "c.yaml"
    http = {"url": API, "headers": {"X-Gateway-Key": {"value_file": str(key)}}}
    config.write_text(json.dumps({"http": http}))
    monkeypatch.setenv("HTTPS_PROXY", "http://puser:proxy-secret@proxy.corp:3128")
    assert cli.main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "X-Gateway-Key" in out
    assert "proxy http://proxy.corp:3128 (from HTTPS_PROXY) with credentials" in out
    assert "very-secret-value" not in out
    assert "proxy-secret" not in out


# -- TLS: a private CA and a client certificate, over real HTTPS -------------------------


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


async def https_server(
    ca: trustme.CA, *, require_client_cert: bool = False
) -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        seen.append("client-cert" if peer else "no-client-cert")
        return web.Response(body=OK, content_type="application/json")

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    if require_client_cert:
        ca.configure_trust(server_ctx)
        server_ctx.verify_mode = ssl.CERT_REQUIRED
    app = web.Application()
    app.router.add_post("/import", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}/import", seen
    finally:
        await runner.cleanup()


async def post(url: str, tls: ssl.SSLContext | bool) -> int:
    async with make_session(1) as session, session.post(url, data=b"{}", ssl=tls) as response:
        return response.status


async def test_a_private_ca_is_refused_without_ca_file_and_trusted_with_it(
    ca: trustme.CA, tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async for url, _ in https_server(ca):
        without = resolve(settings_with(url=url).http, {})
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await post(url, without.tls)
        trusted = settings_with(url=url, ca_file=str(ca_file))
        net = resolve(trusted.http, {})
        assert net.describe()["ca"] == str(ca_file)
        assert await post(url, net.tls) == 200


async def test_mtls_presents_the_client_certificate(ca: trustme.CA, tmp_path: Path) -> None:
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "c.pem", tmp_path / "c.key"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("event-sink@example")
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    async for url, seen in https_server(ca, require_client_cert=True):
        plain = resolve(settings_with(url=url, ca_file=str(ca_file)).http, {})
        with pytest.raises(aiohttp.ClientError):
            await post(url, plain.tls)
        mtls = settings_with(
            url=url,
            ca_file=str(ca_file),
            client_cert_file=str(cert_file),
            client_key_file=str(key_file),
        )
        assert await post(url, resolve(mtls.http, {}).tls) == 200
        assert seen == ["client-cert"]


def test_unreadable_tls_files_fail_at_start_up_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"http\.ca_file: cannot load"):
        resolve(settings_with(ca_file=str(tmp_path / "missing.pem")).http, {})
    with pytest.raises(ConfigError, match=r"client_cert_file and http\.client_key_file"):
        settings_with(client_cert_file=str(tmp_path / "c.pem"))
