"""A stand-in Schema Registry over real HTTP: the two Confluent REST endpoints the
connector and its tests use, ``POST /subjects/{subject}/versions`` (register, the same
schema gets the same id) and ``GET /schemas/ids/{id}``, with outage and auth switches.

Why not a real registry: Apicurio Registry 3.3.3 (``io.apicurio:apicurio-registry-app``
on Maven Central) is a plain library jar of Java 21 bytecode, not a runnable app; the
JDK here is 17, and making it run means a Quarkus build of its whole dependency tree.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from typing import Any

import fastavro
from aiohttp import web

_STATE: web.AppKey[RegistryState] = web.AppKey("state", object)  # type: ignore[arg-type]


class RegistryState:
    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.ids: dict[str, int] = {}
        self.subjects: dict[str, list[int]] = {}
        self.down = False  # every answer a 503
        self.fail_next = 0  # the next N answers are 503
        self.basic: tuple[str, str] | None = None  # required credentials, if any
        self.bearer: str | None = None
        self.fetches: dict[int, int] = {}  # GET /schemas/ids/{id} per id, answered or not

    def register(self, subject: str, schema: dict[str, Any] | str) -> int:
        text = schema if isinstance(schema, str) else json.dumps(schema)
        canonical = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"))
        schema_id = self.ids.get(canonical)
        if schema_id is None:
            schema_id = self.ids[canonical] = len(self.schemas) + 1
            self.schemas[schema_id] = text
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"error_code": code, "message": message}, status=status)


def build_app(state: RegistryState) -> web.Application:
    async def gate(request: web.Request) -> web.Response | None:
        if state.down or state.fail_next > 0:
            state.fail_next = max(0, state.fail_next - 1)
            return _error(503, 50003, "unavailable")
        header = request.headers.get("Authorization", "")
        if state.basic is not None:
            user, password = state.basic
            expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            if header != expected:
                return _error(401, 40101, "unauthorized")
        if state.bearer is not None and header != f"Bearer {state.bearer}":
            return _error(401, 40101, "unauthorized")
        return None

    async def get_schema(request: web.Request) -> web.Response:
        schema_id = int(request.match_info["id"])
        state.fetches[schema_id] = state.fetches.get(schema_id, 0) + 1
        refused = await gate(request)
        if refused is not None:
            return refused
        text = state.schemas.get(schema_id)
        if text is None:
            return _error(404, 40403, "Schema not found")
        return web.json_response(
            {"schema": text}, content_type="application/vnd.schemaregistry.v1+json"
        )

    async def post_version(request: web.Request) -> web.Response:
        refused = await gate(request)
        if refused is not None:
            return refused
        body = await request.json()
        if body.get("schemaType", "AVRO") != "AVRO":
            return _error(422, 42201, "only AVRO here")
        try:
            fastavro.parse_schema(json.loads(body["schema"]))
        except Exception:
            return _error(422, 42201, "Invalid schema")
        return web.json_response(
            {"id": state.register(request.match_info["subject"], body["schema"])}
        )

    async def schema_types(request: web.Request) -> web.Response:
        refused = await gate(request)
        if refused is not None:
            return refused
        return web.json_response(["AVRO"], content_type="application/vnd.schemaregistry.v1+json")

    app = web.Application()
    app[_STATE] = state
    app.router.add_get("/schemas/types", schema_types)
    app.router.add_get("/schemas/ids/{id:\\d+}", get_schema)
    app.router.add_post("/subjects/{subject}/versions", post_version)
    return app


class RegistryServer:
    """``async with RegistryServer() as registry:`` on a free loopback port."""

    def __init__(self) -> None:
        self.state = RegistryState()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> RegistryServer:
        runner = web.AppRunner(build_app(self.state), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def framed(schema_id: int, parsed_schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """The Confluent wire format: magic byte 0, the 4-byte id, the Avro body."""
    buffer = io.BytesIO()
    buffer.write(struct.pack(">bI", 0, schema_id))
    fastavro.schemaless_writer(buffer, parsed_schema, record)
    return buffer.getvalue()
