"""The development tooling of event-sink: never imported by the product (``connector``), never
in its image.

- :mod:`devtools.sandbox`: the strict local stand-in of the event import API;
- :mod:`devtools.kafka`: fetches Kafka's jars and runs a local broker (tests, demo, benchmarks);
- :mod:`devtools.demo`: ``event-sink demo``, the main job end to end;
- :mod:`devtools.samples`: sample events of the default schema;
- :mod:`devtools.commands`: the ``sandbox`` and ``demo`` commands, registered as
  ``event_sink.commands`` entry points of the development install.
"""
