"""The edges: the Kafka source, Avro decoding, the Schema Registry client, the HTTP sink
and the network under it, the dead-letter writer."""
