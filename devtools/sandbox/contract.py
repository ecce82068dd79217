"""The import request's contract, checked strictly: what the sandbox accepts.

Stricter than the vendor's page (``shared/reference/event-import-api.md``), so that a
connector that passes against it sends only what the contract allows. :func:`check_request`
checks the ``Content-Type`` and the decoded body; :func:`validate_request` the parsed body.
Both raise :class:`ContractError`, whose ``str()`` is the 400 answer's ``msg``
(``<path>: <reason>``, naming paths and JSON type names, never values).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "MAX_EVENTS_PER_REQUEST",
    "ContractError",
    "Event",
    "check_request",
    "validate_request",
]

MAX_EVENTS_PER_REQUEST = 500
_MAX_LONG = 2**63 - 1  # `time` is a Java long on the vendor's side

_TOP_KEYS = frozenset({"publicParams", "data"})
_PUBLIC_KEYS = frozenset({"matchingType", "isMatching"})
_EVENT_KEYS = frozenset({"identities", "time", "uuid", "eventKey", "intid", "eventargs"})
_IDENTITY_KEYS = frozenset(
    {"identityValue", "identityType", "platform", "mpid", "isWeChatEcosystem"}
)
# Exact types, not isinstance: json.loads only builds these, and `type(x) is int` keeps bool out.
_EVENTARG_TYPES = frozenset({str, int, float, bool, type(None)})
_MISSING: Any = object()

Event = dict[str, Any]


class ContractError(ValueError):
    """A request that breaks the contract; ``str()`` is the 400 answer's ``msg``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _kind(value: object) -> str:
    """The JSON name of a parsed value's type, for error messages (never the value itself)."""
    if value is None:
        return "null"
    if type(value) is bool:
        return "bool"
    if type(value) is int:
        return "integer"
    if type(value) is float:
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    if type(value) is dict:
        return "object"
    return type(value).__name__


def _unknown_key(obj: dict[str, Any], allowed: frozenset[str], path: str) -> ContractError:
    key = min(obj.keys() - allowed)
    return ContractError(_join(path, key), "unknown field")


def _join(path: str, key: str) -> str:
    # Keys of eventargs are free text; quote the ones that would make the path ambiguous.
    name = key if key.isidentifier() else json.dumps(key, ensure_ascii=False)
    return f"{path}.{name}" if path else name


def _absent_optional(obj: dict[str, Any], key: str, path: str) -> bool:
    """True when the optional ``key`` is absent; an explicit null is an error."""
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        return True
    if value is None:
        raise ContractError(_join(path, key), "null is not allowed; omit the field instead")
    return False


def _required(obj: dict[str, Any], key: str, path: str, expected: str) -> Any:
    value = obj.get(key, _MISSING)
    if value is _MISSING:
        raise ContractError(_join(path, key), "required")
    if value is None:
        raise ContractError(_join(path, key), f"required, must be {expected}, got null")
    return value


def _optional_str(obj: dict[str, Any], key: str, path: str, *, non_empty: bool = False) -> None:
    if _absent_optional(obj, key, path):
        return
    value = obj[key]
    if type(value) is not str:
        raise ContractError(_join(path, key), f"must be a string, got {_kind(value)}")
    if non_empty and not value:
        raise ContractError(_join(path, key), "must be a non-empty string")


def _check_public_params(params: object) -> None:
    path = "publicParams"
    if type(params) is not dict:
        raise ContractError(path, f"must be an object, got {_kind(params)}")
    if not params.keys() <= _PUBLIC_KEYS:
        raise _unknown_key(params, _PUBLIC_KEYS, path)
    if not _absent_optional(params, "matchingType", path):
        value = params["matchingType"]
        if type(value) is not int or value not in (1, 2):
            raise ContractError(
                f"{path}.matchingType", f"must be the integer 1 or 2, got {_kind(value)}"
            )
    if not _absent_optional(params, "isMatching", path):
        value = params["isMatching"]
        if type(value) is not bool and (type(value) is not int or value not in (1, 2)):
            raise ContractError(
                f"{path}.isMatching", f"must be the integer 1 or 2 or a bool, got {_kind(value)}"
            )


