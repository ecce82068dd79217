"""A reader compiled from one Avro schema: the bytes of a record → the dict fastavro gives.

fastavro walks the schema for every record and reads through a file object, a method call
per field. This module walks the schema once, at start-up, and writes one Python function
for it: the fields in order, every varint inlined, no file object. On the default schema
it reads a record in well under fastavro's time.

fastavro stays the reference. The compiled reader is stricter than fastavro: it refuses
anything unusual (a non-canonical boolean, a negative union branch, a varint past 64 bits,
a length past the end) by raising, and the caller then decodes that value with fastavro,
which decides. So it can only speed up a record, never change what a record becomes; a
differential test holds it equal to fastavro on generated and on corrupted bytes.

For a schema it does not cover (a recursive type, nesting past Python's block limit)
:func:`compile_reader` returns None.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from fastavro.read import LOGICAL_READERS

#: (value bytes, start) → (record, position after it). Raises on anything it refuses.
CompiledReader = Callable[[bytes, int], tuple[dict[str, Any], int]]

_U64 = (1 << 64) - 1


class RefusedBytesError(ValueError):
    """The compiled reader does not vouch for these bytes; fastavro decides."""


class _Unsupported(Exception):
    """A schema construct the compiler does not cover: fastavro reads this schema."""


def _long_tail(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    """A varint's bytes after its first; refused past 10 bytes or 64 bits."""
    value, shift = first & 0x7F, 7
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value > _U64:
                raise RefusedBytesError("varint past 64 bits")
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift >= 70:
            raise RefusedBytesError("varint longer than 10 bytes")


