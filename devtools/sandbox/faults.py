"""The sandbox's fault settings: scripted answers, random faults, refusals, odd answers.

:class:`Faults` is what ``POST /faults`` replaces and ``GET /faults`` shows (their JSON is
:meth:`Faults.to_json` / :meth:`Faults.from_json`); :func:`parse_script` reads the command
line's ``--script``. The state (:mod:`devtools.sandbox.state`) decides, per request, which
of them answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from devtools.sandbox import world

__all__ = [
    "Faults",
    "ScriptStep",
    "check_retry_after",
    "check_status",
    "parse_script",
]


@dataclass(frozen=True)
class ScriptStep:
    """One scripted answer: HTTP ``status``, with body ``code`` (default: the status).

    ``ScriptStep(200)`` means "go on to normal handling"; ``ScriptStep(200, "500")`` answers
    HTTP 200 with body code "500", which the contract says is *not* a delivery.
    ``retry_after``, when set, is sent verbatim as the ``Retry-After`` header of this answer
    (whatever the answer is, normal handling included), e.g. ``ScriptStep(429, retry_after="2")``.
    """

    status: int
    code: str | None = None
    retry_after: str | None = None

    def __post_init__(self) -> None:
        check_status(self.status, "script status")
        if self.code is not None and (type(self.code) is not str or not self.code):
            raise ValueError("script code must be a non-empty string")
        check_retry_after(self.retry_after, "script retry_after")

    @property
    def passes(self) -> bool:
        """True when this step lets the request through to normal handling."""
        return self.status == 200 and self.code in (None, "200")

    def to_json(self) -> int | dict[str, Any]:
        if self.code is None and self.retry_after is None:
            return self.status
        out: dict[str, Any] = {"status": self.status}
        if self.code is not None:
            out["code"] = self.code
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


def check_status(status: object, what: str) -> None:
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"{what} must be an HTTP status 100..599, got {status!r}")


def check_retry_after(value: object, what: str) -> None:
    # Sent verbatim, so junk values (to test the client) are allowed; only what cannot be a
    # header value at all is refused.
    if value is None:
        return
    if type(value) is not str or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"{what} must not hold control characters")


def _as_step(item: int | ScriptStep) -> ScriptStep:
    return item if isinstance(item, ScriptStep) else ScriptStep(item)


@dataclass(frozen=True)
class Faults:
    """Fault settings of the import path.

    Per request, the next ``script`` entry (an HTTP status, or a :class:`ScriptStep` for a body
    code that differs from the status) decides: 200 goes on to normal handling, anything else is
    answered as an injected fault. Once the script is exhausted, a fault with
    ``failure_status`` is injected with probability ``failure_rate`` (drawn from the state's
    ``random.Random``, only when the rate is above 0). ``latency_ms`` delays every answer of
    the import path, faults and rejections included. Frozen so that changing faults always goes
    through :attr:`~devtools.sandbox.state.SandboxState.faults`, which restarts the script.

    ``retry_after`` is the ``Retry-After`` header of random faults (scripted steps carry their
    own). ``refuse_event_keys``: a request that passed validation but holds an event whose
    ``eventKey`` is listed is refused whole (nothing recorded): 400, or HTTP 200 with body
    code "400" when ``refuse_with_200`` is set (the API refusing data inside a 200).
    ``failure_code`` is the body code of random faults (default: the status; a 5xx code
    reads ``SYSTEM_ERROR``/"system busy"). ``fail_uuids``: a valid request holding an event
    with a listed ``uuid`` is answered 500 (nothing recorded).

    World faults (:mod:`devtools.sandbox.world`; at most one at a time): ``redirect``,
    ``html_200``, ``huge_body_mib``, ``gzip_bomb_mib``, ``drop_connection`` answer every
    request while set, before the script and random faults (the script is not consumed).

    Flow (:mod:`devtools.sandbox.flow`): ``quota_events_per_s`` (None: off) is a token bucket
    of that many events per second shared by all clients, holding at most
    ``quota_events_per_s * quota_burst_s`` (starts full); a request that would be accepted
    takes one token per event, or is answered 429 with ``Retry-After: 1`` when the bucket
    holds too few (taking none). ``slots`` (None: off) handles at most that many requests at
    once, ``latency_ms`` included; the others wait for a slot.
    """

    failure_rate: float = 0.0
    failure_status: int = 503
    latency_ms: float = 0.0
    script: Sequence[int | ScriptStep] = ()
    retry_after: str | None = None
    refuse_event_keys: Sequence[str] = ()
    refuse_with_200: bool = False
    failure_code: str | None = None
    redirect: world.Redirect | None = None
    html_200: bool = False
    huge_body_mib: int = 0
    gzip_bomb_mib: int = 0
    drop_connection: bool = False
    fail_uuids: Sequence[str] = ()
    quota_events_per_s: float | None = None
    quota_burst_s: float = 1.0
    slots: int | None = None

    def __post_init__(self) -> None:
        rate = self.failure_rate
        if type(rate) not in (int, float) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"failure_rate must be a number in 0..1, got {rate!r}")
        check_status(self.failure_status, "failure_status")
        latency = self.latency_ms
        if type(latency) not in (int, float) or not 0.0 <= latency < float("inf"):
            raise ValueError(f"latency_ms must be a number >= 0, got {latency!r}")
        # Normalise (JSON may give ints; a caller may pass a list) so that equal settings
        # compare and serialise equal; ScriptStep validates each step itself.
        object.__setattr__(self, "failure_rate", float(rate))
        object.__setattr__(self, "latency_ms", float(latency))
        object.__setattr__(self, "script", tuple(_as_step(item) for item in self.script))
        check_retry_after(self.retry_after, "retry_after")
        keys = self.refuse_event_keys
        # A bare string would be taken letter by letter.
        if isinstance(keys, str | bytes) or not all(type(k) is str and k for k in keys):
            raise ValueError(f"refuse_event_keys must be a list of non-empty strings, got {keys!r}")
        object.__setattr__(self, "refuse_event_keys", tuple(keys))
        if type(self.refuse_with_200) is not bool:
            raise ValueError(f"refuse_with_200 must be a bool, got {self.refuse_with_200!r}")
        self._check_world_settings()
        self._check_flow_settings()

    def _check_flow_settings(self) -> None:
        rate, burst = self.quota_events_per_s, self.quota_burst_s
        if rate is not None:
            if not _positive(rate):
                raise ValueError(f"quota_events_per_s must be null or a number > 0, got {rate!r}")
            object.__setattr__(self, "quota_events_per_s", float(rate))
        if not _positive(burst):
            raise ValueError(f"quota_burst_s must be a number > 0, got {burst!r}")
        object.__setattr__(self, "quota_burst_s", float(burst))
        if rate is not None and rate * burst < 1.0:
            raise ValueError(
                "quota_events_per_s * quota_burst_s must be at least 1 (the bucket must hold "
                f"one event), got {rate!r} * {burst!r}"
            )
        slots = self.slots
        if slots is not None and (type(slots) is not int or slots < 1):
            raise ValueError(f"slots must be null or an integer >= 1, got {slots!r}")

    def _check_world_settings(self) -> None:
        code = self.failure_code
        if code is not None and (type(code) is not str or not code):
            raise ValueError(f"failure_code must be null or a non-empty string, got {code!r}")
        if self.redirect is not None and not isinstance(self.redirect, world.Redirect):
            raise ValueError(f"redirect must be a Redirect, got {self.redirect!r}")
        for name in ("html_200", "drop_connection"):
            if type(getattr(self, name)) is not bool:
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        world.HugeBody(self.huge_body_mib)  # validates the size
        world.GzipBomb(self.gzip_bomb_mib)
        uuids = self.fail_uuids
        if isinstance(uuids, str | bytes) or not all(type(u) is str and u for u in uuids):
            raise ValueError(f"fail_uuids must be a list of non-empty strings, got {uuids!r}")
        object.__setattr__(self, "fail_uuids", tuple(uuids))
        active = [name for name in _WORLD_KEYS if getattr(self, name)]
        if len(active) > 1:
            raise ValueError(f"set at most one of {', '.join(_WORLD_KEYS)}, got {active}")

    @property
    def world_fault(self) -> world.WorldFault | None:
        """The odd answer that replaces every answer while it is set, if any."""
        if self.redirect is not None:
            return self.redirect
        if self.html_200:
            return world.Html200()
        if self.huge_body_mib:
            return world.HugeBody(self.huge_body_mib)
        if self.gzip_bomb_mib:
            return world.GzipBomb(self.gzip_bomb_mib)
        if self.drop_connection:
            return world.DropConnection()
        return None

    @property
    def steps(self) -> tuple[ScriptStep, ...]:
        return tuple(_as_step(item) for item in self.script)

    def to_json(self) -> dict[str, Any]:
        return {
            "failure_rate": self.failure_rate,
            "failure_status": self.failure_status,
            "latency_ms": self.latency_ms,
            "script": [step.to_json() for step in self.steps],
            "retry_after": self.retry_after,
            "refuse_event_keys": list(self.refuse_event_keys),
            "refuse_with_200": self.refuse_with_200,
            "failure_code": self.failure_code,
            "redirect": None if self.redirect is None else self.redirect.to_json(),
            "html_200": self.html_200,
            "huge_body_mib": self.huge_body_mib,
            "gzip_bomb_mib": self.gzip_bomb_mib,
            "drop_connection": self.drop_connection,
            "fail_uuids": list(self.fail_uuids),
            "quota_events_per_s": self.quota_events_per_s,
            "quota_burst_s": self.quota_burst_s,
            "slots": self.slots,
        }

    @classmethod
    def from_json(cls, obj: object) -> Faults:
        """Build from the ``POST /faults`` body; absent keys take their defaults."""
        if type(obj) is not dict:
            raise ValueError("faults must be a JSON object")
        unknown = obj.keys() - _FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        kwargs: dict[str, Any] = {k: v for k, v in obj.items() if k != "script"}
        script = obj.get("script", [])
        if type(script) is not list:
            raise ValueError("script must be an array")
        kwargs["script"] = [_step_from_json(item) for item in script]
        for key in ("refuse_event_keys", "fail_uuids"):
            if type(kwargs.get(key, [])) is not list:
                raise ValueError(f"{key} must be an array of strings")
        if kwargs.get("redirect") is not None:
            kwargs["redirect"] = world.Redirect.from_json(kwargs["redirect"])
        return cls(**kwargs)


_FAULT_KEYS = frozenset(
    {
        "failure_rate",
        "failure_status",
        "latency_ms",
        "script",
        "retry_after",
        "refuse_event_keys",
        "refuse_with_200",
        "failure_code",
        "redirect",
        "html_200",
        "huge_body_mib",
        "gzip_bomb_mib",
        "drop_connection",
        "fail_uuids",
        "quota_events_per_s",
        "quota_burst_s",
        "slots",
    }
)
_WORLD_KEYS = ("redirect", "html_200", "huge_body_mib", "gzip_bomb_mib", "drop_connection")
_STEP_KEYS = frozenset({"status", "code", "retry_after"})


def _positive(value: object) -> bool:
    """A finite number > 0 (JSON's true/false are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0.0 < value < float("inf")


def _step_from_json(item: object) -> ScriptStep:
    if type(item) is int:
        return ScriptStep(item)
    if type(item) is dict and "status" in item and item.keys() <= _STEP_KEYS:
        return ScriptStep(item["status"], item.get("code"), item.get("retry_after"))
    raise ValueError(
        'script entries are statuses or {"status": int, "code": str, "retry_after": str}, '
        f"got {item!r}"
    )


def parse_script(text: str) -> list[ScriptStep]:
    """Parse the CLI form ``503,429@2,200:500,200`` (comma-separated
    ``STATUS[:BODY_CODE][@RETRY_AFTER]``; a Retry-After value here cannot hold a comma, so
    HTTP-dates need the JSON form of ``POST /faults``)."""
    steps: list[ScriptStep] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        head, at, retry_after = part.partition("@")
        status, sep, code = head.partition(":")
        try:
            steps.append(
                ScriptStep(int(status), code if sep else None, retry_after if at else None)
            )
        except ValueError as exc:
            raise ValueError(f"bad script entry {part!r}: {exc}") from None
    return steps
