"""Running the metric core on Kafka: `streams.runtime` (the worker), `streams.tools` (the local
broker, simulator, replayer, offline analyzer and other tools) and the `livepulse` CLI
(`streams.cli`, one module per command in `streams.commands`)."""
