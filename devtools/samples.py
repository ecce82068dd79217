"""Sample user-behaviour events of the default schema, for the demo and the tests.

Deterministic for a given seed, so a run can be reproduced.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from typing import Any

import fastavro

_EVENT_KEYS = ("c_buy", "c_view", "c_add_cart", "c_share", "c_signup")
_PLATFORMS = ("gzh", "workwechat", "miniprogram")


def sample_event(rng: random.Random, index: int, base_time_ms: int) -> dict[str, Any]:
    """One valid record of the default schema (1 to 3 identities, 3 to 8 properties)."""
    identities = []
    for n in range(rng.randint(1, 3)):
        identity: dict[str, Any] = {
            "type": ("phone", "openid", "unionid")[n],
            "value": f"{rng.randrange(10**10, 10**11)}" if n == 0 else f"o{rng.getrandbits(64):x}",
            "platform": None,
            "mpid": None,
            "is_wechat_ecosystem": None,
        }
        if n > 0:
            identity["platform"] = rng.choice(_PLATFORMS)
            if rng.random() < 0.5:
                identity["mpid"] = f"wx{rng.getrandbits(40):x}"
                identity["is_wechat_ecosystem"] = True
        identities.append(identity)
    properties: dict[str, Any] = {"c_goods": f"goods-{rng.randrange(1000)}"}
    properties["c_price"] = round(rng.uniform(1, 5000), 2)
    properties["c_quantity"] = rng.randint(1, 9)
    for extra in range(rng.randint(0, 5)):
        properties[f"c_extra_{extra}"] = rng.choice((None, True, "x" * rng.randint(1, 12)))
    return {
        "event_id": f"evt-{index:09d}-{rng.getrandbits(32):08x}",
        "event_key": rng.choice(_EVENT_KEYS),
        "event_time": base_time_ms + index,
        "interaction_id": f"int-{rng.getrandbits(32):x}" if rng.random() < 0.5 else None,
        "identities": identities,
        "properties": properties,
    }


def encode(parsed_schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """Schemaless Avro binary of one record."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed_schema, record)
    return buffer.getvalue()


def sample_events(count: int, seed: int, base_time_ms: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for index in range(count):
        yield sample_event(rng, index, base_time_ms)
