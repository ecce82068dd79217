"""A health check's answer: what /healthz and /readyz serve."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Check:
    ok: bool
    reason: str
    halted: tuple[str, ...] = ()  # routes that cannot deliver, when there are several
