"""The declarative mapping: config ``mapping:`` + the reader schema → a per-record function.

- ``schema``: the reader schema, walked once at start-up (paths, types, getters);
- ``values``: record values turned into faithful JSON for ``eventargs``;
- ``compiler``: ``compile_mapping``, every path checked against the schema (MappingError
  names the key and the path), and ``mapper_for`` (the configured or the default mapping);
- ``mapper``: what it returns, ``Mapper``, which does no schema work per record;
- ``default``: the default mapping, from the YAML file shipped in this package;
- ``samples``: a sample record of a schema, for ``check-config``.

The contract is ``transform.to_event``'s: an optional field whose value is null is omitted,
never sent as null; ``uuid`` falls back to the record's position (or the ``event-sink.uuid``
header of a replayed record); NaN and infinities are refused; every refusal is a
TransformError naming the field, never its value. Pure.
"""

from connector.mapping.compiler import compile_mapping, mapper_for
from connector.mapping.default import default_mapping, load_mapping_file
from connector.mapping.mapper import Mapper
from connector.mapping.samples import sample_record
from connector.mapping.schema import MappingError

__all__ = [
    "Mapper",
    "MappingError",
    "compile_mapping",
    "default_mapping",
    "load_mapping_file",
    "mapper_for",
    "sample_record",
]
