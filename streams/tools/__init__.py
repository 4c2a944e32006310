"""Developer and user tools around the worker: a local Kafka broker (and a SASL_SSL one for
tests), the simulator with its independent truth reference, the replayer, the offline
analyzer, a worker in a child process, a throwaway Prometheus, the drain wait and progress
bars. May import the runtime; the runtime never imports them."""
