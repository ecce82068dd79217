"""The pure core: what the pipeline decides, with no I/O (no asyncio, aiohttp or Kafka client)."""
