"""Kafka side of livepulse: the Faust app, topics, codecs, settings, producers and the CLI."""
