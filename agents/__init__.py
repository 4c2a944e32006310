"""The transport-free metric core (`agents.core`): no asyncio, faust or Kafka. The worker
(`streams.runtime`), the offline analyzer and the tests all compute through it."""