def _check_identity(identity: object, path: str) -> None:
    if type(identity) is not dict:
        raise ContractError(path, f"must be an object, got {_kind(identity)}")
    if not identity.keys() <= _IDENTITY_KEYS:
        raise _unknown_key(identity, _IDENTITY_KEYS, path)
    for key in ("identityValue", "identityType"):
        value = _required(identity, key, path, "a string")
        if type(value) is not str:
            raise ContractError(f"{path}.{key}", f"must be a string, got {_kind(value)}")
    _optional_str(identity, "platform", path)
    _optional_str(identity, "mpid", path)
    if _absent_optional(identity, "isWeChatEcosystem", path):
        if "mpid" in identity:
            raise ContractError(f"{path}.isWeChatEcosystem", "required when mpid is sent")
    elif type(identity["isWeChatEcosystem"]) is not bool:
        kind = _kind(identity["isWeChatEcosystem"])
        raise ContractError(f"{path}.isWeChatEcosystem", f"must be a bool, got {kind}")


def _check_event(event: object, path: str) -> None:
    if type(event) is not dict:
        raise ContractError(path, f"must be an object, got {_kind(event)}")
    if not event.keys() <= _EVENT_KEYS:
        raise _unknown_key(event, _EVENT_KEYS, path)

    identities = _required(event, "identities", path, "a non-empty array")
    if type(identities) is not list:
        raise ContractError(f"{path}.identities", f"must be an array, got {_kind(identities)}")
    if not identities:
        raise ContractError(f"{path}.identities", "must hold at least one identity")
    for j, identity in enumerate(identities):
        _check_identity(identity, f"{path}.identities[{j}]")

    event_key = _required(event, "eventKey", path, "a non-empty string")
    if type(event_key) is not str:
        raise ContractError(f"{path}.eventKey", f"must be a string, got {_kind(event_key)}")
    if not event_key:
        raise ContractError(f"{path}.eventKey", "must be a non-empty string")

    if not _absent_optional(event, "time", path):
        value = event["time"]
        if type(value) is not int:
            raise ContractError(
                f"{path}.time", f"must be an integer (epoch milliseconds), got {_kind(value)}"
            )
        if not 0 <= value <= _MAX_LONG:
            raise ContractError(f"{path}.time", "must be epoch milliseconds in 0..2**63-1")

    _optional_str(event, "uuid", path, non_empty=True)
    _optional_str(event, "intid", path)

    if not _absent_optional(event, "eventargs", path):
        args = event["eventargs"]
        if type(args) is not dict:
            raise ContractError(f"{path}.eventargs", f"must be an object, got {_kind(args)}")
        for key, value in args.items():
            if type(value) not in _EVENTARG_TYPES:
                raise ContractError(
                    _join(f"{path}.eventargs", key),
                    f"must be a string, number, bool or null, got {_kind(value)}",
                )


def validate_request(body: object) -> list[Event]:
    """Check a parsed request body against the contract; return its events.

    Raises :class:`ContractError` naming the first offending path.
    """
    if type(body) is not dict:
        raise ContractError("body", f"must be a JSON object, got {_kind(body)}")
    if not body.keys() <= _TOP_KEYS:
        raise _unknown_key(body, _TOP_KEYS, "")
    _check_public_params(_required(body, "publicParams", "", "an object"))
    data = _required(body, "data", "", "an array")
    if type(data) is not list:
        raise ContractError("data", f"must be an array, got {_kind(data)}")
    if not data:
        raise ContractError("data", f"must hold 1..{MAX_EVENTS_PER_REQUEST} events, got 0")
    if len(data) > MAX_EVENTS_PER_REQUEST:
        raise ContractError(
            "data",
            f"at most {MAX_EVENTS_PER_REQUEST} events per request, got {len(data)}",
        )
    for i, event in enumerate(data):
        _check_event(event, f"data[{i}]")
    return data


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity by default; they are not JSON.
    raise ValueError(f"{name} is not valid JSON")


def check_request(content_type: str, charset: str | None, body: bytes) -> list[Event]:
    """Check an import request's ``Content-Type`` (``application/json``, charset utf-8 if
    any) and its decoded ``body`` (UTF-8 JSON, no ``NaN``/``Infinity``, then
    :func:`validate_request`); return its events. Raises :class:`ContractError`."""
    if content_type != "application/json":
        raise ContractError("Content-Type", "must be application/json")
    if charset is not None and charset.lower() != "utf-8":
        raise ContractError("Content-Type", "charset must be utf-8 when given")
    try:
        parsed = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ContractError("body", "is not UTF-8") from None
    except ValueError:
        raise ContractError("body", "is not valid JSON") from None
    return validate_request(parsed)
