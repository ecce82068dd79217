"""The local Kafka of the development tooling: Kafka's jars fetched once through ``mvn`` and
cached (:mod:`devtools.kafka.jars`), one broker JVM's files and command lines
(:mod:`devtools.kafka.jvm`), and the broker itself, local or external
(:mod:`devtools.kafka.broker`).
"""

from devtools.kafka.broker import (
    ExternalKafka,
    KafkaCluster,
    LocalKafka,
    create_topic,
    external_or_local,
)
from devtools.kafka.jars import (
    DEPENDENCY_PLUGIN_VERSION,
    KAFKA_VERSION,
    LOG4J_VERSION,
    Runner,
    cache_dir,
    kafka_libs,
    require_tools,
)

__all__ = [
    "DEPENDENCY_PLUGIN_VERSION",
    "KAFKA_VERSION",
    "LOG4J_VERSION",
    "ExternalKafka",
    "KafkaCluster",
    "LocalKafka",
    "Runner",
    "cache_dir",
    "create_topic",
    "external_or_local",
    "kafka_libs",
    "require_tools",
]
