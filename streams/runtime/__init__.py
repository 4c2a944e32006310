"""The worker runtime: the faust app and its batch consumer (every use of faust's private API
is in `batch_consumer`), the ingest of each fetched batch, partition state (keeper, state
store, forked snapshots), the web views and Prometheus collectors, and the one `Settings`.
Imports the contract (`schemas`) and the core (`agents.core`); nothing of `streams.tools`,
the CLI or `bench`."""
