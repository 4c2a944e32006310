"""The worker runtime: `worker.Worker`, the one composition root, builds the faust app
(`app`; every use of faust's private API is in `batch_consumer`), the ingest of each fetched
batch (`ingest`, `state`, `partition`), the dead-letter pipeline (`deadletters`), partition
state in and out (`keeper`, `statestore`, `forkdump`), the Prometheus families (`families`) and
the web views (`web`) from the one `Settings`. Imports the contract (`schemas`) and the core
(`agents.core`); nothing of `streams.tools`, the CLI or `bench`."""
