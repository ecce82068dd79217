"""event-sink: a Kafka sink connector for the event import API, at least once."""

__version__ = "0.1.0"