def _size_tail(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    """A length that is not one even byte: refused if negative."""
    if first < 0x80:
        raise RefusedBytesError("negative length")
    size, pos = _long_tail(buf, pos, first)
    if size < 0:
        raise RefusedBytesError("negative length")
    return size, pos


_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


class _Writer:
    """Writes the reader's source: one ``_value`` call per schema node."""

    def __init__(self, named: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {
            "_long_tail": _long_tail,
            "_size_tail": _size_tail,
            "_Refused": RefusedBytesError,
            "_float": struct.Struct("<f").unpack_from,
            "_double": struct.Struct("<d").unpack_from,
        }
        self._named = named
        self._open: set[str] = set()  # named types being written: a reference back is recursion
        self._count = 0

    def var(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def constant(self, value: Any) -> str:
        name = f"_k{len(self.constants)}"
        self.constants[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def long(self, depth: int, target: str) -> None:
        self.emit(depth, "b = buf[pos]; pos += 1")
        self.emit(depth, f"if b < 128: {target} = (b >> 1) ^ -(b & 1)")
        self.emit(depth, f"else: {target}, pos = _long_tail(buf, pos, b)")

    def sized(self, depth: int, target: str, decode: bool) -> None:
        size = self.var("n")
        self.emit(depth, "b = buf[pos]; pos += 1")
        self.emit(depth, f"if b < 128 and not b & 1: {size} = b >> 1")
        self.emit(depth, f"else: {size}, pos = _size_tail(buf, pos, b)")
        suffix = ".decode()" if decode else ""
        self.emit(depth, f"{target} = buf[pos:pos + {size}]{suffix}; pos += {size}")
        self.emit(depth, "if pos > end: raise _Refused('length')")

    def value(self, node: Any, depth: int, target: str) -> None:
        """Lines that read one value of ``node`` into the variable ``target``."""
        if isinstance(node, list):
            self._union(node, depth, target)
            return
        if isinstance(node, str):
            if node in _PRIMITIVES:
                self._primitive(node, depth, target)
                return
            if node in self._open:
                raise _Unsupported(f"recursive type {node}")
            if node not in self._named:
                raise _Unsupported(f"unknown type {node}")
            node = self._named[node]
        if not isinstance(node, dict):
            raise _Unsupported(f"schema node {node!r}")
        kind = node.get("type")
        logical = node.get("logicalType")
        reader = LOGICAL_READERS.get(f"{kind}-{logical}") if logical else None
        if reader is not None:
            raw = self.var("r")
            self._plain(node, depth, raw)
            fn, schema = self.constant(reader), self.constant(node)
            self.emit(depth, f"{target} = {fn}({raw}, {schema}, None)")
            return
        self._plain(node, depth, target)

    def _plain(self, node: dict[str, Any], depth: int, target: str) -> None:
        kind = node.get("type")
        if kind in _PRIMITIVES:
            self._primitive(kind, depth, target)
        elif kind == "record" or kind == "error":
            self._record(node, depth, target)
        elif kind == "enum":
            symbols = self.constant(tuple(node["symbols"]))
            index = self.var("i")
            self.long(depth, index)
            bound = len(node["symbols"])
            self.emit(depth, f"if not 0 <= {index} < {bound}: raise _Refused('enum')")
            self.emit(depth, f"{target} = {symbols}[{index}]")
        elif kind == "fixed":
            size = int(node["size"])
            self.emit(depth, f"if pos + {size} > end: raise _Refused('fixed')")
            self.emit(depth, f"{target} = buf[pos:pos + {size}]; pos += {size}")
        elif kind == "array":
            self._blocks(depth, target, "[]", lambda d: self._array_item(node["items"], d, target))
        elif kind == "map":
            self._blocks(depth, target, "{}", lambda d: self._map_entry(node["values"], d, target))
        elif isinstance(kind, (str, list, dict)):
            self.value(kind, depth, target)  # {"type": "string"}, {"type": "Name"}, …
        else:
            raise _Unsupported(f"schema node {node!r}")

    def _primitive(self, kind: str, depth: int, target: str) -> None:
        if kind == "null":
            self.emit(depth, f"{target} = None")
        elif kind == "boolean":
            self.emit(depth, "b = buf[pos]; pos += 1")
            self.emit(depth, "if b > 1: raise _Refused('boolean')")
            self.emit(depth, f"{target} = b == 1")
        elif kind in ("int", "long"):
            self.long(depth, target)
        elif kind == "float":
            self.emit(depth, f"{target} = _float(buf, pos)[0]; pos += 4")
        elif kind == "double":
            self.emit(depth, f"{target} = _double(buf, pos)[0]; pos += 8")
        else:
            self.sized(depth, target, decode=kind == "string")

    def _record(self, node: dict[str, Any], depth: int, target: str) -> None:
        name = node.get("name")
        if isinstance(name, str):
            self._open.add(name)
        names = []
        for field in node["fields"]:
            field_var = self.var("f")
            self.value(field["type"], depth, field_var)
            names.append(f"{field['name']!r}: {field_var}")
        self.emit(depth, f"{target} = {{{', '.join(names)}}}")
        if isinstance(name, str):
            self._open.discard(name)

    def _union(self, branches: list[Any], depth: int, target: str) -> None:
        # A branch index below 64 is one byte, zigzag 2·i: compared as that byte. Anything
        # else (a negative or multi-byte index) is refused, and fastavro decides.
        if len(branches) > 63:
            raise _Unsupported("a union of more than 63 branches")
        self.emit(depth, "b = buf[pos]; pos += 1")
        for number, branch in enumerate(branches):
            self.emit(depth, f"{'if' if number == 0 else 'elif'} b == {2 * number}:")
            self.value(branch, depth + 1, target)
        self.emit(depth, "else: raise _Refused('union branch')")

    def _blocks(self, depth: int, target: str, empty: str, item: Callable[[int], None]) -> None:
        count = self.var("c")
        self.emit(depth, f"{target} = {empty}")
        self.emit(depth, "while True:")
        self.long(depth + 1, count)
        self.emit(depth + 1, f"if {count} == 0: break")
        self.emit(depth + 1, f"if {count} < 0:")
        self.emit(depth + 2, f"{count} = -{count}")
        self.long(depth + 2, "_")  # the block's size in bytes: not needed to read it
        # Every item takes a byte at least, or the count is refused (fastavro decides).
        self.emit(depth + 1, f"if {count} > end - pos: raise _Refused('block count')")
        self.emit(depth + 1, f"for _ in range({count}):")
        item(depth + 2)

    def _array_item(self, items: Any, depth: int, target: str) -> None:
        element = self.var("e")
        self.value(items, depth, element)
        self.emit(depth, f"{target}.append({element})")

    def _map_entry(self, values: Any, depth: int, target: str) -> None:
        key, element = self.var("k"), self.var("e")
        self.sized(depth, key, decode=True)
        self.value(values, depth, element)
        self.emit(depth, f"{target}[{key}] = {element}")


def _named_types(schema: Any, found: dict[str, Any]) -> dict[str, Any]:
    """Every named type (record, enum, fixed) of a parsed schema, by full name."""
    if isinstance(schema, list):
        for branch in schema:
            _named_types(branch, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed") and isinstance(schema.get("name"), str):
            found.setdefault(schema["name"], schema)
        for field in schema.get("fields", ()):
            _named_types(field.get("type"), found)
        for key in ("items", "values"):
            if key in schema:
                _named_types(schema[key], found)
        if isinstance(kind, (dict, list)):
            _named_types(kind, found)
    return found


def compile_reader(parsed_schema: dict[str, Any]) -> CompiledReader | None:
    """The compiled reader of a fastavro-parsed record schema, or None if not covered."""
    named = _named_types(parsed_schema, {})
    writer = _Writer(named)
    try:
        writer.value(parsed_schema, 1, "record")
    except (_Unsupported, RecursionError):
        return None
    source = "\n".join(
        [
            "def read(buf, pos):",
            "    end = len(buf)",
            *writer.lines,
            "    return record, pos",
        ]
    )
    namespace = dict(writer.constants)
    try:
        code = compile(source, "<compiled avro reader>", "exec")
    except (SyntaxError, RecursionError):  # nested past Python's block limit: fastavro
        return None
    # The source is ours: names from the schema appear only as repr() literals.
    exec(code, namespace)
    reader: CompiledReader = namespace["read"]
    return reader
