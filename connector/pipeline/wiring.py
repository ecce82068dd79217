"""Wiring: the batcher and the HTTP sink built from the settings, once, at start-up."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable

import aiohttp

from connector.adapters.http_setup import HttpEnv, resolve
from connector.adapters.http_sink import Endpoint, HttpSink, RetryBudget
from connector.config import Settings
from connector.core.batch import Batcher, body_overhead
from connector.core.classify import OVERRIDABLE
from connector.metrics import Metrics


def public_params(settings: Settings) -> bytes:
    """``http.public_params`` as the body's ``publicParams``, encoded once."""
    return json.dumps(
        settings.http.public_params, separators=(",", ":"), ensure_ascii=False
    ).encode()


def batcher(settings: Settings, clock: Callable[[], float] = time.monotonic) -> Batcher:
    return Batcher(
        max_events=settings.batch.max_events,
        max_bytes=settings.batch.max_bytes,
        linger_s=settings.batch.linger_ms / 1000,
        overhead_bytes=body_overhead(public_params(settings)),
        clock=clock,
    )


def sink(
    settings: Settings,
    session: aiohttp.ClientSession,
    token: Callable[[], str],
    http_env: HttpEnv | None,
    rng: random.Random | None,
    metrics: Metrics,
) -> HttpSink:
    """The API's client: endpoint, network, classification overrides, retry budget."""
    http = settings.http
    net = http_env if http_env is not None else resolve(http)
    return HttpSink(
        session,
        url=Endpoint(
            http.url,
            proxy=net.proxy,
            tls=net.tls,
            headers=net.headers,
            gzip=http.compression == "gzip",
        ),
        token=token,
        public_params_json=public_params(settings),
        timeout_s=http.timeout_s,
        initial_backoff_s=http.retry.initial_backoff_ms / 1000,
        max_backoff_s=http.retry.max_backoff_ms / 1000,
        halt_probe_max_s=http.retry.halt_probe_max_ms / 1000,
        max_retry_after_s=http.retry.max_retry_after_s,
        overrides={status: OVERRIDABLE[policy] for status, policy in http.status_overrides.items()},
        body_overrides={
            code: OVERRIDABLE[policy] for code, policy in http.body_code_overrides.items()
        },
        budget=RetryBudget(http.retry.max_attempts, http.retry.give_up_after_s),
        rng=rng,
        metrics=metrics,
    )
