"""Validation errors in a config file reader's words: the key's path, where a value came
from (an environment variable), a "did you mean" for a near miss, lists and maps."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError


def format_errors(exc: ValidationError, origins: Mapping[str, str], root: type[BaseModel]) -> str:
    """Every error on a line: the key's path, where it came from, what is wrong."""
    lines = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error["loc"])
        origin = next(
            (env for key, env in origins.items() if path == key or path.startswith(key + ".")),
            None,
        )
        suffix = f" (from {origin})" if origin else ""
        message = _in_yaml_words(error["msg"])
        if error["type"] == "extra_forbidden":
            message = "unknown key"
            close = difflib.get_close_matches(
                str(error["loc"][-1]), _keys_at(root, error["loc"][:-1]), n=1, cutoff=0.6
            )
            if close:
                message += f"; did you mean {close[0]!r}?"
        lines.append(f"{path}{suffix}: {message}" if path else message)
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _in_yaml_words(message: str) -> str:
    """pydantic speaks Python; a config file has lists and maps."""
    message = message.removeprefix("Value error, ")
    for python, yaml_word in (("tuple", "list"), ("Tuple", "List"), ("dictionary", "map")):
        message = message.replace(python, yaml_word)
    return message


def _keys_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys a section of the settings takes, found by walking the models along
    ``loc`` (empty where the walk leaves the models: a map, a list, a union)."""
    model: Any = root
    for step in loc:
        if isinstance(step, int):
            continue  # a list's element: the same model
        field = getattr(model, "model_fields", {}).get(step)
        if field is None:
            return []
        candidates = [
            arg
            for arg in (*typing.get_args(field.annotation), field.annotation)
            if isinstance(arg, type) and issubclass(arg, BaseModel)
        ]
        if not candidates:
            args = [a for a in typing.get_args(field.annotation) for a in (a, *typing.get_args(a))]
            candidates = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return []
        model = candidates[0]
    return list(getattr(model, "model_fields", {}))
